/**
 * The vhdx convert writer without qemu, in memory: blocks allocated in write order at MiB
 * boundaries after create's file end, BAT pages written only where a hole-BAT needs them,
 * sector bitmap entries skipped, writes spanning blocks, the ascending-order contract, -c
 * refused, determinism, and measure equal to the written length. (The qemu-img judgements are in
 * test/convert/vhdx-target.test.ts.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Extent } from '../../../src/formats/image.js';
import { vhdxDriver } from '../../../src/formats/vhdx/driver.js';
import { VHDX_OPTIONS } from '../../../src/formats/vhdx/params.js';
import { MemoryStorage } from '../../../src/storage/memory.js';
import { VmimgError } from '../../../src/util/errors.js';
import { ctxFor, seededRandom } from '../vpc/support.js';

const MiB = 1 << 20;
const BAT = 2 * MiB;

async function write(size: number, options: Record<string, string>, runs: Array<[number, number, number]>): Promise<Uint8Array> {
  const storage = new MemoryStorage();
  const w = await vhdxDriver.createWriter!(storage, ctxFor(VHDX_OPTIONS, BigInt(size), options, { random: seededRandom(5) }), false);
  assert.equal(w.granularity, 512);
  for (const [offset, length, fill] of runs) await w.write(offset, new Uint8Array(length).fill(fill));
  await w.finish();
  return storage.contents();
}

async function extents(bytes: Uint8Array): Promise<Extent[]> {
  const img = await vhdxDriver.open!(new MemoryStorage(bytes, { name: 'w.vhdx', writable: false }), { filename: 'w.vhdx', openReference: () => Promise.reject(new Error('none')) });
  return (await img.map(0, img.virtualSize)).map(({ storage: _s, ...rest }) => rest as Extent);
}

const entry = (img: Uint8Array, index: number) => new DataView(img.buffer, img.byteOffset).getBigUint64(BAT + index * 8, true);

test('dynamic, block_state_zero=off: blocks appended in write order, only the BAT pages that hold entries written', async () => {
  // 5 GiB of 1 MiB blocks: chunk ratio 4096, so block 4096 is BAT entry 4097 (page 8 of 4 KiB).
  const img = await write(5 * 1024 * MiB, { block_size: '1M', block_state_zero: 'off' }, [
    [512, 1024, 1],
    [3 * MiB - 512, 1024, 2],
    [4096 * MiB, 4096, 3],
  ]);
  // Data offset 8 MiB (BAT 2..3 MiB, metadata 3..4 MiB, + 4 MiB); 4 blocks allocated.
  assert.equal(img.length, 8 * MiB + 4 * MiB);
  assert.equal(entry(img, 0), BigInt(8 * MiB) | 6n);
  assert.equal(entry(img, 2), BigInt(9 * MiB) | 6n);
  assert.equal(entry(img, 3), BigInt(10 * MiB) | 6n);
  assert.equal(entry(img, 4096), 0n, 'sector bitmap entry');
  assert.equal(entry(img, 4097), BigInt(11 * MiB) | 6n);
  for (const i of [1, 4, 4095, 4098]) assert.equal(entry(img, i), 0n);
  assert.equal(img.subarray(8 * MiB, 8 * MiB + 512).every((b) => b === 0), true);
  assert.equal(img[8 * MiB + 512], 1);
  assert.equal(img[10 * MiB], 2, 'the write crossing into block 3 continues at its new block');
  assert.equal(img[11 * MiB], 3);
  const kinds = (await extents(img)).map((e) => [e.kind, e.start, e.length, 'offset' in e ? e.offset : undefined]);
  assert.deepEqual(kinds.slice(0, 4), [
    ['data', 0, MiB, 8 * MiB],
    ['unallocated', MiB, MiB, undefined],
    ['data', 2 * MiB, 2 * MiB, 9 * MiB],
    ['unallocated', 4 * MiB, 4092 * MiB, undefined],
  ]);
});

test('block_state_zero: untouched entries stay ZERO; fixed appends after its preallocated area, rounded to 1 MiB', async () => {
  const size = 24 * MiB + 512;
  const dyn = await write(size, {}, [[16 * MiB, 4096, 7]]);
  assert.equal(dyn.length, 8 * MiB + 8 * MiB);
  assert.deepEqual([entry(dyn, 0), entry(dyn, 1), entry(dyn, 2), entry(dyn, 3)], [2n, 2n, BigInt(8 * MiB) | 6n, 2n]);
  const fixed = await write(size, { subformat: 'fixed' }, [[16 * MiB, 4096, 7], [24 * MiB, 512, 8]]);
  // create: 8 MiB + size; first block at the next MiB (33 MiB), each 8 MiB long.
  assert.equal(fixed.length, 33 * MiB + 2 * 8 * MiB);
  assert.deepEqual([entry(fixed, 2), entry(fixed, 3)], [BigInt(33 * MiB) | 6n, BigInt(41 * MiB) | 6n]);
  const inPlace = await write(size, { subformat: 'fixed', block_state_zero: 'off' }, [[16 * MiB, 4096, 7]]);
  assert.equal(inPlace.length, 8 * MiB + size);
  assert.equal(inPlace[8 * MiB + 16 * MiB], 7);
  assert.equal(entry(inPlace, 1), BigInt(16 * MiB) | 6n);
});

test('nothing written: the file create makes; measure without data agrees', async () => {
  const cases: Array<Record<string, string>> = [{}, { subformat: 'fixed' }, { block_size: '2M', log_size: '3M', block_state_zero: 'off' }];
  for (const options of cases) {
    const ctx = ctxFor(VHDX_OPTIONS, BigInt(100 * MiB), options, { random: seededRandom(5) });
    const img = await write(100 * MiB, options, []);
    assert.equal(img.length, vhdxDriver.planCreate(ctx).length);
    const m = await vhdxDriver.measure!(ctx, undefined);
    assert.equal(m.required, BigInt(img.length));
  }
});

test('measure from a source: required is the length the writer produces for its data blocks', async () => {
  const ctx = ctxFor(VHDX_OPTIONS, BigInt(64 * MiB), { block_size: '1M' });
  const source = { virtualSize: 64 * MiB, allocatedBytes: async (g: number) => 3 * g };
  const m = await vhdxDriver.measure!(ctx, source);
  const img = await write(64 * MiB, { block_size: '1M' }, [[0, 512, 1], [5 * MiB, 512, 1], [63 * MiB, 512, 1]]);
  assert.equal(m.required, BigInt(img.length));
  assert.equal(m.fullyAllocated, BigInt(8 * MiB + 64 * MiB));
});

test('the same randomness gives the same bytes', async () => {
  const a = await write(32 * MiB, { block_size: '1M' }, [[MiB, 4096, 9]]);
  const b = await write(32 * MiB, { block_size: '1M' }, [[MiB, 4096, 9]]);
  assert.deepEqual(a, b);
});

test('contract violations and refusals are VmimgErrors', async () => {
  const ctx = () => ctxFor(VHDX_OPTIONS, BigInt(16 * MiB), { block_size: '1M' });
  const w = await vhdxDriver.createWriter!(new MemoryStorage(), ctx(), false);
  await w.write(5 * MiB, new Uint8Array(512));
  await assert.rejects(w.write(2 * MiB, new Uint8Array(512)), (e: unknown) => e instanceof VmimgError && e.code === 'INTERNAL');
  await assert.rejects(w.write(16 * MiB - 512, new Uint8Array(1024)), (e: unknown) => e instanceof VmimgError && e.code === 'INTERNAL');
  await assert.rejects(vhdxDriver.createWriter!(new MemoryStorage(), ctx(), true), (e: unknown) => e instanceof VmimgError && e.code === 'UNSUPPORTED_OPTION');
});
