/**
 * The reader against filesystems made by the real mke2fs -d from one folder (htree directory of
 * 3000 entries, sparse files one past 4 GiB, fast/slow/relative/looping symlinks, hard links,
 * owners past 65535, user xattrs in the inode and in an xattr block): ext4 with and without
 * metadata_csum / 64bit / flex_bg, 1 KiB blocks with 128-byte inodes, inline_data, ext3 and ext2
 * (block maps), and the default ext4 inside qcow2 read through the image layer. Every entry
 * must equal the folder (e2fsck -D turns the big directory into a hash tree in three of them);
 * debugfs agrees on the inode numbers the reader resolves.
 */
import assert from 'node:assert/strict';
import { truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { defaultPolicy } from '../../../src/chain/policy.js';
import { Ext4Reader } from '../../../src/fs/ext4/read/reader.js';
import { openImageSource } from '../../../src/fs/packagefs/source.js';
import { oracle, qemuImg, run, tempDir } from '../../helpers/oracle.js';
import { checkLookups, compareTree, hostXattrs, sourceTree } from './tree.js';

const VARIANTS: Array<{ name: string; args: string[]; nsec: boolean; htree?: boolean }> = [
  { name: 'ext4-default', args: ['-t', 'ext4'], nsec: true, htree: true },
  { name: 'ext4-nocsum-32bit', args: ['-t', 'ext4', '-O', '^metadata_csum,^64bit'], nsec: true, htree: true },
  { name: 'ext4-no-flex-bg', args: ['-t', 'ext4', '-O', '^flex_bg'], nsec: true },
  { name: 'ext4-1k-128', args: ['-t', 'ext4', '-b', '1024', '-I', '128', '-J', 'size=4'], nsec: false, htree: true },
  { name: 'ext4-meta-bg-1k', args: ['-t', 'ext4', '-b', '1024', '-O', 'meta_bg,^resize_inode'], nsec: true },
  { name: 'ext4-inline', args: ['-t', 'ext4', '-O', 'inline_data'], nsec: true },
  { name: 'ext3', args: ['-t', 'ext3'], nsec: true },
  { name: 'ext2', args: ['-t', 'ext2'], nsec: true },
];

async function withImage<T>(path: string, f: (fs: Ext4Reader) => Promise<T>): Promise<T> {
  const { source, chain } = await openImageSource(path, { policy: defaultPolicy(path) });
  try {
    return await f(await Ext4Reader.open(source));
  } finally {
    await chain.close();
  }
}

test('mke2fs -d filesystems read back equal to their folder, raw and inside qcow2', async (t) => {
  if (!oracle(t, 'mke2fs') || !oracle(t, 'qemu-img') || !oracle(t, 'python3') || !oracle(t, 'debugfs') || !oracle(t, 'e2fsck')) return;
  const dir = tempDir(t, 'vmimg-ext4-read-');
  const src = sourceTree(dir, { bigDir: true, huge: true, xattrs: true });
  const xattrs = hostXattrs(src);
  assert.equal(xattrs.get('usr/bin/tool')!.get('user.big')!.length, 2 * 700, 'the big xattr was set');
  const images: string[] = [];
  for (const v of VARIANTS) {
    const img = join(dir, `${v.name}.img`);
    writeFileSync(img, '');
    truncateSync(img, 200 * 1024 * 1024);
    const r = run('mke2fs', ['-q', '-F', '-E', 'root_owner=0:0', ...v.args, '-d', src, img]);
    assert.equal(r.status, 0, `${v.name}: ${r.stderr}`);
    if (v.htree) {
      // mke2fs -d links entries linearly; e2fsck -D rebuilds directories as hash trees.
      const fsck = run('e2fsck', ['-fyD', img]);
      assert.ok(fsck.status === 0 || fsck.status === 1, `${v.name}: e2fsck -D: ${fsck.stdout}`);
    }
    images.push(img);
  }
  const qcow = join(dir, 'ext4-default.qcow2');
  assert.equal(qemuImg(['convert', '-O', 'qcow2', images[0]!, qcow]).status, 0);
  for (const [i, img] of [...images, qcow].entries()) {
    const v = VARIANTS[i] ?? VARIANTS[0]!;
    await t.test(img.slice(dir.length + 1), async () => {
      await withImage(img, async (fs) => {
        const n = await compareTree(fs, src, { times: true, xattrs, links: true });
        assert.ok(n > 3000, `${n} entries compared`);
        await checkLookups(fs);
        const big = (await fs.lookup('/big'))!.inode;
        assert.equal((await fs.readDir(big)).length, 3002, 'the large directory lists every entry');
        if (v.htree) assert.ok(big.flags & 0x1000, 'the large directory is hash-indexed');
        // debugfs resolves the same inode numbers.
        for (const p of ['/usr/bin/tool', '/big/entry-2999', '/home/user/notes']) {
          const want = run('debugfs', ['-R', `stat ${p}`, images[i] ?? images[0]!]).stdout.match(/Inode: (\d+)/)?.[1];
          assert.equal(String((await fs.lookup(p))!.inode.ino), want, `${p} inode number`);
        }
        const g = fs.geometry;
        if (v.name === 'ext4-default') assert.deepEqual([g.csum, g.bit64], [true, true]);
        if (v.name === 'ext4-nocsum-32bit') assert.deepEqual([g.csum, g.bit64, g.descSize], [false, false, 32]);
        if (v.name === 'ext4-1k-128') assert.deepEqual([g.blockSize, g.inodeSize], [1024, 128]);
        if (v.name === 'ext4-meta-bg-1k') {
          assert.ok(g.groups > 16 && g.firstMetaBg === 0, `meta_bg with ${g.groups} groups: descriptors spread over meta groups`);
          // An inode in the last group: its descriptor (checksum verified) comes from the last
          // meta group; the inode itself was never written.
          const last = (g.groups - 1) * g.inodesPerGroup + 1;
          await assert.rejects(fs.inode(last), new RegExp(`inode ${last} is not in use`));
        }
      });
    });
  }
  // mke2fs -d copies whole seconds only: set an extra time word (epoch bit + nanoseconds) with debugfs.
  for (const [i, v] of VARIANTS.entries()) {
    if (!v.nsec || v.name === 'ext2' || v.name === 'ext3') continue;
    const extra = (123456789 * 4 + 1) >>> 0;
    const r = run('debugfs', ['-w', '-R', `sif /etc/hostname mtime_extra 0x${extra.toString(16)}`, images[i]!]);
    assert.equal(r.status, 0, r.stderr);
    await withImage(images[i]!, async (fs) => {
      const { inode } = await fs.stat('/etc/hostname');
      const base = (await fs.stat('/etc/empty')).inode.mtimeFull.sec;
      assert.equal(inode.mtimeFull.nsec, 123456789, `${v.name}: nanoseconds`);
      assert.ok(inode.mtimeFull.sec >= 2 ** 32 && Math.abs(inode.mtimeFull.sec - 2 ** 32 - base) < 3600, `${v.name}: epoch bits extend the seconds (${inode.mtimeFull.sec})`);
    });
  }
});
