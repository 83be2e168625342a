/**
 * Unit tests of the qcow2 entry decoding (src/formats/qcow2/l2.ts) against the spec's bit
 * layouts: cluster and subcluster classification, subcluster runs, compressed descriptors at
 * every cluster size, and the refcount packing of every width.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clusterType, compressedRef, entryOffset, l1Reserved, l2Reserved, subclusterRun, subclusterType, type Word } from '../../../src/formats/qcow2/l2.js';
import { getRefcount, setRefcount } from '../../../src/formats/qcow2/reftable.js';

function word(v: bigint): Word {
  return { hi: Number(v >> 32n), lo: Number(v & 0xffffffffn) };
}

test('cluster types: compressed bit wins, zero bit only without extended L2, offset 0 with COPIED in a data file', () => {
  const copied = 1n << 63n;
  assert.equal(clusterType(word(0n), false, false), 'unallocated');
  assert.equal(clusterType(word(copied | 0x50000n), false, false), 'normal');
  assert.equal(clusterType(word(0x1n), false, false), 'zero-plain');
  assert.equal(clusterType(word(0x50001n), false, false), 'zero-alloc');
  assert.equal(clusterType(word(0x50001n), true, false), 'normal');
  assert.equal(clusterType(word(0x1n), true, false), 'unallocated');
  assert.equal(clusterType(word((1n << 62n) | 0x1n), false, false), 'compressed');
  assert.equal(clusterType(word(copied), false, true), 'normal');
  assert.equal(clusterType(word(copied), false, false), 'unallocated');
  assert.equal(entryOffset(word(copied | 0x001b_cdef_1234_5600n | 0x1ffn)), 0x1b_cdef_1234_5600);
  assert.equal(l1Reserved(word(0x100n)), true);
  assert.equal(l1Reserved(word(copied | 0x00ff_ffff_ffff_fe00n)), false);
  assert.equal(l2Reserved(word(0x1n)), false);
  assert.equal(l2Reserved(word(0x2n)), true);
  assert.equal(l2Reserved(word(1n << 56n)), true);
});

test('subcluster types and runs follow the allocation and zero bitmaps', () => {
  // Subclusters 0-3 allocated, 4-7 zero, 8.. unallocated, in an allocated cluster.
  const bitmap = { alloc: 0x0000000f, zero: 0x000000f0 };
  assert.equal(subclusterType('normal', bitmap, true, 0), 'normal');
  assert.equal(subclusterType('normal', bitmap, true, 5), 'zero-alloc');
  assert.equal(subclusterType('normal', bitmap, true, 9), 'unallocated-alloc');
  assert.deepEqual(subclusterRun('normal', bitmap, true, 1, 32), { type: 'normal', count: 3 });
  assert.deepEqual(subclusterRun('normal', bitmap, true, 4, 32), { type: 'zero-alloc', count: 4 });
  assert.deepEqual(subclusterRun('normal', bitmap, true, 8, 32), { type: 'unallocated-alloc', count: 24 });
  // All 32 allocated: one run to the end of the cluster (bit 31 must not turn negative).
  assert.deepEqual(subclusterRun('normal', { alloc: 0xffffffff, zero: 0 }, true, 0, 32), { type: 'normal', count: 32 });
  assert.deepEqual(subclusterRun('normal', { alloc: 0x80000000, zero: 0 }, true, 30, 32), { type: 'unallocated-alloc', count: 1 });
  assert.deepEqual(subclusterRun('normal', { alloc: 0x80000000, zero: 0 }, true, 31, 32), { type: 'normal', count: 1 });
  // Unallocated cluster: zero bits make plain zero subclusters, any allocation bit is invalid.
  assert.deepEqual(subclusterRun('unallocated', { alloc: 0, zero: 0xffff0000 }, true, 16, 32), { type: 'zero-plain', count: 16 });
  assert.deepEqual(subclusterRun('unallocated', { alloc: 0, zero: 0xffff0000 }, true, 3, 32), { type: 'unallocated-plain', count: 13 });
  assert.equal(subclusterRun('unallocated', { alloc: 1, zero: 0 }, true, 5, 32).type, 'invalid');
  assert.equal(subclusterRun('normal', { alloc: 3, zero: 2 }, true, 0, 32).type, 'invalid');
  // Without extended L2 the cluster is one unit.
  assert.deepEqual(subclusterRun('zero-alloc', { alloc: 0, zero: 0 }, false, 0, 1), { type: 'zero-alloc', count: 1 });
  assert.deepEqual(subclusterRun('unallocated', { alloc: 0, zero: 0 }, false, 0, 1), { type: 'unallocated-plain', count: 1 });
});

test('compressed descriptors split at bit 62 - (cluster_bits - 8) for every cluster size', () => {
  for (let bits = 9; bits <= 21; bits++) {
    const x = 62n - BigInt(bits - 8);
    const offset = 0x1234_5678_9an & ((1n << x) - 1n);
    const sectors = (1n << BigInt(bits - 8)) - 1n; // the largest count: 2^(bits-8) sectors
    const w = word((1n << 62n) | (sectors << x) | offset);
    const ref = compressedRef(w, bits);
    assert.equal(ref.offset, Number(offset), `bits ${bits}`);
    assert.equal(ref.length, Number(sectors + 1n) * 512 - (Number(offset) % 512), `bits ${bits}`);
  }
  // A descriptor whose offset uses the top offset bits (above 2^32).
  const w = word((1n << 62n) | (3n << 54n) | 0x3_0000_0100n);
  assert.deepEqual(compressedRef(w, 16), { offset: 0x3_0000_0100, length: 4 * 512 - 0x100 });
});

test('refcount packing: sub-byte widths from the low bits, wider ones big-endian', () => {
  for (const order of [0, 1, 2, 3, 4, 5, 6]) {
    const bits = 2 ** order;
    const block = new Uint8Array(64);
    const max = bits >= 53 ? 2 ** 40 : 2 ** bits - 1;
    setRefcount(block, order, 3, max);
    setRefcount(block, order, 4, 1);
    assert.equal(getRefcount(block, order, 3), max, `order ${order}`);
    assert.equal(getRefcount(block, order, 4), 1);
    assert.equal(getRefcount(block, order, 2), 0);
    setRefcount(block, order, 3, 0);
    assert.equal(getRefcount(block, order, 3), 0);
    assert.equal(getRefcount(block, order, 4), 1);
  }
  const b = new Uint8Array(2);
  setRefcount(b, 0, 1, 1); // bit 1 of byte 0
  setRefcount(b, 2, 1, 0xa); // high nibble of byte 0
  assert.deepEqual([...b], [0xa2, 0]);
  const w = new Uint8Array(4);
  setRefcount(w, 4, 1, 0x1234);
  assert.deepEqual([...w], [0, 0, 0x12, 0x34]);
});
