/**
 * Persistent bitmaps written by the qcow2 convert writer (bitmap-store.ts) and read back by the
 * qcow2 reader (bitmap-data.ts), in memory: the bits round-trip for every cluster size and
 * granularity, all-zero clusters of bitmap bytes get no data cluster, refcounts stay exact, and
 * the reader refuses tables QEMU refuses. (QEMU's reading of them: test/convert/bitmaps.test.ts.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openImageFromStorage } from '../../../src/chain/open.js';
import { DENY_ALL } from '../../../src/chain/policy.js';
import { bitmapGeometry } from '../../../src/formats/qcow2/bitmap-data.js';
import { qcow2Driver } from '../../../src/formats/qcow2/driver.js';
import type { BitmapBits } from '../../../src/formats/types.js';
import type { BitmapToStore } from '../../../src/formats/writer.js';
import { MemoryStorage } from '../../../src/storage/memory.js';
import { VmimgError } from '../../../src/util/errors.js';
import { mutate, Rng } from '../../fuzz/harness.js';
import { seededRandom } from '../../helpers/random.js';
import { ctxFor } from './support.js';

function bitsOf(bytes: Uint8Array, bits: number): BitmapBits {
  return { bits, read: async (start, length) => bytes.slice(start, start + length) };
}

/** Random bitmap bytes with whole zero and whole 0xff stretches of `cs` bytes, tail bits cleared. */
function content(bits: number, cs: number, seed: number): Uint8Array {
  const bytes = seededRandom(seed)(Math.ceil(bits / 8));
  for (let at = 0; at < bytes.length; at += cs) {
    const kind = (at / cs) % 3;
    if (kind === 1) bytes.fill(0, at, at + cs);
    if (kind === 2) bytes.fill(0xff, at, at + cs);
  }
  if (bits % 8) bytes[bytes.length - 1] = bytes[bytes.length - 1]! & ((1 << bits % 8) - 1);
  return bytes;
}

async function build(size: number, cs: number, bitmaps: BitmapToStore[]): Promise<MemoryStorage> {
  const storage = new MemoryStorage(new Uint8Array(0), { name: 't.qcow2' });
  const w = await qcow2Driver.createWriter!(storage, ctxFor(BigInt(size), { cluster_size: String(cs) }), false);
  await w.write(0, new Uint8Array(cs).fill(7));
  await w.writeBitmaps!(bitmaps);
  await w.finish();
  return storage;
}

test('bitmaps round-trip through the writer and the reader; zero clusters of bits take no space; check is clean', async () => {
  for (const [size, cs] of [
    [10 * 1024 * 1024 + 512, 512],
    [10 * 1024 * 1024 + 512, 65536],
    [3 * 1024 * 1024, 4096],
    [64 * 1024 * 1024, 2 * 1024 * 1024],
  ] as const) {
    const wanted = [
      { name: 'fine', granularity: 512, enabled: true },
      { name: 'mid', granularity: 65536, enabled: false },
      { name: 'coarse', granularity: 4 * 1024 * 1024, enabled: true },
      { name: 'ünïcode', granularity: 1024, enabled: true },
    ].map((b, i) => {
      const { bits } = bitmapGeometry(size, b.granularity, cs);
      return { ...b, bytes: content(bits, cs, i + 1), bits };
    });
    const storage = await build(size, cs, wanted.map((b) => ({ ...b, load: async () => bitsOf(b.bytes, b.bits) })));
    const { image } = await openImageFromStorage(storage, 't.qcow2', { format: 'qcow2', policy: DENY_ALL });
    try {
      assert.deepEqual(image.persistentBitmaps!(), wanted.map((b) => ({ name: b.name, granularity: b.granularity, enabled: b.enabled, inconsistent: false })));
      for (const b of wanted) {
        const got = await (await image.readPersistentBitmap!(b.name)).read(0, b.bytes.length + 3);
        assert.deepEqual(got, Uint8Array.from([...b.bytes, 0, 0, 0]), `${size}/${cs}: ${b.name}`);
      }
      const r = await image.check!({ leaks: false, errors: false }, () => undefined);
      assert.equal(r.corruptions + r.leaks + r.checkErrors, 0, `${size}/${cs}`);
      // A table entry (data cluster) exactly for each cluster of bitmap bytes that is not all zero.
      const tables = await directory(storage);
      for (const [i, b] of wanted.entries()) {
        const table = await storage.read(tables[i]!.tableOffset, tables[i]!.entries * 8);
        const used: boolean[] = [];
        for (let e = 0; e < tables[i]!.entries; e++) used.push(new DataView(table.buffer, table.byteOffset).getBigUint64(e * 8) !== 0n);
        const expected = Array.from({ length: tables[i]!.entries }, (_, e) => b.bytes.subarray(e * cs, (e + 1) * cs).some((x) => x !== 0));
        assert.deepEqual(used, expected, `${size}/${cs}: ${b.name} table`);
      }
    } finally {
      await image.close();
    }
  }
});

test('no bitmaps: no extension, no autoclear bit', async () => {
  const storage = await build(1024 * 1024, 65536, []);
  const head = await storage.read(0, 112);
  assert.equal(new DataView(head.buffer, head.byteOffset).getBigUint64(88), 0n);
  const { image } = await openImageFromStorage(storage, 't.qcow2', { format: 'qcow2', policy: DENY_ALL });
  assert.deepEqual(image.persistentBitmaps!(), []);
  await image.close();
});

/** Each directory entry's offset, table offset and table entries (spec "Bitmap directory"). */
async function directory(storage: MemoryStorage): Promise<Array<{ entry: number; tableOffset: number; entries: number }>> {
  const head = await storage.read(0, 4096);
  const v = new DataView(head.buffer, head.byteOffset);
  for (let at = 112; at + 32 <= head.length; ) {
    const type = v.getUint32(at);
    const len = v.getUint32(at + 4);
    if (type === 0x23852875) {
      const offset = Number(v.getBigUint64(at + 24));
      const dir = await storage.read(offset, Number(v.getBigUint64(at + 16)));
      const d = new DataView(dir.buffer, dir.byteOffset);
      const out = [];
      for (let e = 0; e < dir.length; e += Math.ceil((24 + d.getUint16(e + 18)) / 8) * 8) {
        out.push({ entry: offset + e, tableOffset: Number(d.getBigUint64(e)), entries: d.getUint32(e + 8) });
      }
      return out;
    }
    if (type === 0) break;
    at += 8 + Math.ceil(len / 8) * 8;
  }
  throw new Error('no bitmaps extension');
}

async function firstTable(storage: MemoryStorage): Promise<{ tableOffset: number; entry: number }> {
  return (await directory(storage))[0]!;
}

test('the reader refuses the tables QEMU refuses, with its messages', async () => {
  const size = 4 * 1024 * 1024;
  const { bits } = bitmapGeometry(size, 512, 512);
  const bytes = content(bits, 512, 9);
  const fresh = (cs = 512): Promise<MemoryStorage> => build(size, cs, [{ name: 'b', granularity: 512, enabled: true, load: async () => bitsOf(bytes, bits) }]);
  const cases: Array<[string, number, (s: MemoryStorage, t: { tableOffset: number; entry: number }) => Promise<void>, RegExp]> = [
    ['reserved bit', 512, (s, t) => s.write(t.tableOffset, Uint8Array.of(0x01, 0, 0, 0, 0, 0, 0, 0)), /Could not read bitmap_table table from image for bitmap 'b': Invalid argument$/],
    ['all ones with an offset', 512, (s, t) => s.write(t.tableOffset + 7, Uint8Array.of(0x01)), /Could not read bitmap_table table from image for bitmap 'b'/],
    // 512-byte aligned, not 64 KiB aligned.
    ['unaligned offset', 65536, (s, t) => s.write(t.tableOffset + 6, Uint8Array.of(0x02, 0x00)), /Could not read bitmap_table table from image for bitmap 'b'/],
    // One entry more than the bitmap needs (the directory still allows it).
    ['table size', 512, async (s, t) => s.write(t.entry + 8, Uint8Array.of(0, 0, 0, Math.ceil(bytes.length / 512) + 1)), /Could not read bitmap 'b' from image: Invalid argument$/],
  ];
  for (const [name, cs, poke, message] of cases) {
    const storage = await fresh(cs);
    await poke(storage, await firstTable(storage));
    const { image } = await openImageFromStorage(storage, 't.qcow2', { format: 'qcow2', policy: DENY_ALL });
    await assert.rejects(image.readPersistentBitmap!('b'), (e: unknown) => e instanceof VmimgError && e.code === 'CORRUPT_IMAGE' && message.test(e.message), name);
    await image.close();
  }
  // "All ones" without an offset reads as ones, bits past the end of the disk excluded.
  const storage = await fresh();
  const t = await firstTable(storage);
  const last = Math.ceil(bytes.length / 512) - 1;
  await storage.write(t.tableOffset + last * 8, Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 1));
  const { image } = await openImageFromStorage(storage, 't.qcow2', { format: 'qcow2', policy: DENY_ALL });
  const got = await (await image.readPersistentBitmap!('b')).read(last * 512, 512);
  assert.deepEqual(got, new Uint8Array(512).fill(0xff, 0, bytes.length - last * 512));
  await image.close();
});

test('mutated bitmap metadata: reading and re-storing the bitmaps fails only with a VmimgError', async () => {
  const size = 256 * 1024;
  const seeds: Uint8Array[] = [];
  for (const cs of [512, 4096]) {
    const bitmaps = [512, 1024, 65536].map((g, i): BitmapToStore => {
      const { bits } = bitmapGeometry(size, g, cs);
      const bytes = content(bits, 64, 20 + i);
      return { name: `b${i}`, granularity: g, enabled: i !== 1, load: async () => bitsOf(bytes, bits) };
    });
    const built = await build(size, cs, bitmaps);
    seeds.push(await built.read(0, await built.size()));
  }
  const rng = new Rng(0xb17);
  let read = 0;
  for (let i = 0; i < 300; i++) {
    const storage = new MemoryStorage(mutate(seeds[i % seeds.length]!, rng), { name: 'm.qcow2' });
    try {
      const { image } = await openImageFromStorage(storage, 'm.qcow2', { format: 'qcow2', policy: DENY_ALL });
      try {
        const list = (image.persistentBitmaps?.() ?? []).filter((b) => !b.inconsistent);
        const w = await qcow2Driver.createWriter!(new MemoryStorage(), ctxFor(BigInt(image.virtualSize), { cluster_size: '512' }), false);
        await w.writeBitmaps!(list.map((b) => ({ name: b.name, granularity: b.granularity, enabled: b.enabled ?? false, load: () => image.readPersistentBitmap!(b.name) })));
        await w.finish();
        read += list.length;
      } finally {
        await image.close();
      }
    } catch (e) {
      assert.ok(e instanceof VmimgError, `case ${i}: ${(e as Error).stack}`);
    }
  }
  assert.ok(read > 0, 'some mutated images still had bitmaps to read');
});
