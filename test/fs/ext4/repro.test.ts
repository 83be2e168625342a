/**
 * Reproducibility and output targets: identical bytes on every build, the same image from a
 * directory and from its tarball, image formats written directly (qemu-img reads them back
 * byte-equal to the raw build), and, where loop mounts work, Linux mounting it read-write.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { linkSync, mkdirSync, readFileSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadTree } from '../../../src/tree/index.js';
import { oracle, qemuImg, run, tempDir } from '../../helpers/oracle.js';
import { SAMPLE } from './sample.js';
import { assertFsckClean, build, memoryTree, sha256 } from './helpers.js';

test('two builds of the same tree are byte-identical; a label or UUID change is not', async (t) => {
  const dir = tempDir(t, 'vmimg-ext4-');
  const hashes: string[] = [];
  for (const [name, opts] of [['a', {}], ['b', {}], ['c', { label: 'other' }], ['d', { uuid: '01234567-89ab-cdef-0123-456789abcdef' }]] as const) {
    await build(memoryTree(SAMPLE), join(dir, `${name}.img`), { journal: true, ...opts });
    hashes.push(sha256(readFileSync(join(dir, `${name}.img`))));
  }
  assert.equal(hashes[0], hashes[1]);
  assert.notEqual(hashes[0], hashes[2]);
  assert.notEqual(hashes[0], hashes[3]);
});

test('the same tree from a directory and from its GNU tarball gives the same image', async (t) => {
  const root = tempDir(t, 'vmimg-ext4-');
  const src = join(root, 'src');
  mkdirSync(join(src, 'etc/sub'), { recursive: true });
  writeFileSync(join(src, 'etc/motd'), 'hello\n');
  writeFileSync(join(src, 'etc/sub/big'), Buffer.alloc(200_000, 3));
  linkSync(join(src, 'etc/motd'), join(src, 'etc/motd-link'));
  symlinkSync('../etc/motd', join(src, 'etc/sub/up'));
  writeFileSync(join(src, 'empty'), '');
  for (const p of ['etc/motd', 'etc/sub/big', 'empty', 'etc/sub', 'etc', '.']) utimesSync(join(src, p), 1_600_000_000.5, 1_600_000_000.25);
  const tarball = join(root, 't.tar.gz');
  const r = spawnSync('tar', ['--format=posix', '--numeric-owner', '--sort=name', '-czf', tarball, '-C', src, '.']);
  if (r.error || r.status !== 0) return t.skip('GNU tar not available');
  const hashes: string[] = [];
  for (const [input, name] of [[src, 'dir.img'], [tarball, 'tar.img']] as const) {
    const tree = await loadTree([input], { sourceDateEpoch: 1_700_000_000 });
    try {
      await build(tree, join(root, name));
    } finally {
      await tree.close();
    }
    hashes.push(sha256(readFileSync(join(root, name))));
  }
  assert.equal(hashes[0], hashes[1]);
  assertFsckClean(t, join(root, 'dir.img'));
});

for (const format of ['qcow2', 'vmdk', 'vhdx', 'vpc'] as const) {
  test(`--format ${format}: written directly, qemu-img reads back the raw build's bytes`, async (t) => {
    if (!oracle(t, 'qemu-img')) return;
    const dir = tempDir(t, 'vmimg-ext4-');
    const raw = join(dir, 'fs.raw');
    const img = join(dir, `fs.${format}`);
    const r1 = await build(memoryTree(SAMPLE), raw, { journal: true });
    const r2 = await build(memoryTree(SAMPLE), img, { journal: true, format });
    assert.equal(r2.imageSize, r1.imageSize);
    if (format !== 'vpc') assert.equal(qemuImg(['check', img]).status, 0, `qemu-img check ${img}`);
    const back = join(dir, 'back.raw');
    const c = qemuImg(['convert', '-f', format, '-O', 'raw', img, back]);
    assert.equal(c.status, 0, c.stderr);
    const want = readFileSync(raw);
    const got = readFileSync(back);
    assert.ok(got.length >= want.length);
    assert.equal(sha256(got.subarray(0, want.length)), sha256(want));
    assert.ok(got.subarray(want.length).every((b) => b === 0));
    assertFsckClean(t, back);
  });
}

test('Linux mounts the image read-write, takes writes, and e2fsck stays clean (root + loop only)', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root for a loop mount');
  const dir = tempDir(t, 'vmimg-ext4-');
  const image = join(dir, 'fs.img');
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  await build(memoryTree(SAMPLE), image, { journal: true, size: 64 * 1024 * 1024 });
  const m = run('mount', ['-o', 'loop,rw', '-t', 'ext4', image, mnt]);
  if (m.status !== 0) return t.skip(`loop mount not possible here: ${m.stderr.trim()}`);
  try {
    assert.equal(readFileSync(join(mnt, 'etc/motd'), 'utf8'), 'hello\n');
    mkdirSync(join(mnt, 'newdir'));
    for (let i = 0; i < 200; i++) writeFileSync(join(mnt, 'newdir', `f${i}`), `file ${i}`);
    writeFileSync(join(mnt, 'bin/tool'), Buffer.alloc(3 * 1024 * 1024, 9));
  } finally {
    assert.equal(run('umount', [mnt]).status, 0);
  }
  assertFsckClean(t, image);
});
