/**
 * The live bitmaps of a writable qcow2 (src/formats/qcow2/bitmap-live.ts) without an oracle:
 * setBits against a bit-by-bit model; a write session on an image built in memory sets exactly
 * the granules the requests touch (enabled bitmaps) and nothing else; mutated bitmap metadata
 * makes a writable open, write and close fail only with a VmimgError.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openImageFromStorage } from '../../../src/chain/open.js';
import { DENY_ALL } from '../../../src/chain/policy.js';
import { bitmapGeometry } from '../../../src/formats/qcow2/bitmap-data.js';
import { setBits } from '../../../src/formats/qcow2/bitmap-live.js';
import { qcow2Driver } from '../../../src/formats/qcow2/driver.js';
import type { BitmapToStore } from '../../../src/formats/writer.js';
import { MemoryStorage } from '../../../src/storage/memory.js';
import { VmimgError } from '../../../src/util/errors.js';
import { mutate, Rng } from '../../fuzz/harness.js';
import { ctxFor } from './support.js';

test('setBits sets exactly bits first..last, LSB first', () => {
  const rng = new Rng(5);
  for (let i = 0; i < 2000; i++) {
    const n = 1 + rng.below(200);
    const bits = new Uint8Array(Math.ceil(n / 8));
    for (let j = 0; j < bits.length; j++) bits[j] = rng.below(4) === 0 ? rng.below(256) : 0;
    const model = [...bits];
    const first = rng.below(n);
    const last = first + rng.below(n - first);
    setBits(bits, first, last);
    for (let k = first; k <= last; k++) model[k >> 3]! |= 1 << (k & 7);
    assert.deepEqual([...bits], model, `${first}..${last}`);
  }
});

const SIZE = 1024 * 1024 + 512;

async function build(cs: number, bitmaps: Array<{ name: string; granularity: number; enabled: boolean }>): Promise<MemoryStorage> {
  const storage = new MemoryStorage(new Uint8Array(0), { name: 't.qcow2' });
  const w = await qcow2Driver.createWriter!(storage, ctxFor(BigInt(SIZE), { cluster_size: String(cs) }), false);
  await w.write(0, new Uint8Array(cs).fill(7));
  const empty = (g: number): BitmapToStore['load'] => async () => ({ bits: bitmapGeometry(SIZE, g, cs).bits, read: async (_s, n) => new Uint8Array(n) });
  await w.writeBitmaps!(bitmaps.map((b) => ({ ...b, load: empty(b.granularity) })));
  await w.finish();
  return storage;
}

test('a session sets the granules its requests touch in enabled bitmaps only; stored at close, readable again', async () => {
  const wanted = [
    { name: 'g512', granularity: 512, enabled: true },
    { name: 'g4k', granularity: 4096, enabled: true },
    { name: 'off', granularity: 1024, enabled: false },
  ];
  const storage = await build(4096, wanted);
  const reqs: Array<[number, number]> = [
    [0, 1],
    [511, 2],
    [5000, 10000],
    [SIZE - 1, 1],
    [700000, 0],
  ];
  const { image } = await openImageFromStorage(storage, 't.qcow2', { format: 'qcow2', policy: DENY_ALL, writable: true });
  const open = image.persistentBitmaps!() ?? [];
  assert.ok(open.length === 3 && open.every((b) => b.inconsistent), 'in use while open');
  for (const [i, [o, n]] of reqs.entries()) {
    if (i % 2) await image.writeZeroes!(o, n);
    else await image.write!(o, new Uint8Array(n).fill(3));
  }
  // close() must not close the memory storage's bytes away: MemoryStorage keeps them.
  await image.close();
  const { image: again } = await openImageFromStorage(storage, 't.qcow2', { format: 'qcow2', policy: DENY_ALL });
  for (const b of wanted) {
    const { bits, bytes } = bitmapGeometry(SIZE, b.granularity, 4096);
    const got = await (await again.readPersistentBitmap!(b.name)).read(0, bytes);
    const model = new Uint8Array(bytes);
    if (b.enabled) for (const [o, n] of reqs) if (n > 0) setBits(model, Math.floor(o / b.granularity), Math.floor((o + n - 1) / b.granularity));
    assert.ok(Math.floor((SIZE - 1) / b.granularity) < bits);
    assert.deepEqual(got, model, b.name);
  }
  assert.deepEqual((again.persistentBitmaps!() ?? []).map((b) => [b.name, b.enabled, b.inconsistent]), wanted.map((b) => [b.name, b.enabled, false]));
  await again.close();
});

test('mutated bitmap metadata: a writable open, writes and close fail only with a VmimgError', async () => {
  const seeds: Uint8Array[] = [];
  for (const cs of [512, 4096]) {
    const storage = await build(cs, [
      { name: 'a', granularity: 512, enabled: true },
      { name: 'b', granularity: 65536, enabled: false },
    ]);
    seeds.push(await storage.read(0, await storage.size()));
  }
  const rng = new Rng(0xb1e);
  let written = 0;
  for (let i = 0; i < 300; i++) {
    const storage = new MemoryStorage(mutate(seeds[i % seeds.length]!, rng), { name: 'm.qcow2' });
    try {
      const { image } = await openImageFromStorage(storage, 'm.qcow2', { format: 'qcow2', policy: DENY_ALL, writable: true });
      try {
        await image.write!(rng.below(SIZE - 4096), new Uint8Array(4096).fill(1));
        await image.writeZeroes!(rng.below(SIZE - 70000), 70000);
        written++;
      } finally {
        await image.close();
      }
    } catch (e) {
      assert.ok(e instanceof VmimgError, `case ${i}: ${(e as Error).stack}`);
    }
  }
  assert.ok(written > 0, 'some mutated images were written');
});

/** The table offset of the first bitmap (spec "Bitmaps extension", "Bitmap directory"). */
function firstTable(bytes: Uint8Array): number {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = v.getUint32(100); ; ) {
    const type = v.getUint32(at);
    const len = v.getUint32(at + 4);
    if (type === 0) throw new Error('no bitmaps extension');
    if (type === 0x23852875) return Number(v.getBigUint64(Number(v.getBigUint64(at + 24))));
    at += 8 + Math.ceil(len / 8) * 8;
  }
}

test('a bitmap table pointing at clusters the bitmap does not own: the writable open is refused, the read-only one works', async () => {
  const seed = await (async () => {
    const s = await build(4096, [{ name: 'a', granularity: 512, enabled: true }]);
    return s.read(0, await s.size());
  })();
  const v = new DataView(seed.buffer, seed.byteOffset);
  const l1 = Number(v.getBigUint64(40));
  const reftable = Number(v.getBigUint64(48));
  const refblock = Number(v.getBigUint64(reftable) & 0x00fffffffffffe00n);
  for (const [what, target] of [
    ['a refcount block', refblock],
    ['the L1 table', l1],
    ['the refcount table', reftable],
    ['its own table', firstTable(seed)],
    ['past the end of the file', seed.length + 4096 * 4],
  ] as const) {
    const bytes = seed.slice();
    // Table entry 0: bitmap bytes 0..4095 in the data cluster at `target`.
    new DataView(bytes.buffer).setBigUint64(firstTable(bytes), BigInt(target));
    const storage = new MemoryStorage(bytes, { name: 'x.qcow2' });
    await assert.rejects(
      openImageFromStorage(storage, 'x.qcow2', { format: 'qcow2', policy: DENY_ALL, writable: true }),
      (e: unknown) => e instanceof VmimgError && e.code === 'CORRUPT_IMAGE' && /not its own/.test(e.message),
      what,
    );
    const { image } = await openImageFromStorage(new MemoryStorage(bytes.slice(), { name: 'x.qcow2' }), 'x.qcow2', { format: 'qcow2', policy: DENY_ALL });
    assert.equal(image.persistentBitmaps!()?.length, 1, what);
    await image.close();
  }
});
