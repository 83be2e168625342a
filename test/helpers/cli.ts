/** Runs the vmimg CLI in-process with captured stdout/stderr. */
import { runCli } from '../../src/cli/main.js';

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

export async function vmimg(args: string[]): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const status = await runCli(args, { out: (t) => void (stdout += t), err: (t) => void (stderr += t) });
  return { status, stdout, stderr };
}
