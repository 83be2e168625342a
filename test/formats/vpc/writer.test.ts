/**
 * The vpc writer on memory storage, without oracles: sector bitmaps mark exactly the sectors
 * written (a partial last sector included, most significant bit first), writes spanning a block
 * boundary allocate both blocks in order, the image reads back through vmimg's own reader, and
 * the ascending-order contract is enforced. (qemu-img judges the writer in
 * test/convert/vpc-target.test.ts.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChainReader } from '../../../src/chain/read.js';
import type { OpenOptions } from '../../../src/formats/image.js';
import { openVpc } from '../../../src/formats/vpc/image.js';
import { VPC_OPTIONS } from '../../../src/formats/vpc/plan.js';
import { createVpcWriter, dynamicFileLength } from '../../../src/formats/vpc/writer.js';
import { MemoryStorage } from '../../../src/storage/memory.js';
import { VmimgError } from '../../../src/util/errors.js';
import { ctxFor } from './support.js';

const MiB = 1 << 20;

test('dynamic writer: bitmaps, block order, BAT and read-back', async () => {
  const storage = new MemoryStorage();
  // 6 MiB rounds up to 6301696 bytes (3 blocks + 10 KiB): 4 BAT entries.
  const w = await createVpcWriter(storage, ctxFor(VPC_OPTIONS, BigInt(6 * MiB)), false);
  assert.equal(w.virtualSize, 6301696);
  const a = new Uint8Array(1024).fill(0xa1);
  const b = new Uint8Array(4096).fill(0xb2);
  await w.write(512, a); // block 0, sectors 1-2
  await w.write(4 * MiB - 2048, b); // block 1 sectors 4092-4095, block 2 sectors 0-3
  await w.writeZeroes(4 * MiB + 2048, 4096);
  await w.write(6 * MiB + 512, new Uint8Array(100).fill(0xc3)); // block 3, a partial sector
  await w.finish();
  const file = storage.contents();
  const v = new DataView(file.buffer);
  const bat = [0, 1, 2, 3].map((i) => v.getUint32(1536 + 4 * i));
  const first = 2048 / 512;
  const step = (512 + 2 * MiB) / 512;
  assert.deepEqual(bat, [first, first + step, first + 2 * step, first + 3 * step]);
  assert.equal(file.length, dynamicFileLength(4, 4));
  const bitmap = (i: number): Uint8Array => file.subarray(bat[i]! * 512, bat[i]! * 512 + 512);
  assert.deepEqual([...bitmap(0).subarray(0, 2)], [0x60, 0]);
  assert.equal(bitmap(1)[511], 0x0f);
  assert.equal(bitmap(1).subarray(0, 511).every((x) => x === 0), true);
  assert.equal(bitmap(2)[0], 0xf0);
  assert.equal(bitmap(3)[0], 0x40);
  assert.deepEqual(file.subarray(0, 512), file.subarray(file.length - 512));

  const image = await openVpc(new MemoryStorage(file, { writable: false }), { filename: 'mem.vhd' } as OpenOptions);
  const got = await new ChainReader([image]).read(0, w.virtualSize);
  const want = new Uint8Array(w.virtualSize);
  want.set(a, 512);
  want.set(b, 4 * MiB - 2048);
  want.fill(0xc3, 6 * MiB + 512, 6 * MiB + 612);
  assert.ok(Buffer.from(got).equals(Buffer.from(want)));
});

test('dynamic writer: writes must ascend; compression is refused', async () => {
  const w = await createVpcWriter(new MemoryStorage(), ctxFor(VPC_OPTIONS, BigInt(8 * MiB)), false);
  await w.write(4 * MiB, new Uint8Array(512).fill(1));
  await assert.rejects(w.write(0, new Uint8Array(512).fill(1)), (e: unknown) => e instanceof VmimgError && e.code === 'INTERNAL');
  await assert.rejects(w.write(w.virtualSize - 256, new Uint8Array(512)), (e: unknown) => e instanceof VmimgError && e.code === 'INTERNAL');
  await assert.rejects(createVpcWriter(new MemoryStorage(), ctxFor(VPC_OPTIONS, BigInt(MiB)), true), (e: unknown) => e instanceof VmimgError && e.code === 'UNSUPPORTED_OPTION');
});

test('fixed writer: data at its offsets, the footer at the rounded size', async () => {
  const storage = new MemoryStorage();
  const w = await createVpcWriter(storage, ctxFor(VPC_OPTIONS, BigInt(MiB), { subformat: 'fixed' }), false);
  assert.equal(w.virtualSize, 1079296);
  await w.write(4096, new Uint8Array(512).fill(7));
  await w.finish();
  const file = storage.contents();
  assert.equal(file.length, 1079296 + 512);
  assert.equal(file[4096], 7);
  assert.equal(new TextDecoder().decode(file.subarray(1079296, 1079296 + 8)), 'conectix');
});
