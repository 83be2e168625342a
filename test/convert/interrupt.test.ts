/**
 * convert's failure rule under signals: SIGINT in the middle of a convert leaves neither the
 * target nor a temporary file, and a file that already existed at the target path is untouched.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { openSync, readdirSync, readFileSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tempDir } from '../helpers/oracle.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

async function until(what: string, cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('SIGINT during convert removes the temporary file and keeps an existing target', async (t) => {
  const dir = tempDir(t);
  const src = join(dir, 'src.raw');
  // Incompressible data makes `-c` slow enough to interrupt midway.
  const fd = openSync(src, 'w');
  for (let i = 0; i < 96; i++) writeSync(fd, randomBytes(1 << 20));
  closeSync(fd);
  const out = join(dir, 'out.qcow2');
  writeFileSync(out, 'precious');

  const child = spawn(process.execPath, [MAIN, 'convert', '-c', '-O', 'qcow2', src, out], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const temps = (): string[] => readdirSync(dir).filter((n) => n.startsWith('.vmimg-'));
  await until('the temporary file', () => temps().length > 0, 30_000);
  child.kill('SIGINT');
  const code = await exited;

  assert.equal(code, 130, stderr);
  assert.deepEqual(temps(), []);
  assert.equal(readFileSync(out, 'utf8'), 'precious');
  assert.deepEqual(readdirSync(dir).sort(), ['out.qcow2', 'src.raw']);
});
