/**
 * A name recorded in an image (here a qcow2 data file) that points at a FIFO: opening it must
 * fail at once, not block in open(2) until a writer appears (a blocked open holds a thread-pool
 * thread that even SIGTERM's exit waits for). qemu-img blocks there.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { oracle, qemuImg, run, tempDir } from '../helpers/oracle.js';

const CLI = fileURLToPath(new URL('../../src/cli/vmimg.cjs', import.meta.url));

test('a data file that is a FIFO is refused at once (read and convert -n), nothing blocks', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io') || !oracle(t, 'mkfifo')) return;
  const dir = tempDir(t);
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'data_file=x.data', 'i.qcow2', '1M'], dir).status, 0);
  assert.equal(run('qemu-io', ['-c', 'write -P 1 0 64k', 'i.qcow2'], { cwd: dir }).status, 0);
  rmSync(join(dir, 'x.data'));
  assert.equal(run('mkfifo', ['x.data'], { cwd: dir }).status, 0);
  for (const args of [['convert', '-O', 'raw', 'i.qcow2', 'o.raw'], ['convert', '-n', '-f', 'raw', '-O', 'qcow2', 'o2.raw', 'i.qcow2']]) {
    if (args.includes('-n')) assert.equal(qemuImg(['create', '-q', '-f', 'raw', 'o2.raw', '1M'], dir).status, 0);
    const r = spawnSync(process.execPath, [CLI, ...args], { cwd: dir, encoding: 'utf8', timeout: 20000, killSignal: 'SIGKILL' });
    assert.equal(r.signal, null, `${args.join(' ')}: blocked (killed after 20 s)`);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /FIFO/);
  }
});
