/** qcow2 probe and header validation (readHeader) on planned images and corrupted copies. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { qcow2Driver } from '../../../src/formats/qcow2/driver.js';
import { MemoryStorage } from '../../../src/storage/memory.js';
import { VmimgError } from '../../../src/util/errors.js';
import { applyPoke, POKES } from './pokes.js';
import { ctxFor, materialize } from './support.js';

function planned(size: bigint, options: Record<string, string> = {}, backing?: string): Uint8Array {
  const ctx = ctxFor(size, options);
  if (backing !== undefined) {
    ctx.options.setText('backing_file', backing);
    ctx.options.setText('backing_fmt', 'qcow2');
  }
  return materialize(qcow2Driver.planCreate(ctx));
}

test('probe: magic and version ≥ 2 score 100, anything else 0', () => {
  const img = planned(1n << 20n);
  assert.equal(qcow2Driver.probe(img.subarray(0, 2048)), 100);
  assert.equal(qcow2Driver.probe(img.subarray(0, 8)), 100);
  assert.equal(qcow2Driver.probe(img.subarray(0, 7)), 0);
  const v1 = img.slice(0, 512);
  v1[7] = 1;
  assert.equal(qcow2Driver.probe(v1), 0);
  const v2 = planned(1n << 20n, { compat: '0.10' });
  assert.equal(qcow2Driver.probe(v2.subarray(0, 512)), 100);
  assert.equal(qcow2Driver.probe(new Uint8Array(2048)), 0);
  assert.equal(qcow2Driver.probe(new TextEncoder().encode('QFI\u00fb')), 0);
});

test('readHeader gives the virtual size of planned images of every shape', async () => {
  for (const [size, options] of [
    [0n, {}],
    [1000n, {}],
    [7777777n, { cluster_size: '512', compat: '0.10' }],
    [1n << 40n, { cluster_size: '2M', refcount_bits: '1', extended_l2: 'on' }],
    [5n << 30n, { compression_type: 'zstd', lazy_refcounts: 'on' }],
  ] as const) {
    const h = await qcow2Driver.readHeader(new MemoryStorage(planned(size, options)));
    assert.deepEqual(h, { format: 'qcow2', virtualSize: ((size + 511n) / 512n) * 512n });
  }
});

test('readHeader rejects corrupted headers with QEMU 7.2s message and a stable code', async () => {
  const base = planned(64n << 20n);
  const overlay = planned(64n << 20n, {}, 'base.qcow2');
  for (const poke of POKES) {
    const storage = new MemoryStorage(applyPoke(poke.overlay ? overlay : base, poke), { name: poke.name });
    if (poke.qemu === undefined) {
      assert.deepEqual(await qcow2Driver.readHeader(storage), { format: 'qcow2', virtualSize: poke.virtualSize }, poke.name);
      continue;
    }
    await assert.rejects(
      qcow2Driver.readHeader(storage),
      (e: unknown) => e instanceof VmimgError && e.code === poke.code && e.message.endsWith(poke.qemu!) && e.message.includes(poke.name),
      poke.name,
    );
  }
});

test('readHeader on a file shorter than the header: zero-filled, so not a qcow2 image', async () => {
  const base = planned(1n << 20n);
  await assert.rejects(qcow2Driver.readHeader(new MemoryStorage(base.slice(0, 3))), (e: unknown) => e instanceof VmimgError && e.code === 'CORRUPT_IMAGE');
  const truncated = await qcow2Driver.readHeader(new MemoryStorage(base.slice(0, 0x1000)));
  assert.equal(truncated.virtualSize, 1n << 20n, 'cluster 0 past the end of the file reads as zeros');
});
