/**
 * vpc open/map/check without qemu, on images planned by vmimg and edited in memory: extents of
 * allocated and unallocated blocks, merging of host-contiguous blocks, fixed pass-through (file
 * holes and the part past the end as zero+data), request bounds, opening for check, and a
 * seeded mutation run over the footer, dynamic header and BAT (checksums kept valid in half the
 * cases so the mutations reach the tables) where only VmimgErrors may escape.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Extent, Image } from '../../../src/formats/image.js';
import { vpcDriver } from '../../../src/formats/vpc/driver.js';
import { decodeFooter, encodeFooter, FOOTER_SIZE } from '../../../src/formats/vpc/footer.js';
import { VPC_OPTIONS } from '../../../src/formats/vpc/plan.js';
import { MemoryStorage } from '../../../src/storage/memory.js';
import { VmimgError } from '../../../src/util/errors.js';
import { Rng, runCase } from '../../fuzz/harness.js';
import { ctxFor, materialize, seededRandom } from './support.js';

const MiB = 1 << 20;
const BLOCK = 2 * MiB;
const BLOCK_BYTES = 512 + BLOCK;

function planned(size: bigint, options: Record<string, string> = {}): Uint8Array {
  return materialize(vpcDriver.planCreate(ctxFor(VPC_OPTIONS, size, options, { random: seededRandom(5) })));
}

/**
 * A dynamic disk with blocks allocated the way QEMU allocates them (bitmap all ones, then the
 * data, appended where the footer was; the footer moves to the new end). `data[i]` fills block i.
 */
function withBlocks(img: Uint8Array, blocks: Array<[number, number]>): Uint8Array {
  const footer = img.subarray(img.length - FOOTER_SIZE);
  let end = img.length - FOOTER_SIZE;
  const out = new Uint8Array(end + blocks.length * BLOCK_BYTES + FOOTER_SIZE);
  out.set(img.subarray(0, end));
  const v = new DataView(out.buffer);
  for (const [index, fill] of blocks) {
    v.setUint32(1536 + index * 4, end / 512);
    out.fill(0xff, end, end + 512);
    out.fill(fill, end + 512, end + BLOCK_BYTES);
    end += BLOCK_BYTES;
  }
  out.set(footer, end);
  return out;
}

async function open(bytes: Uint8Array, check = false): Promise<Image> {
  return vpcDriver.open!(new MemoryStorage(bytes, { name: 'm.vhd', writable: false }), { filename: 'm.vhd', openReference: () => Promise.reject(new Error('no references')), check });
}

const strip = (es: Extent[]) => es.map(({ storage: _storage, ...rest }) => rest);

test('dynamic: allocated blocks are data after their bitmap, unallocated ones zero; ranges split at blocks', async () => {
  const img = withBlocks(planned(20n * BigInt(MiB)), [
    [1, 0x11],
    [4, 0x44],
  ]);
  const image = await open(img);
  assert.equal(image.virtualSize, 20994048);
  assert.deepEqual(image.info(), { clusterSize: BLOCK });
  const first = 2048; // after the one BAT sector at 1536, where the footer was
  assert.deepEqual(strip(await image.map(0, image.virtualSize)), [
    { kind: 'zero', start: 0, length: BLOCK },
    { kind: 'data', start: BLOCK, length: BLOCK, offset: first + 512 },
    { kind: 'zero', start: 2 * BLOCK, length: 2 * BLOCK },
    { kind: 'data', start: 4 * BLOCK, length: BLOCK, offset: first + BLOCK_BYTES + 512 },
    { kind: 'zero', start: 5 * BLOCK, length: image.virtualSize - 5 * BLOCK },
  ]);
  assert.deepEqual(strip(await image.map(BLOCK + 100, 300)), [{ kind: 'data', start: BLOCK + 100, length: 300, offset: first + 612 }]);
  assert.deepEqual(await image.map(7, 0), []);
  for (const [s, l] of [
    [-1, 1],
    [0, image.virtualSize + 1],
    [0.5, 1],
  ]) {
    await assert.rejects(image.map(s!, l!), (e: unknown) => e instanceof VmimgError && e.code === 'OUT_OF_BOUNDS');
  }
  const check = await image.check!({ leaks: false, errors: false }, () => assert.fail('no problems expected'));
  assert.equal(check.corruptions + check.checkErrors, 0);
});

test('dynamic: blocks whose data is contiguous in the file merge; check calls them overlapping', async () => {
  const img = withBlocks(planned(20n * BigInt(MiB)), [[0, 1]]);
  const v = new DataView(img.buffer);
  const e0 = v.getUint32(1536);
  // Block 1's bitmap at block 0's last sector: its data continues block 0's.
  v.setUint32(1540, e0 + BLOCK / 512);
  const grown = new Uint8Array(img.length + BLOCK);
  grown.set(img.subarray(0, img.length - FOOTER_SIZE));
  grown.set(img.subarray(img.length - FOOTER_SIZE), grown.length - FOOTER_SIZE);
  const image = await open(grown);
  const map = await image.map(0, 2 * BLOCK);
  assert.equal(map.length, 1);
  assert.deepEqual(strip(map), [{ kind: 'data', start: 0, length: 2 * BLOCK, offset: e0 * 512 + 512 }]);
  const lines: string[] = [];
  const r = await image.check!({ leaks: false, errors: false }, (l) => lines.push(l));
  assert.equal(r.corruptions, 1);
  assert.match(lines[0]!, /^VPC BAT entry 1 block \d+-\d+ overlaps with BAT entry 0 block/);
});

test('fixed: guest bytes are file bytes; past the end of the file zero and data, as QEMU reports it', async () => {
  const img = planned(BigInt(MiB), { subformat: 'fixed' });
  const footer = decodeFooter(img.subarray(img.length - FOOTER_SIZE));
  // Claim a larger disk (creator 'win ' is sized by current_size): the tail is past the file.
  const bigger = img.slice();
  bigger.set(encodeFooter({ ...footer, creatorApp: 'win ', currentSize: BigInt(img.length + 4096), originalSize: BigInt(img.length + 4096) }), img.length - FOOTER_SIZE);
  const image = await open(bigger);
  assert.equal(image.virtualSize, img.length + 4096);
  assert.deepEqual(image.info(), {});
  assert.deepEqual(strip(await image.map(0, image.virtualSize)), [
    { kind: 'data', start: 0, length: img.length, offset: 0 },
    { kind: 'zero', start: img.length, length: 4096, offset: img.length, data: true },
  ]);
  const r = await image.check!({ leaks: false, errors: false }, () => assert.fail('nothing to report'));
  assert.equal(r.corruptions, 0);
});

test('a differencing disk (type 4) is read without its parent, like QEMU, and flagged as unsafe', async () => {
  const img = withBlocks(planned(20n * BigInt(MiB)), [[0, 0x11]]);
  const footer = decodeFooter(img.subarray(0, FOOTER_SIZE));
  img.set(encodeFooter({ ...footer, diskType: 4 }), 0);
  const image = await open(img);
  assert.deepEqual(image.safetyIssues!(), ['VHD is a differencing disk (type 4): its parent is not read, so unallocated blocks read as zeros']);
  assert.deepEqual(strip(await image.map(0, 2 * BLOCK)), [
    { kind: 'data', start: 0, length: BLOCK, offset: 2048 + 512 },
    { kind: 'zero', start: BLOCK, length: BLOCK },
  ]);
  assert.deepEqual((await open(withBlocks(planned(BigInt(MiB)), []))).safetyIssues!(), []);
});

test('a block past the end refuses the open, except for check, which reports it', async () => {
  const img = withBlocks(planned(20n * BigInt(MiB)), [[0, 1]]);
  new DataView(img.buffer).setUint32(1536 + 8, img.length / 512 + 10);
  await assert.rejects(open(img), (e: unknown) => e instanceof VmimgError && e.code === 'CORRUPT_IMAGE' && /truncated/.test(e.message));
  const image = await open(img, true);
  const lines: string[] = [];
  const r = await image.check!({ leaks: false, errors: false }, (l) => lines.push(l));
  assert.equal(r.corruptions, 1);
  assert.match(lines[0]!, /^VPC BAT entry 2 block \d+-\d+ points after end of file \(\d+\)\. Image has probably been truncated\.$/);
});

test('seeded mutations of footer, dynamic header and BAT only ever raise VmimgError', async () => {
  const seeds = [withBlocks(planned(20n * BigInt(MiB)), [[1, 7], [3, 9]]), planned(3n * BigInt(MiB), { subformat: 'fixed' })];
  const rng = new Rng(4242);
  let accepted = 0;
  for (let i = 0; i < 600; i++) {
    const seed = seeds[i % seeds.length]!;
    const img = seed.slice();
    const v = new DataView(img.buffer);
    const footerAt = i % 2 === 0 ? 0 : img.length - FOOTER_SIZE;
    for (let k = 0; k < 1 + rng.below(4); k++) {
      const region = rng.below(3);
      const at = region === 0 ? footerAt + rng.below(FOOTER_SIZE - 4) : region === 1 ? 512 + rng.below(1020) : 1536 + rng.below(60);
      const values = [0, 1, 0x200, 0x7fffffff, 0x80000000, 0xffffffff, rng.next(), (img.length / 512) | 0];
      v.setUint32(Math.min(at, img.length - 4), values[rng.below(values.length)]!);
    }
    if (rng.below(2) === 0) {
      // Keep the footer's checksum valid so the open gets further.
      const f = decodeFooter(img.subarray(footerAt, footerAt + FOOTER_SIZE));
      if (f.cookie === 'conectix') img.set(encodeFooter(f), footerAt);
    }
    const r = await runCase(img, rng.below(2) === 0 ? 'vpc' : undefined);
    assert.equal(r.bug, undefined, `case ${i}: ${r.bug}`);
    if (r.outcome === 'accepted') accepted++;
  }
  assert.ok(accepted > 50, `only ${accepted} mutated images were accepted`);
});
