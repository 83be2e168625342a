/**
 * vhdx unit tests without qemu: GUIDs (mixed-endian), CRC-32C, the header / region table /
 * metadata / BAT codecs, block-size auto-selection and BAT geometry, the planner's layouts and
 * option handling (qemu-img's rounding, then its errors), and header reading from memory.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crc32c, vhdxChecksum } from '../../../src/formats/vhdx/crc32c.js';
import { probeVhdx, vhdxDriver } from '../../../src/formats/vhdx/driver.js';
import { BAT_REGION_GUID, formatGuid, guidEquals, METADATA_REGION_GUID, parseGuid, randomGuid, ZERO_GUID } from '../../../src/formats/vhdx/guid.js';
import { readVhdxFacts, pickHeader } from '../../../src/formats/vhdx/header.js';
import { autoBlockSize, batGeometry, payloadBatIndex, VHDX_OPTIONS } from '../../../src/formats/vhdx/params.js';
import { layoutFor } from '../../../src/formats/vhdx/plan.js';
import {
  batEntryOffset,
  batEntryState,
  decodeCreator,
  decodeFileParameters,
  decodeHeader,
  decodeMetadataEntry,
  decodeMetadataTableHeader,
  decodeRegionEntry,
  decodeRegionTableHeader,
  decodeU32,
  decodeU64,
  encodeBatEntry,
  encodeCreator,
  encodeHeader,
  encodeRegionTable,
  HEADER1_OFFSET,
  HEADER2_OFFSET,
  HEADER_SIGNATURE,
  REGION_TABLE1_OFFSET,
  REGION_TABLE2_OFFSET,
  type VhdxHeader,
} from '../../../src/formats/vhdx/structs.js';
import type { Layout } from '../../../src/formats/types.js';
import { MemoryStorage } from '../../../src/storage/memory.js';
import { VmimgError } from '../../../src/util/errors.js';
import { ctxFor, materialize, seededRandom } from '../vpc/support.js';

const MiB = 1 << 20;
const GiB = 1n << 30n;
const TiB = 1n << 40n;

function plan(size: bigint, options: Record<string, string> = {}, seed = 3): Layout {
  return vhdxDriver.planCreate(ctxFor(VHDX_OPTIONS, size, options, { random: seededRandom(seed) }));
}

function u64le(bytes: Uint8Array, at: number): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(at, true);
}

test('GUIDs: text form ↔ mixed-endian bytes', () => {
  assert.deepEqual(Buffer.from(BAT_REGION_GUID).toString('hex'), '6677c22d23f600429d64115e9bfd4a08');
  assert.equal(formatGuid(BAT_REGION_GUID), '2dc27766-f623-4200-9d64-115e9bfd4a08');
  assert.equal(formatGuid(parseGuid('8B7CA206-4790-4B9A-B8FE-575F050F886E')), '8b7ca206-4790-4b9a-b8fe-575f050f886e');
  assert.ok(guidEquals(METADATA_REGION_GUID, parseGuid('8b7ca206-4790-4b9a-b8fe-575f050f886e')));
  assert.ok(!guidEquals(METADATA_REGION_GUID, BAT_REGION_GUID));
  assert.throws(() => parseGuid('8b7ca206-4790-4b9a-b8fe-575f050f886'));
  const g = randomGuid(seededRandom(9));
  assert.equal(g[6]! >> 4, 4);
  assert.equal(g[8]! >> 6, 2);
});

test('CRC-32C: the standard check value, and the VHDX checksum zeroes its own field', () => {
  assert.equal(crc32c(new TextEncoder().encode('123456789')), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  const buf = Uint8Array.from({ length: 64 }, (_, i) => i);
  const zeroed = buf.slice();
  zeroed.fill(0, 4, 8);
  assert.equal(vhdxChecksum(buf, 4), crc32c(zeroed));
  assert.equal(buf[4], 4, 'input untouched');
});

test('header codec round-trips with a CRC-32C over its 4 KiB', () => {
  const h: VhdxHeader = {
    signature: HEADER_SIGNATURE,
    checksum: 0,
    sequenceNumber: 4154795791n,
    fileWriteGuid: parseGuid('0d36e426-4456-e347-b95e-d31266aed743'),
    dataWriteGuid: parseGuid('b4d46650-36dc-494a-9811-ee88bcabd605'),
    logGuid: ZERO_GUID,
    logVersion: 0,
    version: 1,
    logLength: MiB,
    logOffset: BigInt(MiB),
  };
  const bytes = encodeHeader(h);
  assert.equal(bytes.length, 4096);
  assert.equal(Buffer.from(bytes.subarray(0, 4)).toString('latin1'), 'head');
  const back = decodeHeader(bytes);
  assert.equal(back.checksum, vhdxChecksum(bytes, 4));
  assert.deepEqual({ ...back, checksum: 0 }, h);
});

test('region table codec: 64 KiB, entries at 16 + 32 i, checksum over the whole table', () => {
  const table = encodeRegionTable([
    { guid: BAT_REGION_GUID, fileOffset: 0x200000n, length: 0x100000, flags: 0 },
    { guid: METADATA_REGION_GUID, fileOffset: 0x300000n, length: 0x100000, flags: 1 },
  ]);
  assert.equal(table.length, 65536);
  const h = decodeRegionTableHeader(table);
  assert.equal(h.entryCount, 2);
  assert.equal(h.checksum, vhdxChecksum(table, 4));
  assert.equal(Buffer.from(table.subarray(0, 4)).toString('latin1'), 'regi');
  assert.deepEqual(decodeRegionEntry(table, 1), { guid: METADATA_REGION_GUID, fileOffset: 0x300000n, length: 0x100000, flags: 1 });
});

test("qemu-img's region table for a 1 GiB image has the checksum the reference dump shows", () => {
  const table = encodeRegionTable([
    { guid: BAT_REGION_GUID, fileOffset: 0x200000n, length: 0x100000, flags: 0 },
    { guid: METADATA_REGION_GUID, fileOffset: 0x300000n, length: 0x100000, flags: 0 },
  ]);
  assert.equal(decodeRegionTableHeader(table).checksum, 0x2c6fce83);
});

test('BAT entries: state in bits 0-2, 1 MiB-aligned offset in bits 20-63', () => {
  const e = encodeBatEntry(6, 0x800000n);
  assert.equal(e, 0x800006n);
  assert.equal(batEntryState(e), 6);
  assert.equal(batEntryOffset(e), 0x800000n);
  assert.equal(encodeBatEntry(2, 0n), 2n);
  assert.equal(batEntryOffset(0x1234_5678_9abc_def7n), 0x1234_5678_9ab0_0000n);
  assert.equal(batEntryState(0x1234_5678_9abc_def7n), 7);
});

test('creator strings are UTF-16LE, cut to 256 code units', () => {
  const bytes = encodeCreator('vmimg v0.1.0');
  assert.equal(bytes.length, 24);
  assert.equal(Buffer.from(bytes).toString('utf16le'), 'vmimg v0.1.0');
  assert.equal(decodeCreator(bytes), 'vmimg v0.1.0');
  assert.equal(encodeCreator('x'.repeat(300)).length, 512);
});

test('block size auto-selection: 8M up to 1 GiB, 16M to 100 GiB, 32M to 32 TiB, then 64M', () => {
  const cases: Array<[bigint, number]> = [
    [0n, 8], [GiB, 8], [GiB + 512n, 16], [2n * GiB, 16], [100n * GiB, 16], [100n * GiB + 512n, 32], [200n * GiB, 32],
    [32n * TiB, 32], [32n * TiB + 512n, 64], [64n * TiB, 64],
  ];
  for (const [size, mib] of cases) assert.equal(autoBlockSize(size), mib * MiB, `${size}`);
});

test('BAT geometry: chunk ratio, interleaved sector bitmap entries, and QEMU\'s empty-disk count', () => {
  const expect: Array<[bigint, number, number, number, number]> = [
    // size, block size, chunk ratio, data blocks, BAT entries
    [GiB, 8 * MiB, 512, 128, 128],
    [4n * TiB, 32 * MiB, 128, 131072, 131072 + 1023],
    [5n * GiB, MiB, 4096, 5120, 5121],
    [4096n * BigInt(MiB), MiB, 4096, 4096, 4096],
    [17n * 256n * BigInt(MiB), 256 * MiB, 16, 17, 18],
    [0n, 8 * MiB, 512, 0, 0xffff_ffff >>> 9],
    [0n, MiB, 4096, 0, 0xffff_ffff >>> 12],
    [1n, 256 * MiB, 16, 1, 1],
  ];
  for (const [size, bs, cr, blocks, entries] of expect) {
    const g = batGeometry(size, bs, 512);
    assert.deepEqual([g.chunkRatio, g.dataBlocks, g.batEntries], [cr, blocks, entries], `${size}/${bs}`);
  }
  const g = batGeometry(5n * GiB, MiB, 512);
  assert.equal(payloadBatIndex(g, 4095), 4095);
  assert.equal(payloadBatIndex(g, 4096), 4097, 'the sector bitmap entry of chunk 0 sits at 4096');
});

test('default dynamic plan for 1 GiB: the offsets and tables qemu-img 7.2 writes', () => {
  const layout = plan(GiB);
  const img = materialize(layout);
  assert.equal(layout.length, 8 * MiB);
  assert.deepEqual(layout.summary, { virtualSize: GiB, clusterSize: 8 * MiB, subformat: 'dynamic' });
  assert.equal(Buffer.from(img.subarray(0, 8)).toString('latin1'), 'vhdxfile');
  assert.equal(decodeCreator(img.subarray(8, 520)), 'vmimg v0.1.0');
  const h1 = decodeHeader(img.subarray(HEADER1_OFFSET));
  const h2 = decodeHeader(img.subarray(HEADER2_OFFSET));
  assert.equal(h2.sequenceNumber, h1.sequenceNumber + 1n);
  assert.ok(h1.sequenceNumber < 1n << 32n);
  assert.deepEqual(h1.fileWriteGuid, h2.fileWriteGuid);
  assert.deepEqual(h1.dataWriteGuid, h2.dataWriteGuid);
  assert.notDeepEqual(h1.fileWriteGuid, h1.dataWriteGuid);
  assert.deepEqual(h1.logGuid, ZERO_GUID);
  assert.deepEqual([h1.version, h1.logVersion, h1.logLength, h1.logOffset], [1, 0, MiB, BigInt(MiB)]);
  assert.equal(pickHeader(img.subarray(HEADER1_OFFSET, HEADER1_OFFSET + 4096), img.subarray(HEADER2_OFFSET, HEADER2_OFFSET + 4096)), 1);
  assert.deepEqual(img.subarray(REGION_TABLE1_OFFSET, REGION_TABLE1_OFFSET + 65536), img.subarray(REGION_TABLE2_OFFSET, REGION_TABLE2_OFFSET + 65536));
  const rt = img.subarray(REGION_TABLE1_OFFSET);
  assert.deepEqual(decodeRegionEntry(rt, 0), { guid: BAT_REGION_GUID, fileOffset: 2n * BigInt(MiB), length: MiB, flags: 0 });
  assert.deepEqual(decodeRegionEntry(rt, 1), { guid: METADATA_REGION_GUID, fileOffset: 3n * BigInt(MiB), length: MiB, flags: 0 });
  for (let i = 0; i < 128; i++) assert.equal(u64le(img, 2 * MiB + i * 8), 2n, `BAT ${i}`);
  assert.ok(img.subarray(2 * MiB + 128 * 8, 3 * MiB).every((b) => b === 0));
  const mt = img.subarray(3 * MiB);
  assert.deepEqual(decodeMetadataTableHeader(mt), { signature: 'metadata', entryCount: 5 });
  const entries = [0, 1, 2, 3, 4].map((i) => decodeMetadataEntry(mt, i));
  assert.deepEqual(
    entries.map((e) => [formatGuid(e.itemId), e.offset, e.length, e.flags]),
    [
      ['caa16737-fa36-4d43-b3b6-33f0aa44e76b', 0x10000, 8, 4],
      ['2fa54224-cd1b-4876-b211-5dbed83bf4b8', 0x10008, 8, 6],
      ['beca12ab-b2e6-4523-93ef-c309e000c746', 0x10010, 16, 6],
      ['8141bf1d-a96f-4709-ba47-f233a8faab5f', 0x10020, 4, 6],
      ['cda348c7-445d-4471-9cc9-e9885251c556', 0x10024, 4, 6],
    ],
  );
  assert.deepEqual(decodeFileParameters(mt.subarray(0x10000)), { blockSize: 8 * MiB, flags: 0 });
  assert.equal(decodeU64(mt.subarray(0x10008)), GiB);
  assert.equal(decodeU32(mt.subarray(0x10020)), 512);
  assert.equal(decodeU32(mt.subarray(0x10024)), 512);
  assert.ok(img.subarray(MiB, 2 * MiB).every((b) => b === 0), 'the log is left zero');
});

test('fixed plans: LeaveBlocksAllocated, ZERO entries by default, FULLY_PRESENT offsets with block_state_zero=off', () => {
  const zero = plan(100n << 20n, { subformat: 'fixed' });
  assert.equal(zero.length, 108 * MiB);
  const img = materialize(zero);
  assert.equal(decodeFileParameters(img.subarray(3 * MiB + 0x10000)).flags, 1);
  for (let i = 0; i < 13; i++) assert.equal(u64le(img, 2 * MiB + i * 8), 2n);
  assert.equal(u64le(img, 2 * MiB + 13 * 8), 0n);

  const full = materialize(plan(100n << 20n, { subformat: 'fixed', block_state_zero: 'off' }));
  for (let i = 0; i < 13; i++) assert.equal(u64le(full, 2 * MiB + i * 8), BigInt(8 * MiB + i * 8 * MiB) | 6n, `entry ${i}`);

  // 17 blocks of 256 MiB with a chunk ratio of 16: entry 16 is the sector bitmap entry.
  const big = plan(17n * 256n * BigInt(MiB), { subformat: 'fixed', block_state_zero: 'off', block_size: '256M' });
  const bat = big.writes.find((w) => w.offset === 2 * MiB)!;
  assert.equal(u64le(bat.data, 15 * 8), BigInt(8 * MiB + 15 * 256 * MiB) | 6n);
  assert.equal(u64le(bat.data, 16 * 8), 0n);
  assert.equal(u64le(bat.data, 17 * 8), BigInt(8 * MiB + 16 * 256 * MiB) | 6n);
  assert.equal(big.length, 8 * MiB + 17 * 256 * MiB);
});

test('a fixed disk with offsets, more blocks than the chunk ratio and a short last block is padded to whole blocks', () => {
  const size = 16n * 256n * BigInt(MiB) + BigInt(MiB);
  const padded = plan(size, { subformat: 'fixed', block_state_zero: 'off', block_size: '256M' });
  assert.equal(padded.length, 8 * MiB + 17 * 256 * MiB);
  assert.equal(padded.summary.virtualSize, size);
  const zeroState = plan(size, { subformat: 'fixed', block_size: '256M' });
  assert.equal(zeroState.length, 8 * MiB + Number(size), 'ZERO entries: no offsets, no padding');
  const few = plan(15n * 256n * BigInt(MiB) + 512n, { subformat: 'fixed', block_state_zero: 'off', block_size: '256M' });
  assert.equal(few.length, 8 * MiB + 15 * 256 * MiB + 512, 'within one chunk: as qemu-img');
});

test('dynamic with block_state_zero=off writes no BAT; large ZERO BATs share their buffers', () => {
  const off = plan(GiB, { block_state_zero: 'off' });
  assert.ok(!off.writes.some((w) => w.offset === 2 * MiB));
  const huge = plan(64n * TiB, { block_size: '1M' });
  const l = layoutFor({ size: 64n * TiB, logSize: MiB, blockSize: MiB, subformat: 'dynamic', blockStateZero: true });
  const batWrites = huge.writes.filter((w) => w.offset >= l.batOffset && w.offset < l.metadataOffset);
  assert.equal(batWrites.reduce((n, w) => n + w.data.length, 0), l.batLength);
  assert.equal(l.batLength, 513 * MiB);
  assert.ok(new Set(batWrites.map((w) => w.data)).size <= 3, 'at most: the shared full write, the last partial one, an empty one');
  let end = 0;
  for (const w of huge.writes) {
    assert.ok(w.offset >= end);
    end = w.offset + w.data.length;
  }
});

test('an empty disk gets the BAT QEMU expects for it', () => {
  const l = layoutFor({ size: 0n, logSize: MiB, blockSize: 8 * MiB, subformat: 'dynamic', blockStateZero: true });
  assert.equal(l.batLength, 64 * MiB);
  assert.equal(l.fileLength, 71 * MiB);
});

test('options: qemu-img rounds log_size and block_size up to 1 MiB and caps block_size, then validates', () => {
  const bs = (o: Record<string, string>, size = 100n << 20n) => plan(size, o).summary.clusterSize;
  assert.equal(bs({ block_size: '1.5M' }), 2 * MiB);
  assert.equal(bs({ block_size: '512k' }), MiB);
  assert.equal(bs({ block_size: '1' }), MiB);
  assert.equal(bs({ block_size: '512M' }), 256 * MiB);
  assert.equal(bs({ block_size: '300M' }), 256 * MiB);
  assert.equal(bs({ block_size: '0' }), 8 * MiB);
  assert.equal(bs({ block_size: '18446744073709551615' }), 8 * MiB, 'rounds past 2^64 to 0: auto');
  const logOf = (o: Record<string, string>) => decodeHeader(materialize(plan(1n << 20n, o)).subarray(HEADER1_OFFSET)).logLength;
  assert.equal(logOf({ log_size: '1' }), MiB);
  assert.equal(logOf({ log_size: '3M' }), 3 * MiB);
  assert.equal(logOf({ log_size: '1.5M' }), 2 * MiB);
  const rejects: Array<[Record<string, string>, bigint, string, string]> = [
    [{ block_size: '3M' }, GiB, 'INVALID_OPTION', 'power of two'],
    [{ block_size: '100M' }, GiB, 'INVALID_OPTION', 'power of two'],
    [{ block_size: '2.5M' }, GiB, 'INVALID_OPTION', 'power of two'],
    [{ log_size: '0' }, GiB, 'INVALID_OPTION', 'multiple of 1 MB'],
    [{ log_size: '18446744073709551615' }, GiB, 'INVALID_OPTION', 'multiple of 1 MB'],
    [{ log_size: '4G' }, GiB, 'INVALID_OPTION', 'smaller than 4 GB'],
    [{ log_size: '4294967295' }, GiB, 'INVALID_OPTION', 'smaller than 4 GB'],
    [{ subformat: 'foo' }, GiB, 'INVALID_OPTION', "'foo'"],
    [{}, 64n * TiB + 1n, 'SIZE_OUT_OF_RANGE', 'max of 64TB'],
    [{ subformat: 'fixed' }, 65n * TiB, 'SIZE_OUT_OF_RANGE', 'max of 64TB'],
  ];
  for (const [o, size, code, text] of rejects) {
    assert.throws(() => plan(size, o), (e: unknown) => e instanceof VmimgError && e.code === code && e.message.includes(text), JSON.stringify(o));
  }
  assert.equal(plan(64n * TiB).summary.virtualSize, 64n * TiB);
  assert.equal(plan(64n * TiB - 511n).summary.virtualSize, 64n * TiB);
  assert.deepEqual(
    vhdxDriver.createOptions.map((s) => [s.name, s.defaultText]),
    [['size', undefined], ['log_size', '1048576'], ['block_size', '0'], ['subformat', undefined], ['block_state_zero', undefined]],
  );
});

test('planning draws randomness only from ctx.random', () => {
  assert.deepEqual(materialize(plan(10n << 20n, {}, 5)), materialize(plan(10n << 20n, {}, 5)));
  assert.notDeepEqual(materialize(plan(10n << 20n, {}, 5)), materialize(plan(10n << 20n, {}, 6)));
});

function flip(b: Uint8Array, at: number): void {
  b[at] = b[at]! ^ 1;
}

async function facts(img: Uint8Array) {
  return readVhdxFacts(new MemoryStorage(img, { name: 'm.vhdx' }));
}

function rewriteHeader(img: Uint8Array, at: number, change: (h: VhdxHeader) => VhdxHeader): void {
  img.set(encodeHeader(change(decodeHeader(img.subarray(at, at + 4096)))), at);
}

test('readHeader: planned images read back with their size, block size and current header', async () => {
  for (const [size, o] of [
    [GiB, {}],
    [100n << 20n, { subformat: 'fixed', block_state_zero: 'off' }],
    [12345n, { block_size: '1M', log_size: '3M' }],
  ] as Array<[bigint, Record<string, string>]>) {
    const layout = plan(size, o);
    const f = await facts(materialize(layout));
    assert.equal(f.virtualSize, layout.summary.virtualSize);
    assert.equal(f.fileParameters.blockSize, layout.summary.clusterSize);
    assert.equal(f.headerIndex, 1);
  }
});

test('readHeader: header choice and the errors vhdx_open gives', async () => {
  const base = materialize(plan(64n << 20n));
  const v = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

  const h1bad = base.slice();
  flip(h1bad, HEADER1_OFFSET + 100);
  assert.equal((await facts(h1bad)).headerIndex, 1);
  const h2bad = base.slice();
  flip(h2bad, HEADER2_OFFSET + 100);
  assert.equal((await facts(h2bad)).headerIndex, 0);
  const same = base.slice();
  same.copyWithin(HEADER2_OFFSET, HEADER1_OFFSET, HEADER1_OFFSET + 4096);
  assert.equal((await facts(same)).headerIndex, 0, 'identical headers with equal sequence numbers');

  const cases: Array<[string, Uint8Array, string, string]> = [];
  const both = h1bad.slice();
  flip(both, HEADER2_OFFSET + 100);
  cases.push(['both headers', both, 'CORRUPT_IMAGE', 'No valid VHDX header found']);
  const equalSeq = base.slice();
  rewriteHeader(equalSeq, HEADER2_OFFSET, (h) => ({ ...h, sequenceNumber: h.sequenceNumber - 1n, logLength: 2 * MiB }));
  cases.push(['equal sequence numbers, different headers', equalSeq, 'CORRUPT_IMAGE', 'No valid VHDX header found']);
  const logVersion = base.slice();
  rewriteHeader(logVersion, HEADER2_OFFSET, (h) => ({ ...h, logVersion: 1 }));
  cases.push(['log version', logVersion, 'CORRUPT_IMAGE', 'unsupported log version 1']);
  const rt = base.slice();
  flip(rt, REGION_TABLE1_OFFSET + 40);
  cases.push(['region table checksum', rt, 'CORRUPT_IMAGE', 'region table checksum mismatch']);
  const overlap = base.slice();
  overlap.set(
    encodeRegionTable([
      { guid: BAT_REGION_GUID, fileOffset: 2n * BigInt(MiB), length: 2 * MiB, flags: 0 },
      { guid: METADATA_REGION_GUID, fileOffset: 3n * BigInt(MiB), length: MiB, flags: 0 },
    ]),
    REGION_TABLE1_OFFSET,
  );
  cases.push(['overlapping regions', overlap, 'CORRUPT_IMAGE', 'overlaps 2097152..4194304']);
  const lss = base.slice();
  v(lss).setUint32(3 * MiB + 0x10020, 4096, true);
  cases.push(['4K logical sectors', lss, 'UNSUPPORTED_IMAGE', 'logical sector size 4096 is not supported (only 512)']);
  const bs = base.slice();
  v(bs).setUint32(3 * MiB + 0x10000, 3 * MiB, true);
  cases.push(['block size 3M', bs, 'CORRUPT_IMAGE', 'block size 3145728 is not a power of two']);
  const parent = base.slice();
  v(parent).setUint32(3 * MiB + 0x10004, 2, true);
  cases.push(['has parent', parent, 'CORRUPT_IMAGE', 'there is no parent locator']);
  const tooBig = base.slice();
  v(tooBig).setBigUint64(3 * MiB + 0x10008, 2n * TiB, true);
  cases.push(['BAT too small', tooBig, 'CORRUPT_IMAGE', 'is too small for 262655 entries']);
  const past = base.slice();
  v(past).setBigUint64(2 * MiB, (100n << 20n) | 6n, true);
  cases.push(['block past EOF', past, 'CORRUPT_IMAGE', 'Image has probably been truncated.']);
  const intoMeta = materialize(plan(64n << 20n, { block_size: '1M' }));
  v(intoMeta).setBigUint64(2 * MiB, (3n << 20n) | 6n, true);
  cases.push(['block over the metadata', intoMeta, 'CORRUPT_IMAGE', 'VHDX region 3145728-4194304 overlaps with region 3145728-4194304']);
  const item = base.slice();
  v(item).setUint32(3 * MiB + 32 + 16, 1 * MiB, true);
  cases.push(['item outside the region', item, 'CORRUPT_IMAGE', 'is not inside the metadata region']);
  const sig = base.slice();
  sig[0] = 0;
  cases.push(['signature', sig, 'CORRUPT_IMAGE', "no 'vhdxfile' signature at offset 0"]);
  for (const [label, bytes, code, message] of cases) {
    await assert.rejects(facts(bytes), (e: unknown) => e instanceof VmimgError && e.code === code && e.message.endsWith(message), label);
  }
});

test('probe: vhdxfile at offset 0', () => {
  assert.equal(probeVhdx(materialize(plan(1n << 20n)).subarray(0, 2048)), 100);
  assert.equal(probeVhdx(new TextEncoder().encode('vhdxfil')), 0);
  assert.equal(probeVhdx(new Uint8Array(2048)), 0);
});
