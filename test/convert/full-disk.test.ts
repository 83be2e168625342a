/**
 * A convert that runs out of space (a small ext4 file system on a loop device) fails naming the
 * cause, and leaves nothing behind: no target, no temporary file, the file system's free blocks
 * back where they were — for targets written with allocate-then-write (new files on ext4,
 * FileStorage.createExclusive) as for the rest. Needs root, losetup, mke2fs and mount (skipped
 * otherwise: machine capabilities, not outside tools).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { statfs } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'node:test';
import { vmimg } from '../helpers/cli.js';
import { oracle, run, tempDir } from '../helpers/oracle.js';

test('convert onto a full ext4 file system fails with ENOSPC and leaves no file and no used blocks behind', async (t) => {
  if (!oracle(t, 'mke2fs') || !oracle(t, 'losetup')) return;
  if (process.getuid?.() !== 0) return t.skip('needs root to mount a file system');
  const dir = tempDir(t, 'vmimg-fulldisk-');
  const fsImage = join(dir, 'fs.img');
  assert.equal(run('mke2fs', ['-q', '-F', '-t', 'ext4', '-O', '^has_journal', fsImage, '24M']).status, 0);
  const attach = spawnSync('losetup', ['-f', '--show', fsImage], { encoding: 'utf8' });
  if (attach.status !== 0) return t.skip(`no loop device here: ${attach.stderr.trim()}`);
  const loop = attach.stdout.trim();
  // The mount point is not under `dir`: its clean-up may run before this test's own hooks.
  const mnt = mkdtempSync(join(tmpdir(), 'vmimg-fulldisk-mnt-'));
  const mounted = spawnSync('mount', ['-t', 'ext4', loop, mnt], { encoding: 'utf8' });
  const detach = (): void => {
    spawnSync('umount', [mnt]);
    spawnSync('losetup', ['-d', loop]);
    rmdirSync(mnt); // not recursive: never into a file system still mounted
  };
  if (mounted.status !== 0) {
    detach();
    return t.skip(`cannot mount here: ${mounted.stderr.trim()}`);
  }
  try {
    await fill(mnt, dir);
  } finally {
    detach();
  }
});

async function fill(mnt: string, dir: string): Promise<void> {
  // 40 MiB of data that does not compress or dedupe, in a 64 MiB disk: more than the 24 MiB fit.
  const src = join(dir, 'src.raw');
  writeFileSync(src, Buffer.concat([randomBytes(40 << 20), Buffer.alloc(24 << 20)]));
  const free = (await statfs(mnt)).bfree;
  for (const format of ['qcow2', 'raw', 'vhdx', 'vpc']) {
    const r = await vmimg(['convert', '-f', 'raw', '-O', format, src, join(mnt, `out.${format}`)]);
    assert.equal(r.status, 1, `${format}: ${r.stderr}`);
    // Named after the target the user gave, not the hidden temporary file.
    assert.ok(r.stderr.includes(`Could not write '${join(mnt, `out.${format}`)}': ENOSPC: no space left on device`), `${format}: ${r.stderr}`);
    assert.deepEqual(readdirSync(mnt).sort(), ['lost+found'], `${format}: something was left behind`);
    assert.equal((await statfs(mnt)).bfree, free, `${format}: blocks stayed allocated`);
  }
}
