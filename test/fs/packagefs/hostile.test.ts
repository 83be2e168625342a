/** Hostile packagefs images: every broken field gives a clear coded error, never a hang or a crash. */
import assert from 'node:assert/strict';
import test from 'node:test';
import fc from 'fast-check';
import { memorySource, PackagefsReader } from '../../../src/fs/packagefs/index.js';
import { ENTRY_SIZE, INDEX_OFFSET } from '../../../src/fs/packagefs/format.js';
import { isVmimgError } from '../../../src/util/errors.js';
import { buildInMemory, memoryTree, reseal, SAMPLE } from './helpers.js';

const good = await buildInMemory(memoryTree(SAMPLE));
const entryAt = (i: number): number => INDEX_OFFSET + i * ENTRY_SIZE;
const indexOf = (path: string): number => {
  const paths = ['', 'bin', 'bin/alias', 'bin/tool', 'etc', 'etc/empty', 'etc/motd', 'lib', 'usr', 'usr/lib', 'usr/lib/big'];
  return paths.indexOf(path);
};

function mutate(fn: (b: Buffer) => void, sealed = true): Buffer {
  const b = Buffer.from(good);
  fn(b);
  return sealed ? reseal(b) : b;
}

async function rejects(image: Buffer, code: string, pattern: RegExp): Promise<void> {
  await assert.rejects(PackagefsReader.open(memorySource(image)), (e: unknown) => {
    assert.ok(isVmimgError(e), String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.message, pattern);
    return true;
  });
}

test('hostile superblocks', async () => {
  await rejects(good.subarray(0, 100), 'CORRUPT_IMAGE', /too small for a superblock/);
  await rejects(good.subarray(0, 4096), 'CORRUPT_IMAGE', /image size \d+ is out of range \(at most 4096\)/);
  await rejects(mutate((b) => b.write('XX', 0)), 'UNSUPPORTED_IMAGE', /magic/);
  await rejects(mutate((b) => b.writeUInt16LE(2, 8)), 'UNSUPPORTED_IMAGE', /version 2\.0/);
  await rejects(mutate((b) => b.writeBigUInt64LE(1n << 40n, 24)), 'CORRUPT_IMAGE', /entry count 1099511627776 is out of range/);
  await rejects(mutate((b) => b.writeBigUInt64LE(0xffffffffffffffffn, 24)), 'CORRUPT_IMAGE', /entry count .* out of range/);
  await rejects(mutate((b) => b.writeBigUInt64LE(0n, 24)), 'CORRUPT_IMAGE', /entry count is 0/);
  await rejects(mutate((b) => b.writeBigUInt64LE(1n << 62n, 48)), 'CORRUPT_IMAGE', /names length .* out of range/);
  await rejects(mutate((b) => b.writeBigUInt64LE(b.readBigUInt64LE(56) + 512n, 56)), 'CORRUPT_IMAGE', /data offset/);
  await rejects(mutate((b) => b.writeBigUInt64LE(BigInt(good.length) + 512n, 64)), 'CORRUPT_IMAGE', /image size .* out of range/);
  await rejects(mutate((b) => b.writeUInt8(1, 300)), 'CORRUPT_IMAGE', /reserved superblock bytes/);
  await rejects(mutate((b) => b.writeUInt8(1, entryAt(3) + 12), false), 'CORRUPT_IMAGE', /metadata checksum mismatch/);
});

test('hostile entries', async () => {
  const tool = entryAt(indexOf('bin/tool'));
  const big = entryAt(indexOf('usr/lib/big'));
  await rejects(mutate((b) => b.writeBigUInt64LE(1n << 50n, tool)), 'CORRUPT_IMAGE', /entry 3: name at 1125899906842624\+8 lies outside the names region/);
  await rejects(mutate((b) => b.writeBigUInt64LE(b.readBigUInt64LE(tool + 40) + 1n, tool + 40)), 'CORRUPT_IMAGE', /'bin\/tool': data at .* not a sector-aligned range/);
  await rejects(mutate((b) => b.writeBigUInt64LE(BigInt(good.length), big + 40)), 'CORRUPT_IMAGE', /'usr\/lib\/big': data at/);
  await rejects(mutate((b) => b.writeBigUInt64LE(0xfffffffffffffe00n, big + 40)), 'CORRUPT_IMAGE', /data at/);
  await rejects(mutate((b) => b.writeBigUInt64LE(1n << 60n, big + 32)), 'CORRUPT_IMAGE', /size 1152921504606846976 is out of range/);
  await rejects(mutate((b) => b.writeUInt32LE(0o020644, tool + 12)), 'CORRUPT_IMAGE', /mode 0o20644 is not a file, directory or symlink/);
  await rejects(mutate((b) => b.writeUInt32LE(0o040755, entryAt(0) + 12) && b.writeUInt32LE(0o100644, entryAt(0) + 12)), 'CORRUPT_IMAGE', /root\) is not a directory/);
  await rejects(mutate((b) => b.writeUInt8(7, tool + 90)), 'CORRUPT_IMAGE', /entry 3: reserved bytes/);
  // entry order and duplicates: swap two index records
  await rejects(mutate((b) => {
    const a = Buffer.from(b.subarray(entryAt(5), entryAt(6)));
    b.copy(b, entryAt(5), entryAt(6), entryAt(7));
    a.copy(b, entryAt(6));
  }), 'CORRUPT_IMAGE', /'etc\/empty' is not after 'etc\/motd'/);
  // a parent that is not a directory: make 'bin' a symlink
  await rejects(mutate((b) => b.writeUInt32LE(0o120777, entryAt(1) + 12)), 'CORRUPT_IMAGE', /symlink target|parent directory is missing/);
  // overlapping data: point motd into big's data with its own size
  const motd = entryAt(indexOf('etc/motd'));
  await rejects(mutate((b) => b.writeBigUInt64LE(b.readBigUInt64LE(big + 40) + 512n, motd + 40)), 'CORRUPT_IMAGE', /data of '.*' \(\d+\+\d+\) overlaps that of/);
  // a path escaping with '..': rewrite the name bytes of 'bin/tool' to 'bin/..ol'
  const nameAt = Number(good.readBigUInt64LE(40)) + Number(good.readBigUInt64LE(tool));
  await rejects(mutate((b) => b.write('../../', nameAt)), 'CORRUPT_IMAGE', /'\.\.' component|not after|parent/);
});

test('truncated images fail cleanly at every sector boundary', async () => {
  for (let len = 512; len < good.length; len += 512 * 97) {
    await assert.rejects(PackagefsReader.open(memorySource(good.subarray(0, len))), (e: unknown) => isVmimgError(e) && e.code === 'CORRUPT_IMAGE');
  }
});

test('seeded mutations of metadata (resealed) never crash, hang or read out of range', async () => {
  const dataOffset = Number(good.readBigUInt64LE(56));
  await fc.assert(
    fc.asyncProperty(fc.array(fc.tuple(fc.integer({ min: 0, max: dataOffset - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), async (edits) => {
      const image = mutate((b) => {
        for (const [at, v] of edits) if (at < 80 || at >= 112) b[at] = v;
      });
      const source = memorySource(image);
      const guarded = { size: source.size, read: async (o: number, l: number) => {
        assert.ok(Number.isSafeInteger(o) && Number.isSafeInteger(l) && o >= 0 && l >= 0 && o + l <= image.length, `read ${o}+${l} out of range`);
        return source.read(o, l);
      } };
      try {
        const r = await PackagefsReader.open(guarded);
        await r.verify();
      } catch (e) {
        assert.ok(isVmimgError(e), `non-VmimgError: ${String(e)}`);
        assert.ok(['CORRUPT_IMAGE', 'UNSUPPORTED_IMAGE'].includes(e.code), e.code);
      }
    }),
    { numRuns: 400, seed: 5 },
  );
});
