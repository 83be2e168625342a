/**
 * Seeded mutation of valid vpc and vhdx images through readHeader: interesting values written into
 * the structures readHeader parses (with their checksums recomputed half of the time, so the
 * checks behind the checksum are reached too), plus truncation. The only acceptable outcomes are
 * a virtual size or a VmimgError with an image-level code; no other exception, no hang.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { vhdxChecksum } from '../../../src/formats/vhdx/crc32c.js';
import { vhdxDriver } from '../../../src/formats/vhdx/driver.js';
import { VHDX_OPTIONS } from '../../../src/formats/vhdx/params.js';
import { HEADER1_OFFSET, HEADER2_OFFSET, MiB, REGION_TABLE1_OFFSET } from '../../../src/formats/vhdx/structs.js';
import { vhdChecksum } from '../../../src/formats/vpc/footer.js';
import { vpcDriver } from '../../../src/formats/vpc/driver.js';
import { VPC_OPTIONS } from '../../../src/formats/vpc/plan.js';
import type { FormatDriver } from '../../../src/formats/types.js';
import { MemoryStorage } from '../../../src/storage/memory.js';
import { VmimgError } from '../../../src/util/errors.js';
import { ctxFor, materialize, seededRandom } from '../vpc/support.js';

const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x200, 0x1000, 0x10_0000, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff];
const IMAGE_CODES = new Set(['CORRUPT_IMAGE', 'UNSUPPORTED_IMAGE', 'OUT_OF_BOUNDS']);

interface Target {
  /** Byte ranges worth mutating. */
  ranges: Array<[number, number]>;
  /** Recomputes checksums after a mutation. */
  fix(img: Uint8Array): void;
}

function dv(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function mutate(image: Uint8Array, target: Target, next: () => number): Uint8Array {
  let out = image.slice();
  const edits = 1 + (next() % 4);
  for (let i = 0; i < edits; i++) {
    const [start, end] = target.ranges[next() % target.ranges.length]!;
    const at = start + (next() % Math.max(1, end - start - 8));
    if (next() % 2) out[at] = next() & 0xff;
    else dv(out).setUint32(at, INTERESTING[next() % INTERESTING.length]!, next() % 2 === 0);
  }
  if (next() % 2) target.fix(out);
  if (next() % 8 === 0) out = out.slice(0, next() % out.length);
  return out;
}

async function run(driver: FormatDriver, images: Uint8Array[], target: (img: Uint8Array) => Target, rounds: number, seed: number): Promise<{ opened: number; refused: number }> {
  const rand = seededRandom(seed);
  const next = () => dv(rand(4)).getUint32(0);
  let opened = 0;
  let refused = 0;
  for (let i = 0; i < rounds; i++) {
    const base = images[i % images.length]!;
    const img = mutate(base, target(base), next);
    try {
      const h = await driver.readHeader(new MemoryStorage(img, { name: `case-${i}` }));
      assert.equal(typeof h.virtualSize, 'bigint');
      assert.ok(h.virtualSize >= 0n);
      opened++;
    } catch (e) {
      assert.ok(e instanceof VmimgError && IMAGE_CODES.has(e.code), `case ${i}: ${String(e)}`);
      refused++;
    }
  }
  return { opened, refused };
}

test('vpc readHeader on mutated images: a size or a VmimgError, nothing else', async () => {
  const images = [
    materialize(vpcDriver.planCreate(ctxFor(VPC_OPTIONS, 100n << 20n))),
    materialize(vpcDriver.planCreate(ctxFor(VPC_OPTIONS, 5n << 20n, { force_size: 'on' }))),
    materialize(vpcDriver.planCreate(ctxFor(VPC_OPTIONS, 3n << 20n, { subformat: 'fixed' }))),
  ];
  const target = (img: Uint8Array): Target => {
    const end = img.length;
    const dynamic = Buffer.from(img.subarray(0, 8)).toString('latin1') === 'conectix';
    return {
      ranges: dynamic ? [[0, 512], [512, 1536], [1536, end - 512], [end - 512, end]] : [[end - 512, end]],
      fix(b) {
        for (const at of dynamic ? [0, b.length - 512] : [b.length - 512]) {
          if (at >= 0 && at + 512 <= b.length) dv(b).setUint32(at + 64, vhdChecksum(b.subarray(at, at + 512), 64));
        }
      },
    };
  };
  const r = await run(vpcDriver, images, target, 2000, 11);
  assert.ok(r.opened > 100 && r.refused > 100, JSON.stringify(r));
});

test('vhdx readHeader on mutated images: a size or a VmimgError, nothing else', async () => {
  const images = [
    materialize(vhdxDriver.planCreate(ctxFor(VHDX_OPTIONS, 64n << 20n))),
    materialize(vhdxDriver.planCreate(ctxFor(VHDX_OPTIONS, 3n << 20n, { subformat: 'fixed', block_state_zero: 'off', block_size: '1M' }))),
  ];
  const meta = 3 * MiB;
  const target = (): Target => ({
    ranges: [
      [0, 16],
      [HEADER1_OFFSET, HEADER1_OFFSET + 80],
      [HEADER2_OFFSET, HEADER2_OFFSET + 80],
      [REGION_TABLE1_OFFSET, REGION_TABLE1_OFFSET + 80],
      [2 * MiB, 2 * MiB + 64],
      [meta, meta + 200],
      [meta + 0x10000, meta + 0x10028],
    ],
    fix(b) {
      for (const [at, size] of [[HEADER1_OFFSET, 4096], [HEADER2_OFFSET, 4096], [REGION_TABLE1_OFFSET, 65536]] as const) {
        if (at + size <= b.length) dv(b).setUint32(at + 4, vhdxChecksum(b.subarray(at, at + size), 4), true);
      }
    },
  });
  const r = await run(vhdxDriver, images, target, 600, 12);
  assert.ok(r.opened > 20 && r.refused > 20, JSON.stringify(r));
});
