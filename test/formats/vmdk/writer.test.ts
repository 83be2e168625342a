/**
 * The vmdk convert writer in memory, without qemu: read back through vmimg's own reader,
 * grain tables written to both directories' tables (and only tables that map something), grain
 * placement per subformat, zero handling with and without zeroed_grain, the ascending-order
 * contract, determinism and measure equal to the length written. (qemu-img's judgements are in
 * test/convert/vmdk-target.test.ts.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inflateSync } from 'node:zlib';
import { ChainReader } from '../../../src/chain/read.js';
import { vmdkDriver } from '../../../src/formats/vmdk/driver.js';
import { MemoryStorage } from '../../../src/storage/memory.js';
import { VmimgError } from '../../../src/util/errors.js';
import { ctxFor } from './support.js';

const G = 65536;
const MiB = 1 << 20;

type Op = ['data', number, number, number] | ['zero', number, number];

async function write(size: number, options: Record<string, string>, ops: Op[]): Promise<Uint8Array> {
  const storage = new MemoryStorage();
  const w = await vmdkDriver.createWriter!(storage, ctxFor(BigInt(size), options), false);
  assert.equal(w.granularity, G);
  for (const op of ops) {
    if (op[0] === 'data') await w.write(op[1], new Uint8Array(op[2]).fill(op[3]));
    else await w.writeZeroes(op[1], op[2]);
  }
  await w.finish();
  return storage.contents();
}

async function readBack(img: Uint8Array): Promise<Uint8Array> {
  const image = await vmdkDriver.open!(new MemoryStorage(img, { name: 'w.vmdk', writable: false }), { filename: 'w.vmdk', openReference: () => Promise.reject(new Error('none')) });
  try {
    const reader = new ChainReader([image]);
    const out = new Uint8Array(image.virtualSize);
    for (let at = 0; at < out.length; at += 32 * MiB) await reader.readInto(at, out.subarray(at, Math.min(out.length, at + 32 * MiB)));
    return out;
  } finally {
    await image.close();
  }
}

/** Header fields and the grain table entries reached from gdOffset and from rgdOffset. */
function tables(img: Uint8Array): { gtes: number[]; rgtes: number[]; overhead: number } {
  const v = new DataView(img.buffer, img.byteOffset, img.length);
  const capacity = Number(v.getBigUint64(12, true));
  const gtCount = Math.ceil(capacity / 128 / 512);
  const walk = (dir: number): number[] =>
    Array.from({ length: gtCount }, (_, t) => v.getUint32(dir * 512 + t * 4, true)).flatMap((gt) => Array.from({ length: 512 }, (_, i) => v.getUint32(gt * 512 + i * 4, true)));
  return { gtes: walk(Number(v.getBigUint64(56, true))), rgtes: walk(Number(v.getBigUint64(48, true))), overhead: Number(v.getBigUint64(64, true)) * 512 };
}

function expected(size: number, ops: Op[]): Uint8Array {
  const out = new Uint8Array(size);
  for (const op of ops) if (op[0] === 'data') out.fill(op[3], op[1], op[1] + op[2]);
  return out;
}

// 100 MiB + 3 KiB: four grain tables, a short last grain.
const SIZE = 100 * MiB + 3072;
const OPS: Op[] = [
  ['data', 0, 2 * G, 1],
  ['data', 40 * MiB, G, 2],
  ['zero', 41 * MiB, 2 * G],
  ['data', 70 * MiB, 3 * G, 3],
  ['data', 100 * MiB, 3072, 4],
];

test('monolithicSparse: grains appended in order after overHead, both table copies, reads back', async () => {
  const img = await write(SIZE, {}, OPS);
  const { gtes, rgtes, overhead } = tables(img);
  assert.equal(overhead, 65536); // ROUND_UP(21 + 2 × (1 GD sector + 4 GTs × 4), 128) sectors
  assert.deepEqual(rgtes, gtes);
  const o = overhead / 512;
  const allocated = gtes.map((e, i) => [i, e] as const).filter(([, e]) => e !== 0);
  // Zeros the caller asks for (a backing file to mask) are zero data grains without zeroed_grain.
  assert.deepEqual(
    allocated.map(([i]) => i),
    [0, 1, 640, 656, 657, 1120, 1121, 1122, 1600],
  );
  assert.deepEqual(
    allocated.map(([, e]) => e),
    allocated.map((_, k) => o + k * 128),
  );
  assert.equal(img.length, overhead + allocated.length * G);
  assert.deepEqual(await readBack(img), expected(SIZE, OPS));
});

test('zeroed_grain: whole zero grains get GTE 1, no data', async () => {
  const img = await write(SIZE, { zeroed_grain: 'on' }, OPS);
  const { gtes } = tables(img);
  assert.deepEqual([gtes[656], gtes[657]], [1, 1]);
  assert.equal(img[4], 2); // version 2
  assert.equal(img.length, tables(img).overhead + 7 * G);
  assert.deepEqual(await readBack(img), expected(SIZE, OPS));
});

test('streamOptimized: every grain a marker + zlib stream on the next sector; tail holds only its sectors', async () => {
  const img = await write(SIZE, { subformat: 'streamOptimized' }, OPS);
  const { gtes, rgtes, overhead } = tables(img);
  assert.deepEqual(rgtes, gtes);
  const v = new DataView(img.buffer, img.byteOffset, img.length);
  let next = overhead / 512;
  let last = 0;
  for (const [grain, sector] of gtes.map((e, i) => [i, e] as const).filter(([, e]) => e !== 0)) {
    assert.equal(sector, next, `grain ${grain}`);
    assert.equal(v.getBigUint64(sector * 512, true), BigInt(grain * 128));
    const size = v.getUint32(sector * 512 + 8, true);
    const plain = inflateSync(img.subarray(sector * 512 + 12, sector * 512 + 12 + size));
    assert.equal(plain.length, grain === 1600 ? 3072 : G, `grain ${grain}`);
    next = Math.ceil((sector * 512 + 12 + size) / 512);
    last = sector;
  }
  assert.equal(img.length, Math.max(last * 512 + G, (next + 1) * 512));
  assert.deepEqual(await readBack(img), expected(SIZE, OPS));
});

test('the writer advertises zlib compression only for streamOptimized; -c is accepted for both', async () => {
  const sparse = await vmdkDriver.createWriter!(new MemoryStorage(), ctxFor(BigInt(MiB)), true);
  assert.equal(sparse.compression, undefined);
  const stream = await vmdkDriver.createWriter!(new MemoryStorage(), ctxFor(BigInt(MiB), { subformat: 'streamOptimized' }), false);
  assert.equal(stream.compression?.codec, 'zlib');
  assert.equal(stream.compression?.maxCompressed, Number.MAX_SAFE_INTEGER);
  await assert.rejects(sparse.writeCompressed!(0, G, new Uint8Array(10)), (e: unknown) => e instanceof VmimgError && e.code === 'INTERNAL');
});

test('a write behind a grain table already written is refused (ascending-order contract)', async () => {
  const w = await vmdkDriver.createWriter!(new MemoryStorage(), ctxFor(BigInt(64 * MiB)), false);
  await w.write(40 * MiB, new Uint8Array(G).fill(1));
  await assert.rejects(w.write(0, new Uint8Array(G).fill(1)), (e: unknown) => e instanceof VmimgError && e.code === 'INTERNAL');
});

test('deterministic for a fixed CID; only tables that map something are written', async () => {
  const a = await write(SIZE, { subformat: 'streamOptimized' }, OPS);
  const b = await write(SIZE, { subformat: 'streamOptimized' }, OPS);
  assert.deepEqual(a, b);
  const empty = await write(SIZE, {}, []);
  const planned = vmdkDriver.planCreate(ctxFor(BigInt(SIZE)));
  assert.equal(empty.length, planned.length);
  const storage = new MemoryStorage();
  const w = await vmdkDriver.createWriter!(storage, ctxFor(BigInt(SIZE)), false);
  await w.write(70 * MiB, new Uint8Array(G).fill(9));
  await w.finish();
  const img = storage.contents();
  const { gtes } = tables(img);
  assert.equal(gtes.filter((e) => e !== 0).length, 1);
  // GT 2 of 4 holds the entry; GTs 0, 1 and 3 were never written (all zero).
  const v = new DataView(img.buffer, img.byteOffset);
  const gd = Number(v.getBigUint64(56, true));
  for (const t of [0, 1, 3]) assert.ok(img.subarray(v.getUint32(gd * 512 + t * 4, true) * 512, v.getUint32(gd * 512 + t * 4, true) * 512 + 2048).every((x) => x === 0));
});

test('measure: monolithicSparse required = the length written, streamOptimized bounds it', async () => {
  const dataGrains = 2 + 1 + 3 + 1;
  const source = { virtualSize: SIZE, allocatedBytes: async (granule: number) => dataGrains * granule };
  const dataOnly = OPS.filter((o) => o[0] === 'data');
  for (const sub of ['monolithicSparse', 'streamOptimized']) {
    const m = await vmdkDriver.measure!(ctxFor(BigInt(SIZE), { subformat: sub }), source);
    const img = await write(SIZE, { subformat: sub }, dataOnly);
    if (sub === 'monolithicSparse') assert.equal(BigInt(img.length), m.required);
    else assert.ok(BigInt(img.length) <= m.required, `${img.length} > ${m.required}`);
    assert.ok(m.required < m.fullyAllocated);
  }
});
