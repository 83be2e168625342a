/**
 * Damaged and hostile filesystems: targeted damage to each checked structure (superblock,
 * group descriptor, inode, extent header and block, directory block, xattr block) is
 * CORRUPT_IMAGE naming the structure and its number; unknown incompatible features are
 * UNSUPPORTED_IMAGE naming them; extent loops, huge counts and out-of-range pointers are refused
 * before they size anything. Then a few hundred seeded random mutations of a small image, with
 * and without metadata_csum: every outcome is a clean read or a VmimgError, and each case's
 * reads stay under a fixed count (a bounded-iteration guard, not a timing).
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import fc from 'fast-check';
import { ext4Crc } from '../../../src/fs/ext4/csum.js';
import { Ext4Reader, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../../../src/fs/ext4/read/reader.js';
import { memorySource, type BlockSource } from '../../../src/fs/packagefs/source.js';
import { isVmimgError } from '../../../src/util/errors.js';
import { oracle, run, tempDir } from '../../helpers/oracle.js';

interface Fixture {
  bytes: Buffer;
  img: string;
  /** Byte offset of an inode (debugfs imap). */
  inodeAt(path: string): number;
  /** debugfs stat's EXTENTS line. */
  extents(path: string): string;
  ino(path: string): number;
}

function fixture(t: TestContext, csum: boolean): Fixture {
  const dir = tempDir(t, 'vmimg-ext4-dmg-');
  const src = join(dir, 'src');
  mkdirSync(join(src, 'd'), { recursive: true });
  writeFileSync(join(src, 'd', 'f'), Buffer.alloc(200_000, 3));
  for (let i = 0; i < 40; i++) writeFileSync(join(src, 'd', `n${i}`), `${i}`);
  symlinkSync('d/f', join(src, 'l'));
  symlinkSync('/' + 'y'.repeat(80), join(src, 'slow'));
  // Eight data islands: more extents than the inode holds, so an extent tree block.
  const frag = Buffer.alloc(8 * 65536);
  writeFileSync(join(src, 'frag'), '');
  for (let i = 0; i < 8; i++) frag.fill(i + 1, i * 65536, i * 65536 + 5000);
  writeFileSync(join(src, 'frag'), frag);
  const py = run('python3', ['-c', "import os,sys; os.setxattr(sys.argv[1], 'user.big', b'z' * 600)", join(src, 'd', 'f')]);
  assert.equal(py.status, 0, py.stderr);
  const img = join(dir, 'x.img');
  writeFileSync(img, '');
  truncateSync(img, 8 * 1024 * 1024);
  const r = run('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '4096', '-O', csum ? 'metadata_csum' : '^metadata_csum', '-d', src, img]);
  assert.equal(r.status, 0, r.stderr);
  const debugfs = (cmd: string): string => run('debugfs', ['-R', cmd, img]).stdout;
  return {
    bytes: readFileSync(img),
    img,
    inodeAt: (p) => {
      const m = debugfs(`imap ${p}`).match(/located at block (\d+), offset 0x([0-9a-f]+)/)!;
      return Number(m[1]) * 4096 + parseInt(m[2]!, 16);
    },
    extents: (p) => debugfs(`stat ${p}`).split('EXTENTS:')[1]!.trim(),
    ino: (p) => Number(debugfs(`stat ${p}`).match(/Inode: (\d+)/)![1]),
  };
}

const sbCsum = (b: Buffer): number => b.writeUInt32LE(ext4Crc(0xffffffff, b.subarray(1024, 2044)), 2044);
const corrupt = (re: RegExp) => (e: unknown) => isVmimgError(e) && e.code === 'CORRUPT_IMAGE' && re.test(e.message);

/** Opens and walks everything reachable (bounded: each inode once, at most 500 entries). */
async function walk(source: BlockSource): Promise<void> {
  const fs = await Ext4Reader.open(source);
  const seen = new Set<number>();
  const queue = [2];
  while (queue.length > 0 && seen.size < 500) {
    const ino = queue.shift()!;
    if (seen.has(ino)) continue;
    seen.add(ino);
    const inode = await fs.inode(ino);
    await fs.xattrs(inode);
    const type = inode.mode & S_IFMT;
    if (type === S_IFDIR) for (const e of await fs.readDir(inode)) queue.push(e.ino);
    else if (type === S_IFLNK) await fs.readLink(inode);
    else if (type === S_IFREG) for await (const chunk of fs.read(inode, 16 * 1024 * 1024)) void chunk;
  }
  for (const p of ['/d/f', '/l', '/frag', '/d/../d/n3', '/nope']) await fs.lookup(p, true);
}

for (const csum of [true, false]) {
  test(`targeted damage is refused by name (metadata_csum ${csum ? 'on' : 'off'})`, async (t) => {
    if (!oracle(t, 'mke2fs') || !oracle(t, 'debugfs') || !oracle(t, 'python3')) return;
    const fx = fixture(t, csum);
    const good = fx.bytes;
    await walk(memorySource(good));
    const open = (b: Buffer): Promise<Ext4Reader> => Ext4Reader.open(memorySource(b));
    const mutated = (f: (b: Buffer) => void, fixSb = false): Buffer => {
      const b = Buffer.from(good);
      f(b);
      if (fixSb && csum) sbCsum(b);
      return b;
    };
    const readPath = async (b: Buffer, p: string): Promise<void> => {
      const fs = await open(b);
      const hit = await fs.lookup(p, false);
      assert.ok(hit, `${p} resolves`);
      await fs.xattrs(hit.inode);
      if ((hit.inode.mode & S_IFMT) === S_IFDIR) await fs.readDir(hit.inode);
      else await fs.readAll(hit.inode, 1 << 24);
    };

    await assert.rejects(open(mutated((b) => b.writeUInt16LE(0x1234, 1080))), corrupt(/no ext2\/3\/4 superblock \(magic 0x1234/));
    if (csum) await assert.rejects(open(mutated((b) => void (b[1024 + 200] = b[1024 + 200]! ^ 1))), corrupt(/superblock checksum mismatch/));
    await assert.rejects(
      open(mutated((b) => b.writeUInt32LE(b.readUInt32LE(1024 + 96) | 0x10000 | 0x80000, 1024 + 96), true)),
      (e: unknown) => isVmimgError(e) && e.code === 'UNSUPPORTED_IMAGE' && /encrypt \(s_feature_incompat bits 0x90000\)/.test(e.message),
    );
    await assert.rejects(open(good.subarray(0, 4 * 1024 * 1024)), corrupt(/more than the 4194304-byte image/));
    await assert.rejects(open(mutated((b) => b.writeUInt32LE(0xfffffff0, 1024), true)), corrupt(/4294967280 inodes do not fit/));
    await assert.rejects(open(mutated((b) => b.writeUInt32LE(0xffffffff, 1024 + 4), true)), corrupt(/claims 4294967295 blocks/));
    await assert.rejects(open(mutated((b) => b.writeUInt32LE(40, 1024 + 24), true)), corrupt(/block size 1024 << 40/));
    // Group descriptor 0: its checksum with metadata_csum; an inode table outside the filesystem either way.
    if (csum) await assert.rejects(open(mutated((b) => void (b[4096 + 0x0c] = b[4096 + 0x0c]! ^ 0x10))), corrupt(/group descriptor 0 checksum mismatch/));
    if (!csum) await assert.rejects(open(mutated((b) => b.writeUInt32LE(0x7fffffff, 4096 + 8))), corrupt(/group descriptor 0: inode table at block 2147483647 lies outside/));

    const fIno = fx.ino('/d/f');
    const fAt = fx.inodeAt('/d/f');
    if (csum) await assert.rejects(readPath(mutated((b) => void (b[fAt + 0x2c] = b[fAt + 0x2c]! ^ 0xff)), '/d/f'), corrupt(new RegExp(`inode ${fIno} checksum mismatch`)));
    const fragIno = fx.ino('/frag');
    const fragAt = fx.inodeAt('/frag');
    const etb = Number(fx.extents('/frag').match(/\(ETB0\):(\d+)/)![1]);
    const iblock = fragAt + 0x28;
    if (csum) {
      await assert.rejects(readPath(mutated((b) => void (b[etb * 4096 + 20] = b[etb * 4096 + 20]! ^ 1)), '/frag'), corrupt(new RegExp(`inode ${fragIno}: extent block ${etb} checksum mismatch`)));
      const dIno = fx.ino('/d');
      const dBlock = Number(fx.extents('/d').match(/\(0\):(\d+)/)![1]!);
      await assert.rejects(readPath(mutated((b) => void (b[dBlock * 4096 + 30] = b[dBlock * 4096 + 30]! ^ 1)), '/d'), corrupt(new RegExp(`directory inode ${dIno}: block 0 checksum mismatch`)));
      const acl = good.readUInt32LE(fAt + 0x68);
      assert.ok(acl > 0, '/d/f has an xattr block');
      await assert.rejects(readPath(mutated((b) => void (b[acl * 4096 + 40] = b[acl * 4096 + 40]! ^ 1)), '/d/f'), corrupt(new RegExp(`inode ${fIno} xattr block ${acl}: checksum mismatch`)));
    } else {
      // Without checksums the structural checks themselves are reached.
      await assert.rejects(readPath(mutated((b) => b.writeUInt16LE(0xbeef, iblock)), '/frag'), corrupt(new RegExp(`inode ${fragIno}: bad extent header magic 0xbeef in inode ${fragIno}`)));
      await assert.rejects(readPath(mutated((b) => b.writeUInt16LE(9, iblock + 2)), '/frag'), corrupt(/extent header in inode \d+ is inconsistent \(entries 9, max 4/));
      await assert.rejects(readPath(mutated((b) => b.writeUInt16LE(6, iblock + 6)), '/frag'), corrupt(/extent tree depth 6 is beyond 5/));
      // Two index entries naming one tree block: a shared node or a loop, refused.
      const loop = mutated((b) => {
        b.writeUInt16LE(2, iblock + 2);
        b.writeUInt32LE(9000, iblock + 24); // second index: logical 9000
        b.writeUInt32LE(etb, iblock + 28);
        b.writeUInt16LE(0, iblock + 32);
      });
      await assert.rejects(readPath(loop, '/frag'), corrupt(new RegExp(`extent tree block ${etb} is reached twice`)));
      // The tree block claiming depth 1 and pointing at itself: its depth no longer descends.
      const self = mutated((b) => {
        b.writeUInt16LE(1, etb * 4096 + 6);
        b.writeUInt32LE(etb, etb * 4096 + 12 + 4);
      });
      await assert.rejects(readPath(self, '/frag'), corrupt(/depth 1, expected depth 0/));
      await assert.rejects(readPath(mutated((b) => b.writeUInt32LE(0x0fffffff, etb * 4096 + 12 + 8)), '/frag'), corrupt(/lies outside the filesystem/));
      await assert.rejects(readPath(mutated((b) => b.writeUInt16LE(0, etb * 4096 + 12 + 4)), '/frag'), corrupt(/empty extent/));
      const dBlock = Number(fx.extents('/d').match(/\(0\):(\d+)/)![1]!);
      await assert.rejects(readPath(mutated((b) => b.writeUInt16LE(0, dBlock * 4096 + 4)), '/d'), corrupt(/directory inode \d+: block 0: bad record at byte 0 \(rec_len 0/));
      await assert.rejects(readPath(mutated((b) => b.writeUInt32LE(0xfffffff, dBlock * 4096 + 24)), '/d'), corrupt(/entry names inode 268435455/));
      const acl = good.readUInt32LE(fAt + 0x68);
      await assert.rejects(readPath(mutated((b) => b.writeUInt16LE(4090, acl * 4096 + 32 + 2)), '/d/f'), corrupt(/value \(offset 4090, 600 bytes\) lies outside its region/));
      await assert.rejects(readPath(mutated((b) => b.writeUInt32LE(0x7fffffff, fAt + 4)), '/d/f').then(() => {}), (e: unknown) => isVmimgError(e) && e.code === 'FS_TOO_LARGE');
    }
  });

  test(`random damage never hangs or escapes as a non-VmimgError (metadata_csum ${csum ? 'on' : 'off'})`, async (t) => {
    if (!oracle(t, 'mke2fs') || !oracle(t, 'debugfs') || !oracle(t, 'python3')) return;
    const good = fixture(t, csum).bytes;
    const MAX_READS = 20_000;
    let outcomes = 0;
    let errors = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.tuple(fc.integer({ min: 1024, max: 1024 * 1024 - 1 }), fc.integer({ min: 0, max: 255 })).map(([at, v]) => (b: Buffer): void => {
              b[at] = v;
            }),
            fc.tuple(fc.integer({ min: 256, max: 256 * 1024 - 1 }), fc.constantFrom(0, 1, 0xffff, 0x7fffffff, 0xffffffff)).map(([w, v]) => (b: Buffer) => b.writeUInt32LE(v, w * 4)),
          ),
          { minLength: 1, maxLength: 8 },
        ),
        async (edits) => {
          const b = Buffer.from(good);
          for (const e of edits) e(b);
          if (csum) sbCsum(b); // let superblock damage reach the geometry checks
          let reads = 0;
          const inner = memorySource(b);
          const source: BlockSource = {
            size: inner.size,
            read: async (offset, length) => {
              if (++reads > MAX_READS) throw new Error(`more than ${MAX_READS} reads`);
              assert.ok(offset >= 0 && length >= 0 && offset + length <= b.length, `read [${offset}, +${length}) outside the image`);
              return inner.read(offset, length);
            },
          };
          try {
            await walk(source);
          } catch (e) {
            assert.ok(isVmimgError(e), `unexpected ${String(e)}`);
            errors++;
          }
          outcomes++;
        },
      ),
      { numRuns: 250, seed: csum ? 424242 : 777 },
    );
    assert.equal(outcomes, 250);
    assert.ok(errors > 0, 'some mutations are detected');
  });
}
