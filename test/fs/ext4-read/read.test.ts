/**
 * The ext4 reader against filesystems made by the real mke2fs -d (ext4 with and without
 * metadata_csum/64bit, with a journal and an htree directory of 3000 entries, ext2 with block
 * maps) and by vmimg's writer, read raw and inside qcow2: every entry equals the source folder
 * (content, mode, owner, symlink target). Damaged images fail with CORRUPT_IMAGE, never a hang.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, symlinkSync, truncateSync, writeFileSync, linkSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { Ext4Reader, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type Ext4Inode } from '../../../src/fs/ext4/read/reader.js';
import { memorySource, openImageSource } from '../../../src/fs/packagefs/source.js';
import { isVmimgError } from '../../../src/util/errors.js';
import { defaultPolicy } from '../../../src/chain/policy.js';
import { vmimg } from '../../helpers/cli.js';
import { oracle, qemuImg, run, tempDir } from '../../helpers/oracle.js';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

function sourceTree(dir: string): string {
  const src = join(dir, 'src');
  mkdirSync(join(src, 'etc'), { recursive: true });
  mkdirSync(join(src, 'big'), { recursive: true });
  mkdirSync(join(src, 'usr', 'bin'), { recursive: true });
  writeFileSync(join(src, 'etc', 'hostname'), 'reader\n', { mode: 0o600 });
  const blob = Buffer.alloc(3_000_000);
  for (let i = 0; i < blob.length; i++) blob[i] = (i * 2654435761) >>> 24;
  writeFileSync(join(src, 'usr', 'bin', 'tool'), blob, { mode: 0o755 });
  linkSync(join(src, 'usr', 'bin', 'tool'), join(src, 'usr', 'bin', 'tool-link'));
  symlinkSync('tool', join(src, 'usr', 'bin', 'fast'));
  symlinkSync('/' + 'x'.repeat(100) + '/target', join(src, 'usr', 'bin', 'slow'));
  for (let i = 0; i < 3000; i++) writeFileSync(join(src, 'big', `entry-${i}`), String(i));
  // Sparse: data at 0 and at 70 MiB, holes between.
  const fd = openSync(join(src, 'sparse'), 'w');
  writeSync(fd, 'head');
  writeSync(fd, 'tail', 70 * 1024 * 1024);
  closeSync(fd);
  return src;
}

/** Walks the filesystem and the folder together; returns the number of entries compared. */
async function compare(fs: Ext4Reader, src: string): Promise<number> {
  let n = 0;
  const walk = async (rel: string, inode: Ext4Inode): Promise<void> => {
    const host = join(src, rel);
    const st = lstatSync(host);
    assert.equal(inode.mode & 0o7777, st.mode & 0o7777, `/${rel} mode`);
    assert.deepEqual([inode.uid, inode.gid], [st.uid, st.gid], `/${rel} owner`);
    n++;
    if (st.isDirectory()) {
      assert.equal(inode.mode & S_IFMT, S_IFDIR);
      const entries = (await fs.readDir(inode)).filter((e) => !['.', '..'].includes(e.name.toString()) && !(rel === '' && e.name.toString() === 'lost+found'));
      assert.deepEqual(entries.map((e) => e.name.toString()).sort(), readdirSync(host).sort(), `/${rel} entries`);
      for (const e of entries) await walk(rel ? `${rel}/${e.name}` : e.name.toString(), await fs.inode(e.ino));
    } else if (st.isSymbolicLink()) {
      assert.equal(inode.mode & S_IFMT, S_IFLNK);
      assert.equal((await fs.readLink(inode)).toString(), readlinkSync(host), `/${rel} target`);
    } else {
      assert.equal(inode.mode & S_IFMT, S_IFREG);
      assert.equal(inode.size, st.size);
      assert.equal(sha(await fs.readAll(inode, 1 << 30)), sha(readFileSync(host)), `/${rel} content`);
    }
  };
  await walk('', await fs.inode(2));
  // Path lookups follow symlinks inside the filesystem.
  assert.equal((await fs.lookup('/usr/bin/fast'))!.path, '/usr/bin/tool');
  return n;
}

test('filesystems from mke2fs -d and from vmimg read back equal to their source, raw and in qcow2', async (t) => {
  if (!oracle(t, 'mke2fs') || !oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-ext4-read-');
  const src = sourceTree(dir);
  const images: Array<[string, string[]]> = [
    ['ext4-default', ['-t', 'ext4']],
    ['ext4-nocsum', ['-t', 'ext4', '-O', '^metadata_csum,^64bit']],
    ['ext4-journal-1k', ['-t', 'ext4', '-b', '1024', '-J', 'size=4']],
    ['ext2', ['-t', 'ext2']],
  ];
  for (const [name, args] of images) {
    const img = join(dir, `${name}.img`);
    writeFileSync(img, '');
    truncateSync(img, 160 * 1024 * 1024);
    const r = run('mke2fs', ['-q', '-F', '-E', 'root_owner=0:0', ...args, '-d', src, img]);
    assert.equal(r.status, 0, r.stderr);
  }
  const made = await vmimg(['mkfs', '-t', 'ext4', '-J', src, join(dir, 'vmimg.img')]);
  assert.equal(made.status, 0, made.stderr);
  assert.equal(qemuImg(['convert', '-O', 'qcow2', join(dir, 'ext4-default.img'), join(dir, 'ext4.qcow2')]).status, 0);
  for (const name of [...images.map(([n]) => `${n}.img`), 'vmimg.img', 'ext4.qcow2']) {
    const { source, chain } = await openImageSource(join(dir, name), { policy: defaultPolicy(join(dir, name)) });
    try {
      const fs = await Ext4Reader.open(source);
      const n = await compare(fs, src);
      assert.ok(n > 3000, `${name}: ${n} entries compared`);
      const big = await fs.lookup('/big');
      assert.equal((await fs.readDir(big!.inode)).length, 3002, `${name}: the large directory (htree where mke2fs made one) lists every entry`);
    } finally {
      await chain.close();
    }
  }
});

test('damaged filesystems are CORRUPT_IMAGE, unknown features UNSUPPORTED_IMAGE, and random damage never hangs', async (t) => {
  if (!oracle(t, 'mke2fs')) return;
  const dir = tempDir(t, 'vmimg-ext4-bad-');
  const src = join(dir, 'src');
  mkdirSync(join(src, 'd'), { recursive: true });
  writeFileSync(join(src, 'd', 'f'), Buffer.alloc(200_000, 3));
  symlinkSync('d/f', join(src, 'l'));
  const img = join(dir, 'x.img');
  writeFileSync(img, '');
  truncateSync(img, 8 * 1024 * 1024);
  assert.equal(run('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', src, img]).status, 0);
  const good = readFileSync(img);
  const open = async (bytes: Buffer): Promise<Ext4Reader> => Ext4Reader.open(memorySource(bytes));
  const mutated = (f: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(good);
    f(b);
    return b;
  };
  const corrupt = (re: RegExp) => (e: unknown) => isVmimgError(e) && e.code === 'CORRUPT_IMAGE' && re.test(e.message);
  await assert.rejects(open(mutated((b) => b.writeUInt16LE(0x1234, 1080))), corrupt(/no ext2\/3\/4 superblock/));
  await assert.rejects(open(mutated((b) => b.writeUInt8(b.readUInt8(1024 + 200) ^ 1, 1024 + 200))), corrupt(/superblock checksum mismatch/));
  await assert.rejects(open(good.subarray(0, 4 * 1024 * 1024)), corrupt(/more than the \d+-byte image/));
  await assert.rejects(open(mutated((b) => b.writeUInt32LE(b.readUInt32LE(1024 + 96) | 0x8000, 1024 + 96))), (e: unknown) => isVmimgError(e) && e.code === 'UNSUPPORTED_IMAGE' && /inline_data/.test(e.message));
  // Damage the file's inode: its checksum no longer matches.
  const fs = await open(good);
  const f = (await fs.lookup('/d/f'))!.inode;
  let inodeAt = -1;
  for (let off = 0; off < good.length; off += 256) {
    if (good.readUInt16LE(off) === f.mode && good.readUInt32LE(off + 4) === 200_000 && good.subarray(off + 0x28, off + 0x28 + 60).equals(f.iblock)) inodeAt = off;
  }
  assert.ok(inodeAt > 0);
  const badInode = await open(mutated((b) => b.writeUInt8(b.readUInt8(inodeAt + 0x2c) ^ 0xff, inodeAt + 0x2c)));
  await assert.rejects(badInode.lookup('/d/f').then((h) => badInode.readAll(h!.inode, 1e6)), corrupt(/inode \d+ checksum mismatch/));

  // Random byte damage in the metadata area: any outcome but a hang or a non-VmimgError.
  let outcomes = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(fc.tuple(fc.integer({ min: 1024, max: 1024 * 1024 - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), async (edits) => {
      const b = Buffer.from(good);
      for (const [at, v] of edits) b[at] = v;
      try {
        const r = await open(b);
        for (const p of ['/d/f', '/l', '/d', '/nope']) {
          const hit = await r.lookup(p, true);
          if (hit && (hit.inode.mode & S_IFMT) === S_IFREG) await r.readAll(hit.inode, 64 * 1024 * 1024);
          if (hit && (hit.inode.mode & S_IFMT) === S_IFDIR) await r.readDir(hit.inode);
        }
      } catch (e) {
        assert.ok(isVmimgError(e), `unexpected ${String(e)}`);
      }
      outcomes++;
    }),
    { numRuns: 300, seed: 424242 },
  );
  assert.equal(outcomes, 300);
});
