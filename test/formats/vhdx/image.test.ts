/**
 * vhdx open/map/check without qemu, on images planned by vmimg and edited in memory: every
 * payload block state's extent kind, merging of contiguous blocks, the sector bitmap entries
 * skipped, a 64 TiB disk mapped in one call, request bounds, opening for check, and a seeded
 * mutation run over headers, region table, metadata and BAT (checksums recomputed in half the
 * cases so mutations reach past them) where only VmimgErrors may escape.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Extent, Image } from '../../../src/formats/image.js';
import { vhdxChecksum } from '../../../src/formats/vhdx/crc32c.js';
import { vhdxDriver } from '../../../src/formats/vhdx/driver.js';
import { VHDX_OPTIONS } from '../../../src/formats/vhdx/params.js';
import { HEADER1_OFFSET, HEADER2_OFFSET, HEADER_SIZE, REGION_TABLE1_OFFSET, REGION_TABLE_SIZE } from '../../../src/formats/vhdx/structs.js';
import { MemoryStorage } from '../../../src/storage/memory.js';
import { VmimgError } from '../../../src/util/errors.js';
import { Rng, runCase } from '../../fuzz/harness.js';
import { ctxFor, materialize, seededRandom } from '../vpc/support.js';

const MiB = 1 << 20;
const BAT = 2 * MiB;

function planned(size: bigint, options: Record<string, string> = {}): Uint8Array {
  return materialize(vhdxDriver.planCreate(ctxFor(VHDX_OPTIONS, size, options, { random: seededRandom(9) })));
}

function setEntry(img: Uint8Array, index: number, value: bigint): void {
  new DataView(img.buffer, img.byteOffset).setBigUint64(BAT + index * 8, value, true);
}

async function open(bytes: Uint8Array, check = false): Promise<Image> {
  return vhdxDriver.open!(new MemoryStorage(bytes, { name: 'm.vhdx', writable: false }), { filename: 'm.vhdx', openReference: () => Promise.reject(new Error('no references')), check });
}

const strip = (es: Extent[]) => es.map(({ storage: _storage, ...rest }) => rest);

test('payload states: FULLY_PRESENT data, ZERO zero, the others unallocated; 4 and 7 refused', async () => {
  // 16 MiB of 1 MiB blocks, no block_state_zero: every entry NOT_PRESENT; data start at 8 MiB.
  const img = planned(16n * BigInt(MiB), { block_size: '1M', block_state_zero: 'off' });
  const grown = new Uint8Array(12 * MiB);
  grown.set(img);
  setEntry(grown, 1, 1n); // UNDEFINED
  setEntry(grown, 2, 2n); // ZERO
  setEntry(grown, 3, 3n); // UNMAPPED
  setEntry(grown, 4, 5n); // UNMAPPED (v0.95)
  setEntry(grown, 5, (8n << 20n) | 6n); // FULLY_PRESENT at 8 MiB
  setEntry(grown, 6, (9n << 20n) | 6n); // ... at 9 MiB: contiguous with block 5
  setEntry(grown, 8, (11n << 20n) | 6n);
  const image = await open(grown);
  assert.equal(image.virtualSize, 16 * MiB);
  assert.equal(image.qemuReportsAllData, true);
  assert.deepEqual(image.info(), { clusterSize: MiB });
  assert.deepEqual(strip(await image.map(0, 16 * MiB)), [
    { kind: 'unallocated', start: 0, length: 2 * MiB },
    { kind: 'zero', start: 2 * MiB, length: MiB },
    { kind: 'unallocated', start: 3 * MiB, length: 2 * MiB },
    { kind: 'data', start: 5 * MiB, length: 2 * MiB, offset: 8 * MiB },
    { kind: 'unallocated', start: 7 * MiB, length: MiB },
    { kind: 'data', start: 8 * MiB, length: MiB, offset: 11 * MiB },
    { kind: 'unallocated', start: 9 * MiB, length: 7 * MiB },
  ]);
  assert.deepEqual(strip(await image.map(6 * MiB - 512, 1024)), [{ kind: 'data', start: 6 * MiB - 512, length: 1024, offset: 9 * MiB - 512 }]);
  await assert.rejects(image.map(0, 16 * MiB + 1), (e: unknown) => e instanceof VmimgError && e.code === 'OUT_OF_BOUNDS');
  for (const [state, what] of [
    [4n, /has state 4/],
    [7n, /has state 7/],
    [6n, /file offset 0, inside the header section/],
  ] as const) {
    const bad = grown.slice();
    setEntry(bad, 9, state);
    const opened = await open(bad);
    await assert.rejects(opened.map(9 * MiB, 512), (e: unknown) => e instanceof VmimgError && e.code === 'CORRUPT_IMAGE' && what.test(e.message));
    assert.deepEqual(strip(await opened.map(0, MiB)), [{ kind: 'unallocated', start: 0, length: MiB }]);
  }
});

test('sector bitmap entries are skipped: the payload entry of block j sits at j + j / chunk ratio', async () => {
  // 256 MiB blocks: chunk ratio 16, so block 16's entry is BAT index 17 (16 is a bitmap entry).
  const img = planned(17n * 256n * BigInt(MiB), { block_size: '256M', block_state_zero: 'off' });
  setEntry(img, 15, 2n);
  setEntry(img, 16, 2n); // a sector bitmap entry: no block's
  setEntry(img, 17, 3n);
  const image = await open(img);
  const tail = await image.map(15 * 256 * MiB, 2 * 256 * MiB);
  assert.deepEqual(strip(tail), [
    { kind: 'zero', start: 15 * 256 * MiB, length: 256 * MiB },
    { kind: 'unallocated', start: 16 * 256 * MiB, length: 256 * MiB },
  ]);
});

test('a 64 TiB disk maps in one call through the bounded BAT cache', async () => {
  const img = planned(64n << 40n);
  const image = await open(img);
  const map = await image.map(0, image.virtualSize);
  assert.deepEqual(strip(map), [{ kind: 'zero', start: 0, length: 64 * 2 ** 40 }]);
});

test('a block past the end refuses the open, except for check, which reports it like qemu-img', async () => {
  const img = planned(16n * BigInt(MiB), { block_size: '1M' });
  setEntry(img, 3, (100n << 20n) | 6n);
  await assert.rejects(open(img), (e: unknown) => e instanceof VmimgError && e.code === 'CORRUPT_IMAGE' && /VHDX BAT entry 3 start offset 104857600 points after end of file/.test(e.message));
  const image = await open(img, true);
  const lines: string[] = [];
  const r = await image.check!({ leaks: false, errors: false }, (l) => lines.push(l));
  assert.equal(r.corruptions, 1);
  assert.deepEqual(lines, [`VHDX BAT entry 3 start offset 104857600 points after end of file (${img.length}). Image has probably been truncated.`]);
});

function fixCrc(img: Uint8Array, at: number, size: number): void {
  const v = new DataView(img.buffer, img.byteOffset);
  v.setUint32(at + 4, vhdxChecksum(img.subarray(at, at + size), 4), true);
}

test('seeded mutations of headers, region table, metadata and BAT only ever raise VmimgError', async () => {
  const fixed = planned(12n * BigInt(MiB), { subformat: 'fixed', block_state_zero: 'off', block_size: '1M' });
  const dynamic = planned(40n * BigInt(MiB), { block_size: '2M' });
  const seeds = [fixed, dynamic];
  const rng = new Rng(777);
  let accepted = 0;
  const META = 3 * MiB;
  for (let i = 0; i < 300; i++) {
    const img = seeds[i % seeds.length]!.slice();
    const v = new DataView(img.buffer);
    for (let k = 0; k < 1 + rng.below(4); k++) {
      const region = rng.below(5);
      const at = [HEADER2_OFFSET + rng.below(80), REGION_TABLE1_OFFSET + rng.below(80), META + rng.below(200), META + 0x10000 + rng.below(40), BAT + rng.below(160)][region]!;
      const values = [0, 1, 2, 6, 7, 0x100000, 0x7fffffff, 0x80000000, 0xffffffff, rng.next()];
      v.setUint32(at, values[rng.below(values.length)]!, true);
    }
    if (rng.below(2) === 0) {
      fixCrc(img, HEADER1_OFFSET, HEADER_SIZE);
      fixCrc(img, HEADER2_OFFSET, HEADER_SIZE);
      fixCrc(img, REGION_TABLE1_OFFSET, REGION_TABLE_SIZE);
    }
    const r = await runCase(img, rng.below(2) === 0 ? 'vhdx' : undefined);
    assert.equal(r.bug, undefined, `case ${i}: ${r.bug}`);
    if (r.outcome === 'accepted') accepted++;
  }
  assert.ok(accepted > 50, `only ${accepted} mutated images were accepted`);
});
