/** qcow2 codecs without I/O: header, extensions, feature table, refcount packing, the file model. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SparseFile } from '../../../src/formats/qcow2/disk.js';
import {
  buildHeaderCluster,
  decodeFeatureTable,
  decodeHeader,
  encodeExtension,
  encodeFeatureTable,
  encodeHeader,
  HeaderNoSpace,
  QEMU_FEATURE_NAMES,
  type Qcow2Header,
} from '../../../src/formats/qcow2/header.js';
import { encodeRefcounts, refcountMetadataSize } from '../../../src/formats/qcow2/refcount.js';

function header(overrides: Partial<Qcow2Header> = {}): Qcow2Header {
  return {
    magic: 0x514649fb,
    version: 3,
    backingFileOffset: 0n,
    backingFileSize: 0,
    clusterBits: 16,
    size: 1n << 30n,
    cryptMethod: 0,
    l1Size: 2,
    l1TableOffset: 0x30000n,
    refcountTableOffset: 0x10000n,
    refcountTableClusters: 1,
    nbSnapshots: 0,
    snapshotsOffset: 0n,
    incompatibleFeatures: 0n,
    compatibleFeatures: 0n,
    autoclearFeatures: 0n,
    refcountOrder: 4,
    headerLength: 112,
    compressionType: 0,
    ...overrides,
  };
}

const u32 = (b: Uint8Array, at: number) => new DataView(b.buffer, b.byteOffset).getUint32(at);

test('v3 header: 112 bytes, round-trips, compression type at byte 104', () => {
  const h = header({ compressionType: 1, incompatibleFeatures: 8n | 16n, compatibleFeatures: 1n, refcountOrder: 6, size: (1n << 62n) + 512n });
  const bytes = encodeHeader(h);
  assert.equal(bytes.length, 112);
  assert.deepEqual([...bytes.subarray(0, 8)], [0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]);
  assert.equal(bytes[104], 1);
  assert.deepEqual([...bytes.subarray(105)], [0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(decodeHeader(bytes), h);
});

test('v2 header: 72 bytes; decoding implies QEMU v3 defaults and ignores bytes past 72', () => {
  const bytes = encodeHeader(header({ version: 2, incompatibleFeatures: 1n, refcountOrder: 6, headerLength: 72 }));
  assert.equal(bytes.length, 72);
  const padded = new Uint8Array(112).fill(0xff);
  padded.set(bytes);
  const d = decodeHeader(padded);
  assert.equal(d.version, 2);
  assert.equal(d.incompatibleFeatures, 0n);
  assert.equal(d.refcountOrder, 4);
  assert.equal(d.headerLength, 72);
  assert.equal(d.compressionType, 0);
});

test('header_length 104 means zlib whatever byte 104 holds', () => {
  const bytes = encodeHeader(header({ headerLength: 104, compressionType: 1 }));
  assert.equal(decodeHeader(bytes).compressionType, 0);
});

test('feature name table: 8 entries of 48 bytes in QEMU 7.2 order, round-trips', () => {
  const table = encodeFeatureTable(QEMU_FEATURE_NAMES);
  assert.equal(table.length, 384);
  assert.deepEqual([...table.subarray(0, 11)], [0, 0, ...new TextEncoder().encode('dirty bit')]);
  assert.deepEqual([...table.subarray(48 * 5, 48 * 5 + 2)], [1, 0]);
  assert.deepEqual([...table.subarray(48 * 7, 48 * 7 + 2)], [2, 1]);
  assert.equal(table[48 * 4 + 2 + 'extended L2 entries'.length], 0);
  assert.deepEqual(decodeFeatureTable(table), QEMU_FEATURE_NAMES);
});

test('extensions are padded to 8 bytes and carry the unpadded length', () => {
  const ext = encodeExtension(0xe2792aca, new TextEncoder().encode('qcow2'));
  assert.equal(ext.length, 16);
  assert.equal(u32(ext, 0), 0xe2792aca);
  assert.equal(u32(ext, 4), 5);
  assert.deepEqual([...ext.subarray(13)], [0, 0, 0]);
  assert.equal(encodeExtension(0, new Uint8Array(0)).length, 8);
});

test('cluster 0 with a backing file matches qemu-img (reference A.4 ov.qcow2)', () => {
  const c = buildHeaderCluster({ header: header(), backingFormat: 'qcow2', backingFile: 't.qcow2', clusterSize: 65536 });
  assert.equal(c.length, 65536);
  const d = decodeHeader(c);
  assert.equal(d.backingFileOffset, 0x210n);
  assert.equal(d.backingFileSize, 7);
  assert.equal(u32(c, 0x70), 0xe2792aca);
  assert.equal(u32(c, 0x74), 5);
  assert.equal(u32(c, 0x80), 0x6803f857);
  assert.equal(u32(c, 0x84), 384);
  assert.equal(u32(c, 0x208), 0);
  assert.equal(new TextDecoder().decode(c.subarray(0x210, 0x217)), 't.qcow2');
  assert.ok(c.subarray(0x217).every((b) => b === 0));
});

test('cluster 0: no feature table with clusters of 4 KiB or less, none for v2', () => {
  const small = buildHeaderCluster({ header: header({ clusterBits: 12 }), clusterSize: 4096 });
  assert.equal(u32(small, 0x70), 0);
  const v2 = buildHeaderCluster({ header: header({ version: 2, headerLength: 72 }), backingFormat: 'raw', backingFile: 'b', clusterSize: 65536 });
  assert.equal(u32(v2, 0x48), 0xe2792aca);
  assert.equal(u32(v2, 0x58), 0);
  assert.equal(decodeHeader(v2).backingFileOffset, 0x60n);
});

test('cluster 0 refuses a backing name it cannot hold (QEMU: ENOSPC)', () => {
  const fits = buildHeaderCluster({ header: header({ version: 2, clusterBits: 9 }), backingFormat: 'raw', backingFile: 'x'.repeat(416), clusterSize: 512 });
  assert.equal(decodeHeader(fits).backingFileSize, 416);
  assert.throws(
    () => buildHeaderCluster({ header: header({ version: 2, clusterBits: 9 }), backingFormat: 'raw', backingFile: 'x'.repeat(417), clusterSize: 512 }),
    HeaderNoSpace,
  );
});

test('refcount packing for every width (sub-byte widths fill from the low bit)', () => {
  const values = new Uint8Array([1, 0, 1, 1, 0, 0, 0, 0, 1]);
  assert.deepEqual([...encodeRefcounts(values, 0, 512).subarray(0, 2)], [0b00001101, 0b1]);
  assert.deepEqual([...encodeRefcounts(values, 1, 512).subarray(0, 3)], [0b01010001, 0, 1]);
  assert.deepEqual([...encodeRefcounts(values, 2, 512).subarray(0, 5)], [0x01, 0x11, 0, 0, 1]);
  assert.deepEqual([...encodeRefcounts(values, 3, 512).subarray(0, 4)], [1, 0, 1, 1]);
  assert.deepEqual([...encodeRefcounts(values, 4, 512).subarray(0, 4)], [0, 1, 0, 0]);
  assert.deepEqual([...encodeRefcounts(values, 5, 512).subarray(0, 8)], [0, 0, 0, 1, 0, 0, 0, 0]);
  assert.deepEqual([...encodeRefcounts(values, 6, 512).subarray(8, 16)], [0, 0, 0, 0, 0, 0, 0, 0]);
  assert.equal(encodeRefcounts(values, 6, 512)[7], 1);
});

test('refcount metadata size is the least fixed point covering data, blocks and table', () => {
  for (const cs of [512, 4096, 65536]) {
    for (const order of [0, 4, 6]) {
      const perBlock = (cs * 8) / 2 ** order;
      const perTable = cs / 8;
      for (const clusters of [1, 3, 63, 64, 65, 1000, 5000, 123457]) {
        const { blocks, table } = refcountMetadataSize(clusters, cs, order, false);
        assert.ok(blocks * perBlock >= clusters + blocks + table, `${cs}/${order}/${clusters}`);
        assert.ok(table * perTable >= blocks);
        assert.ok((blocks - 1) * perBlock < clusters + blocks - 1 + Math.ceil((blocks - 1) / perTable), 'minimal');
        const generous = refcountMetadataSize(clusters, cs, order, true);
        assert.ok(generous.blocks >= blocks && generous.table >= table);
      }
    }
  }
});

test('file model: later writes win, zero runs are dropped, length covers every write and extension', () => {
  const f = new SparseFile();
  f.write(0, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
  f.write(2, new Uint8Array([0, 0, 9]));
  f.extend(100);
  f.write(50, new Uint8Array(10));
  f.write(200, new Uint8Array([0, 0, 7, 0]));
  assert.equal(f.length, 204);
  const w = f.flatten();
  assert.deepEqual(
    w.map((x) => [x.offset, [...x.data]]),
    [
      [0, [1, 2]],
      [4, [9]],
      [5, [6, 7, 8]],
      [202, [7]],
    ],
  );
});

test('file model: runs of zeros shorter than 4 KiB stay inside a write, longer ones split it', () => {
  const f = new SparseFile();
  const data = new Uint8Array(20000);
  data[0] = 1;
  data[100] = 2;
  data[10000] = 3;
  f.write(0, data);
  assert.deepEqual(
    f.flatten().map((x) => [x.offset, x.data.length]),
    [
      [0, 101],
      [10000, 1],
    ],
  );
});
