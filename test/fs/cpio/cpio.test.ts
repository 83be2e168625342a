/**
 * cpio newc archives judged by GNU cpio: `cpio -idm` extracts a tree equal to the source
 * (content, modes, owners when root, symlinks, hard links sharing an inode, fifos, device
 * numbers), `cpio -tv` lists it, the bytes are the same on every build, gzip output is an
 * initramfs `gzip -dc | cpio -t` reads, and limits are CPIO_LIMIT before anything is written.
 */
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildCpio } from '../../../src/fs/cpio/build.js';
import { isVmimgError } from '../../../src/util/errors.js';
import { memoryTree, zeroContent } from '../ext4/helpers.js';
import { vmimg } from '../../helpers/cli.js';
import { oracle, run, tempDir } from '../../helpers/oracle.js';

const isRoot = process.getuid?.() === 0;

function sample() {
  return memoryTree([
    { path: 'bin', type: 'dir' },
    { path: 'bin/tool', data: Buffer.alloc(70_001, 9), mode: 0o4755, uid: 0, gid: 0 },
    { path: 'bin/tool2', type: 'hardlink', target: 'bin/tool' },
    { path: 'bin/sh', type: 'symlink', target: 'tool', mode: 0o777 },
    { path: 'dev', type: 'dir' },
    { path: 'dev/console', type: 'char', rdev: [5, 1], mode: 0o600, uid: 0, gid: 0 },
    { path: 'dev/vda', type: 'block', rdev: [254, 0], mode: 0o660, uid: 0, gid: 6 },
    { path: 'run', type: 'dir', mode: 0o1777 },
    { path: 'run/fifo', type: 'fifo', mode: 0o644 },
    { path: 'etc', type: 'dir', uid: 1000, gid: 1000 },
    { path: 'etc/motd', data: 'hi\n', uid: 1000, gid: 100, mtimeNs: 1_600_000_000_000_000_000n },
    { path: 'etc/empty', data: '' },
    { path: 'unicode-é日本', data: 'x' },
  ]);
}

test('GNU cpio extracts and lists what vmimg archived; identical bytes on every build', async (t) => {
  if (!oracle(t, 'cpio')) return;
  const dir = tempDir(t, 'vmimg-cpio-');
  const tree = sample();
  const a = join(dir, 'a.cpio');
  const r = await buildCpio(tree, a);
  assert.equal(r.entries, 13);
  await buildCpio(sample(), join(dir, 'b.cpio'));
  assert.deepEqual(readFileSync(join(dir, 'b.cpio')), readFileSync(a), 'deterministic');
  assert.equal(readFileSync(a).length % 4, 0);

  const out = join(dir, 'out');
  mkdirSync(out);
  const x = run('sh', ['-c', `cd '${out}' && cpio -idm --no-absolute-filenames < '${a}'`]);
  assert.equal(x.status, 0, x.stderr);
  const listing = run('sh', ['-c', `cpio -tv < '${a}'`]).stdout;
  assert.match(listing, /-rwsr-xr-x +2 root +root +0 .* bin\/tool\n-rwsr-xr-x +2 root +root +70001 .* bin\/tool2\n/, "the data travels with the last link, as GNU cpio writes it");
  assert.match(listing, /lrwxrwxrwx .* bin\/sh -> tool\n/);
  assert.match(listing, /crw------- .* 5, +1 .* dev\/console\n/);
  for (const e of tree.entries) {
    const p = e.path.toString();
    if (p === '') continue;
    const host = join(out, p);
    const st = lstatSync(host);
    if (e.type === 'symlink') {
      assert.equal(readlinkSync(host), e.symlinkTarget!.toString());
      continue;
    }
    if (e.type !== 'dir' || p !== 'run') assert.equal(st.mode & 0o7777, e.mode, `${p} mode`);
    if (e.type === 'file' || e.type === 'hardlink') {
      assert.deepEqual(readFileSync(host), Buffer.from(await e.content!.read(0, e.size)), `${p} content`);
      assert.equal(Math.floor(st.mtimeMs / 1000), Number(e.mtimeNs / 1_000_000_000n), `${p} mtime`);
    }
    if (isRoot) assert.deepEqual([st.uid, st.gid], [e.uid, e.gid], `${p} owner`);
    if (e.type === 'fifo') assert.ok(st.isFIFO());
    if (e.type === 'char' || e.type === 'block') {
      assert.ok(e.type === 'char' ? st.isCharacterDevice() : st.isBlockDevice(), p);
      assert.equal(st.rdev, (e.rdev!.major << 8) | e.rdev!.minor, `${p} rdev`);
    }
  }
  assert.equal(lstatSync(join(out, 'bin', 'tool')).ino, lstatSync(join(out, 'bin', 'tool2')).ino, 'hard links share an inode');
  assert.equal(lstatSync(join(out, 'bin', 'tool')).nlink, 2);
});

test('mkfs -t cpio --compress gzip from a folder; CPIO_LIMIT names the entry', async (t) => {
  if (!oracle(t, 'cpio') || !oracle(t, 'gzip')) return;
  const dir = tempDir(t, 'vmimg-cpio-cli-');
  const src = join(dir, 'src');
  mkdirSync(join(src, 'a'), { recursive: true });
  for (let i = 0; i < 50; i++) (await import('node:fs')).writeFileSync(join(src, 'a', `f${i}`), `file ${i}\n`);
  const r = await vmimg(['mkfs', '-t', 'cpio', '--compress', 'gzip', '--owner', '0:0', '--output', 'json', src, join(dir, 'init.cpio.gz')]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).compression, 'gzip');
  const names = run('sh', ['-c', `gzip -dc '${join(dir, 'init.cpio.gz')}' | cpio -t 2>/dev/null`]).stdout.split('\n').filter(Boolean);
  assert.deepEqual(names, ['a', ...Array.from({ length: 50 }, (_, i) => `a/f${i}`).sort()]);
  const huge = memoryTree([{ path: 'big', content: zeroContent(2 ** 32) }]);
  await assert.rejects(buildCpio(huge, join(dir, 'huge.cpio')), (e: unknown) => isVmimgError(e) && e.code === 'CPIO_LIMIT' && /file size 4294967296 of 'big'/.test(e.message));
  assert.equal(existsSync(join(dir, 'huge.cpio')), false);
  assert.deepEqual(readdirSync(dir).sort(), ['init.cpio.gz', 'src']);
  const bad = await vmimg(['mkfs', '-t', 'cpio', '--compress', 'xz', src, join(dir, 'x.cpio')]);
  assert.match(bad.stderr, /\[UNSUPPORTED_OPTION\]/);
});
