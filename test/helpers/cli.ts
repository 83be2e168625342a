/** Runs the vmimg CLI in-process with captured stdout/stderr. */
import { runCli } from '../../src/cli/main.js';

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
  /** What the command wrote as raw bytes (file contents), in order. */
  bytes: Buffer;
}

export async function vmimg(args: string[]): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const chunks: Buffer[] = [];
  const status = await runCli(args, { out: (t) => void (stdout += t), err: (t) => void (stderr += t), outBytes: async (b) => void chunks.push(Buffer.from(b)) });
  return { status, stdout, stderr, bytes: Buffer.concat(chunks) };
}
