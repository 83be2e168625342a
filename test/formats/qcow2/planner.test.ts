/**
 * The qcow2 create planner without I/O: layouts observed from qemu-img 7.2 (reference A.4 and
 * the facts in docs/formats/qcow2.md), refcount consistency of planned images over a wide matrix
 * (including cases too slow to run through qemu-img), option errors and determinism.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CreateOptions } from '../../../src/formats/options.js';
import { QCOW2_OPTIONS, QCOW2_UNSUPPORTED } from '../../../src/formats/qcow2/params.js';
import { qcow2Driver } from '../../../src/formats/qcow2/driver.js';
import { decodeHeader } from '../../../src/formats/qcow2/header.js';
import { VmimgError } from '../../../src/util/errors.js';
import { auditRefcounts, ctxFor, materialize } from './support.js';

const COPIED = 0x8000000000000000n;

function plan(size: bigint | string, options: Record<string, string> = {}) {
  const bytes = typeof size === 'string' ? BigInt(size) : size;
  const layout = qcow2Driver.planCreate(ctxFor(bytes, options));
  const img = materialize(layout);
  return { layout, img, h: decodeHeader(img), v: new DataView(img.buffer) };
}

function refcountRuns(img: Uint8Array): string {
  const { mismatches } = auditRefcounts(img);
  assert.deepEqual(mismatches, [], 'stored refcounts equal the references');
  return 'consistent';
}

const G = 1n << 30n;

test('default 1G: header, refcount table, refcount block, unpadded L1 (reference §1.4)', () => {
  const { layout, img, h, v } = plan(G);
  assert.equal(layout.length, 0x30000 + 16);
  assert.equal(h.version, 3);
  assert.equal(h.l1TableOffset, 0x30000n);
  assert.equal(h.l1Size, 2);
  assert.equal(h.refcountTableOffset, 0x10000n);
  assert.equal(h.refcountTableClusters, 1);
  assert.equal(h.headerLength, 112);
  assert.equal(v.getUint32(0x70), 0x6803f857);
  assert.equal(v.getUint32(0x74), 384);
  assert.equal(v.getUint32(0x1f8), 0);
  assert.equal(v.getBigUint64(0x10000), 0x20000n);
  assert.deepEqual([...img.subarray(0x20000, 0x2000a)], [0, 1, 0, 1, 0, 1, 0, 1, 0, 0]);
  assert.deepEqual(layout.allocate, []);
  assert.deepEqual(layout.summary, { virtualSize: G, clusterSize: 65536 });
  refcountRuns(img);
});

test('512-byte clusters, 1G: L1 at cluster 3, refcount blocks 1 and 2 at clusters 515 and 516', () => {
  const { layout, img, h, v } = plan(G, { cluster_size: '512' });
  assert.equal(h.l1TableOffset, 0x600n);
  assert.equal(h.l1Size, 32768);
  assert.equal(layout.length, 264704);
  assert.deepEqual([0, 1, 2, 3].map((i) => v.getBigUint64(0x200 + 8 * i)), [0x400n, 515n * 512n, 516n * 512n, 0n]);
  refcountRuns(img);
});

test('refcount table growth: 512-byte clusters with 64-bit refcounts, 100G', () => {
  const { layout, img, h } = plan(100n * G, { cluster_size: '512', refcount_bits: '64' });
  assert.equal(layout.length, 26642944, 'length qemu-img 7.2 produces');
  assert.ok(h.refcountTableClusters > 1);
  assert.notEqual(h.refcountTableOffset, 512n, 'the table moved');
  refcountRuns(img);
});

test('size 0: no L1 table; falloc still moves the refcount table (qemu-img does)', () => {
  const off = plan(0n);
  assert.equal(off.layout.length, 3 * 65536);
  assert.equal(off.h.l1TableOffset, 0n);
  assert.equal(off.h.l1Size, 0);
  const falloc = plan(0n, { preallocation: 'falloc' });
  assert.equal(falloc.layout.length, 4 * 65536);
  assert.equal(falloc.h.refcountTableOffset, 0x30000n);
  assert.deepEqual(falloc.layout.allocate, []);
  refcountRuns(falloc.img);
});

test('preallocation=metadata, 1000 bytes: L2 at cluster 4, data at 5, COW fills the cluster', () => {
  const { layout, img, h, v } = plan(1000n, { preallocation: 'metadata' });
  assert.equal(h.size, 1024n, 'size rounded up to 512');
  assert.equal(v.getBigUint64(0x30000), COPIED | 0x40000n);
  assert.equal(v.getBigUint64(0x40000), COPIED | 0x50000n);
  assert.equal(layout.length, 0x60000);
  refcountRuns(img);
  const ext = plan(1000n, { preallocation: 'metadata', extended_l2: 'on' });
  assert.equal(ext.v.getBigUint64(0x40000), COPIED | 0x50000n);
  assert.equal(ext.v.getBigUint64(0x40008), 0n, 'subcluster bitmap stays 0');
  assert.equal(ext.layout.length, 0x50000 + 2048, 'COW only to the end of the 2 KiB subcluster');
});

test('preallocation=falloc, 10M: table moved after the L1, first L2 in the freed cluster 1', () => {
  const { layout, img, h, v } = plan(10n << 20n, { preallocation: 'falloc' });
  assert.equal(h.refcountTableOffset, 0x40000n);
  assert.equal(v.getBigUint64(0x30000), COPIED | 0x10000n);
  for (let i = 0; i < 160; i++) assert.equal(v.getBigUint64(0x10000 + 8 * i), COPIED | BigInt(0x50000 + i * 65536));
  assert.deepEqual(layout.allocate, [{ offset: 0x50000, length: 10 << 20 }]);
  assert.equal(layout.length, 0x50000 + (10 << 20));
  refcountRuns(img);
});

test('compat=0.10: 72-byte header, end marker at 0x48, same cluster layout', () => {
  const { layout, h, v } = plan(10n << 20n, { compat: '0.10' });
  assert.equal(h.version, 2);
  assert.equal(v.getUint32(0x48), 0);
  assert.equal(v.getUint32(0x4c), 0);
  assert.equal(h.l1TableOffset, 0x30000n);
  assert.equal(layout.length, 0x30008);
});

test('features: lazy refcounts, zstd, extended L2 land in the header bits', () => {
  const { h } = plan(G, { lazy_refcounts: 'on', compression_type: 'zstd', extended_l2: 'on', refcount_bits: '8' });
  assert.equal(h.compatibleFeatures, 1n);
  assert.equal(h.incompatibleFeatures, 8n | 16n);
  assert.equal(h.compressionType, 1);
  assert.equal(h.refcountOrder, 3);
  assert.equal(h.l1Size, 4, 'extended entries halve what one L2 table maps');
});

test('backing file: name after the extensions, format extension first', () => {
  const ctx = ctxFor(G);
  ctx.options.setText('backing_file', 'base.qcow2');
  ctx.options.setText('backing_fmt', 'qcow2');
  const img = materialize(qcow2Driver.planCreate(ctx));
  const h = decodeHeader(img);
  assert.equal(h.backingFileOffset, 0x210n);
  assert.equal(new TextDecoder().decode(img.subarray(0x210, 0x210 + h.backingFileSize)), 'base.qcow2');
});

test('2P with 64 KiB clusters: the largest L1 (4 Mi entries) is length only, no zero writes', () => {
  const layout = qcow2Driver.planCreate(ctxFor(2n << 50n));
  assert.equal(layout.length, 0x30000 + 32 * 1024 * 1024);
  assert.ok(layout.writes.every((w) => w.offset < 0x30000), 'the all-zero L1 is not written');
});

test('planned images are refcount-consistent over a wide matrix', () => {
  let n = 0;
  for (const cs of ['512', '2048', '16384', '65536', '2097152']) {
    for (const rb of ['1', '2', '8', '32', '64']) {
      for (const prealloc of ['off', 'metadata', 'falloc']) {
        for (const size of [0n, 1000n, 3n << 20n, 77777777n]) {
          if (prealloc !== 'off' && cs === '512' && size > 4n << 20n) continue;
          const { img } = plan(size, { cluster_size: cs, refcount_bits: rb, preallocation: prealloc });
          refcountRuns(img);
          n++;
        }
      }
    }
  }
  assert.ok(n > 250);
});

test('planning is deterministic', () => {
  const a = qcow2Driver.planCreate(ctxFor(5n << 20n, { preallocation: 'metadata', cluster_size: '4096' }));
  const b = qcow2Driver.planCreate(ctxFor(5n << 20n, { preallocation: 'metadata', cluster_size: '4096' }));
  assert.deepEqual(a, b);
});

test('Formatting line order and defaults are qemu-img 7.2s (reference A.3)', () => {
  const o = new CreateOptions(QCOW2_OPTIONS, QCOW2_UNSUPPORTED);
  for (const [k, v] of Object.entries({ refcount_bits: '8', lazy_refcounts: 'on', compat: '1.1', size: '1073741824', compression_type: 'zstd', preallocation: 'metadata', extended_l2: 'on', cluster_size: '128k' })) {
    o.setText(k, v);
  }
  assert.equal(
    o.formatLine(),
    'cluster_size=131072 extended_l2=on preallocation=metadata compression_type=zstd size=1073741824 compat=1.1 lazy_refcounts=on refcount_bits=8',
  );
  const d = new CreateOptions(QCOW2_OPTIONS, QCOW2_UNSUPPORTED);
  d.setText('size', '1073741824');
  d.setText('backing_file', 't.qcow2');
  d.setText('backing_fmt', 'qcow2');
  assert.equal(d.formatLine(), 'cluster_size=65536 extended_l2=off compression_type=zlib size=1073741824 backing_file=t.qcow2 backing_fmt=qcow2 lazy_refcounts=off refcount_bits=16');
});

test('encryption is refused by name', () => {
  const o = new CreateOptions(QCOW2_OPTIONS, QCOW2_UNSUPPORTED);
  for (const key of ['encryption', 'encrypt.format', 'encrypt.key-secret']) {
    assert.throws(() => o.setText(key, 'x'), (e: unknown) => e instanceof VmimgError && e.code === 'UNSUPPORTED_OPTION' && e.message.includes(key));
  }
  assert.throws(() => o.setText('bogus', '1'), (e: unknown) => e instanceof VmimgError && e.code === 'UNKNOWN_OPTION');
});

const INVALID: Array<[Record<string, string>, string, string]> = [
  [{ cluster_size: '1000' }, 'cluster_size', '1000'],
  [{ cluster_size: '4M' }, 'cluster_size', '4194304'],
  [{ refcount_bits: '3' }, 'refcount_bits', '3'],
  [{ refcount_bits: '128' }, 'refcount_bits', '128'],
  [{ compat: '1.2' }, 'compat', '1.2'],
  [{ compat: '0.10', refcount_bits: '8' }, 'refcount_bits', '8'],
  [{ compat: 'v2', lazy_refcounts: 'on' }, 'lazy_refcounts', 'on'],
  [{ compat: '0.10', compression_type: 'zstd' }, 'compression_type', 'zstd'],
  [{ compat: '0.10', extended_l2: 'on' }, 'extended_l2', 'on'],
  [{ extended_l2: 'on', cluster_size: '8k' }, 'cluster_size', '8192'],
  [{ compression_type: 'lz4' }, 'compression_type', 'lz4'],
  [{ preallocation: 'sparse' }, 'preallocation', 'sparse'],
  [{ preallocation: 'full', backing_file: 'b.img' }, 'preallocation', 'full'],
];

test('option errors are INVALID_OPTION naming key and value', () => {
  for (const [options, key, value] of INVALID) {
    assert.throws(
      () => qcow2Driver.planCreate(ctxFor(G, options)),
      (e: unknown) => e instanceof VmimgError && e.code === 'INVALID_OPTION' && e.details['key'] === key && e.message.includes(value),
      JSON.stringify(options),
    );
  }
});

test('too large for the L1 or refcount table limits: SIZE_OUT_OF_RANGE', () => {
  for (const [size, options] of [
    [4n << 50n, {}],
    [1n << 50n, { cluster_size: '512' }],
    [2n << 50n, { extended_l2: 'on' }],
    [(1n << 63n) - 1n, { cluster_size: '2M' }],
  ] as const) {
    assert.throws(
      () => qcow2Driver.planCreate(ctxFor(size, options)),
      (e: unknown) => e instanceof VmimgError && e.code === 'SIZE_OUT_OF_RANGE' && /too large/.test(e.message),
    );
  }
});

test('backing file names: 1023 bytes fit, 1024 do not; cluster 0 must hold the name', () => {
  const withBacking = (name: string, options: Record<string, string> = {}) => {
    const ctx = ctxFor(1n << 20n, options);
    ctx.options.setText('backing_file', name);
    ctx.options.setText('backing_fmt', 'raw');
    return () => qcow2Driver.planCreate(ctx);
  };
  assert.doesNotThrow(withBacking('n'.repeat(1023)));
  for (const [name, options] of [
    ['n'.repeat(1024), {}],
    ['é'.repeat(512), {}],
    ['n'.repeat(417), { cluster_size: '512', compat: '0.10' }],
  ] as const) {
    assert.throws(withBacking(name, options), (e: unknown) => e instanceof VmimgError && e.code === 'PATH_TOO_LONG');
  }
});

test('preallocation beyond the planner cap is refused before any work, naming the size', () => {
  assert.throws(
    () => qcow2Driver.planCreate(ctxFor(2n << 40n, { preallocation: 'metadata' })),
    (e: unknown) => e instanceof VmimgError && e.code === 'SIZE_OUT_OF_RANGE' && e.message.includes(String(2n << 40n)),
  );
  assert.doesNotThrow(() => qcow2Driver.planCreate(ctxFor(2n << 40n, { preallocation: 'metadata', cluster_size: '2M' })));
});
