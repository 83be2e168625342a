/**
 * Outside oracles (qemu-img, qemu-io, e2fsck, debugfs) for tests. A test that needs one calls
 * `oracle(t, 'qemu-img')`: when the tool is missing the test is skipped with a printed reason,
 * unless VMIMG_REQUIRE_ORACLES=1 (CI), in which case it fails.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

const found = new Map<string, string | undefined>();

function which(tool: string): string | undefined {
  if (!found.has(tool)) {
    const dirs = (process.env['PATH'] ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin']);
    const r = spawnSync('sh', ['-c', `PATH='${dirs.join(':')}' command -v ${tool}`], { encoding: 'utf8' });
    found.set(tool, r.status === 0 ? r.stdout.trim() : undefined);
  }
  return found.get(tool);
}

/** Returns the tool's path, or skips the test (fails it when VMIMG_REQUIRE_ORACLES=1). */
export function oracle(t: TestContext, tool: string): string | undefined {
  const path = which(tool);
  if (path) return path;
  const reason = `${tool} not found on PATH (install it: see .ci/run)`;
  if (process.env['VMIMG_REQUIRE_ORACLES'] === '1') throw new Error(`required oracle missing: ${reason}`);
  t.skip(reason);
  return undefined;
}

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs a command synchronously (oracles are quick); never throws on a non-zero status. */
export function run(cmd: string, args: string[], options: { cwd?: string; input?: string } = {}): RunResult {
  const r = spawnSync(cmd, args, { cwd: options.cwd, input: options.input, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Runs qemu-img and returns its result (the caller has checked the oracle exists). */
export function qemuImg(args: string[], cwd?: string): RunResult {
  return run('qemu-img', args, { cwd });
}

/** `qemu-img info --output=json` parsed; throws with qemu-img's stderr on failure. */
export function qemuInfo(path: string, format?: string): Record<string, unknown> {
  const r = qemuImg(['info', '--output=json', ...(format ? ['-f', format] : []), path]);
  if (r.status !== 0) throw new Error(`qemu-img info ${path} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

/** A fresh temporary directory, removed when the test ends. */
export function tempDir(t: TestContext, prefix = 'vmimg-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
