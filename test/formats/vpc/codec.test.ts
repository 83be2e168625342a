/**
 * vpc unit tests without qemu: footer and dynamic header codecs and checksums, the CHS geometry
 * search (against values observed from qemu-img 7.2), the planner's layouts and option errors,
 * and header reading from memory, including the creator-application size rules.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CreateOptions } from '../../../src/formats/options.js';
import {
  decodeDynamicHeader,
  decodeFooter,
  encodeDynamicHeader,
  encodeFooter,
  footerChecksumValid,
  vhdChecksum,
  vhdTimestamp,
  type VhdFooter,
} from '../../../src/formats/vpc/footer.js';
import { calculateGeometry, chsSectors, MAX_GEOMETRY_SECTORS, roundedImageSize, searchGeometry } from '../../../src/formats/vpc/geometry.js';
import { readVpcFacts, usesChsSize } from '../../../src/formats/vpc/header.js';
import { probeVpc, vpcDriver } from '../../../src/formats/vpc/driver.js';
import { VPC_OPTIONS } from '../../../src/formats/vpc/plan.js';
import { MemoryStorage } from '../../../src/storage/memory.js';
import { VmimgError } from '../../../src/util/errors.js';
import { ctxFor, materialize, seededRandom } from './support.js';

const NOW = Date.UTC(2024, 0, 2, 3, 4, 5);

function plan(size: bigint, options: Record<string, string> = {}) {
  return vpcDriver.planCreate(ctxFor(VPC_OPTIONS, size, options, { now: () => NOW, random: seededRandom(7) }));
}

function sampleFooter(): VhdFooter {
  return {
    cookie: 'conectix',
    features: 2,
    formatVersion: 0x10000,
    dataOffset: 512n,
    timestamp: 848682900,
    creatorApp: 'qemu',
    creatorVersion: 0x50003,
    creatorOs: 'Wi2k',
    originalSize: 1073995776n,
    currentSize: 1073995776n,
    cylinders: 2081,
    heads: 16,
    sectorsPerTrack: 63,
    diskType: 3,
    checksum: 0,
    uuid: Uint8Array.from({ length: 16 }, (_, i) => i * 17),
    savedState: 0,
  };
}

test('footer codec round-trips and its checksum is the complemented byte sum without the field', () => {
  const bytes = encodeFooter(sampleFooter());
  assert.equal(bytes.length, 512);
  assert.equal(Buffer.from(bytes.subarray(0, 8)).toString('latin1'), 'conectix');
  const back = decodeFooter(bytes);
  assert.deepEqual({ ...back, checksum: 0 }, sampleFooter());
  let sum = 0;
  bytes.forEach((b, i) => {
    if (i < 64 || i >= 68) sum += b;
  });
  assert.equal(back.checksum, ~sum >>> 0);
  assert.ok(footerChecksumValid(bytes));
  bytes[100] = 1;
  assert.ok(!footerChecksumValid(bytes));
  // A footer written with a chosen checksum keeps it.
  assert.equal(decodeFooter(encodeFooter({ ...sampleFooter(), checksum: 0x1234 }, true)).checksum, 0x1234);
});

test('the checksum of the footer qemu-img 7.2 wrote for a 1G dynamic disk (reference A.6) is reproduced', () => {
  // Everything but the UUID is in the dump; the UUID's bytes sum into the checksum, so pick
  // the UUID 2b3c91c3-5b3a-437d-935d-f3ad3517dd86 from the same dump.
  const uuid = Uint8Array.from(Buffer.from('2b3c91c35b3a437d935df3ad3517dd86', 'hex'));
  const bytes = encodeFooter({ ...sampleFooter(), uuid });
  assert.equal(decodeFooter(bytes).checksum, 4294962486);
});

test('dynamic header codec round-trips with its 1024-byte checksum', () => {
  const h = {
    cookie: 'cxsparse',
    dataOffset: 0xffff_ffff_ffff_ffffn,
    tableOffset: 1536n,
    headerVersion: 0x10000,
    maxTableEntries: 513,
    blockSize: 2 * 1024 * 1024,
    checksum: 0,
    parentUuid: new Uint8Array(16),
    parentTimestamp: 0,
    parentName: new Uint8Array(512),
    parentLocators: new Uint8Array(192),
  };
  const bytes = encodeDynamicHeader(h);
  assert.equal(bytes.length, 1024);
  const back = decodeDynamicHeader(bytes);
  assert.equal(back.checksum, 4294964340, 'the checksum qemu-img 7.2 wrote (reference A.6)');
  assert.equal(back.checksum, vhdChecksum(bytes, 36));
  assert.deepEqual({ ...back, checksum: 0 }, h);
});

test('VHD timestamps count seconds from 2000-01-01 UTC, modulo 2^32', () => {
  assert.equal(vhdTimestamp(Date.UTC(2000, 0, 1)), 0);
  assert.equal(vhdTimestamp(Date.UTC(2000, 0, 1, 0, 0, 1, 999)), 1);
  assert.equal(vhdTimestamp(Date.UTC(2026, 10, 22, 17, 15, 0)), Math.floor(Date.UTC(2026, 10, 22, 17, 15, 0) / 1000) - 946684800);
  assert.equal(vhdTimestamp(Date.UTC(1999, 11, 31, 23, 59, 59)), 0xffff_ffff);
});

/** CHS geometry and rounded size qemu-img 7.2 wrote, per requested size (observed). */
const OBSERVED: Array<[string, bigint, number, number, number, number]> = [
  ['1', 1n, 34816, 1, 4, 17],
  ['513', 513n, 34816, 1, 4, 17],
  ['1M', 1n << 20n, 1079296, 31, 4, 17],
  ['10M', 10n << 20n, 10514432, 302, 4, 17],
  ['100M', 100n << 20n, 104865792, 1004, 12, 17],
  ['130M', 130n << 20n, 136339456, 979, 16, 17],
  ['136M', 136n << 20n, 142721024, 562, 16, 31],
  ['200M', 200n << 20n, 209764352, 826, 16, 31],
  ['248M', 248n << 20n, 260112384, 504, 16, 63],
  ['1G', 1n << 30n, 1073995776, 2081, 16, 63],
  ['10G', 10n << 30n, 10737893376, 20806, 16, 63],
  ['31G', 31n << 30n, 33286127616, 64496, 16, 63],
  ['33822351872', 33822351872n, 33824440320, 16192, 16, 255],
  ['100G', 100n << 30n, 107374632960, 51401, 16, 255],
  ['127G', 127n << 30n, 136365219840, 65279, 16, 255],
  ['136899993600', 136899993600n, 136899993600, 65535, 16, 255],
  ['200G', 200n << 30n, 214748364800, 65535, 16, 255],
];

test('CHS rounding matches qemu-img 7.2 (1G → 2081/16/63, 100M → 1004/12/17, ...)', () => {
  for (const [label, size, bytes, c, h, s] of OBSERVED) {
    const r = roundedImageSize((size + 511n) / 512n, false);
    assert.ok(r, label);
    assert.deepEqual(r.chs, { cylinders: c, heads: h, sectorsPerTrack: s }, label);
    assert.equal(r.sectors * 512, bytes, label);
  }
});

test('the spec geometry rounds down; the search covers the request', () => {
  for (let sectors = 1; sectors < 3_000_000; sectors += 7919) {
    assert.ok(chsSectors(calculateGeometry(sectors)) <= sectors, `${sectors}`);
    const chs = searchGeometry(sectors);
    assert.ok(chsSectors(chs) >= sectors, `${sectors}`);
    assert.ok(chs.heads <= 16 && chs.sectorsPerTrack <= 255 && chs.cylinders <= 65535);
  }
  assert.deepEqual(searchGeometry(0), { cylinders: 0, heads: 0, sectorsPerTrack: 0 });
  assert.equal(chsSectors(searchGeometry(MAX_GEOMETRY_SECTORS)), MAX_GEOMETRY_SECTORS);
  assert.equal(chsSectors(calculateGeometry(MAX_GEOMETRY_SECTORS * 4)), MAX_GEOMETRY_SECTORS);
});

test('force_size keeps the size and uses the maximum geometry; past 2040 GiB there is no size', () => {
  assert.deepEqual(roundedImageSize(2048n, true), { chs: { cylinders: 65535, heads: 16, sectorsPerTrack: 255 }, sectors: 2048 });
  assert.equal(roundedImageSize(0xff00_0000n, false)?.sectors, 0xff00_0000);
  assert.equal(roundedImageSize(0xff00_0001n, false), undefined);
  assert.equal(roundedImageSize(0xff00_0001n, true), undefined);
});

test('dynamic plan: footer copy, dynamic header, 0xFF BAT padded to a sector, footer', () => {
  const layout = plan(1n << 30n);
  const img = materialize(layout);
  assert.equal(layout.length, 4608);
  assert.deepEqual(layout.summary, { virtualSize: 1073995776n, clusterSize: 2 * 1024 * 1024, subformat: 'dynamic' });
  const footer = decodeFooter(img.subarray(0, 512));
  assert.deepEqual(img.subarray(0, 512), img.subarray(4096, 4608));
  assert.equal(footer.creatorApp, 'qemu');
  assert.equal(footer.creatorOs, 'Wi2k');
  assert.equal(footer.creatorVersion, 0x50003);
  assert.equal(footer.dataOffset, 512n);
  assert.equal(footer.diskType, 3);
  assert.equal(footer.timestamp, vhdTimestamp(NOW));
  assert.equal(footer.currentSize, 1073995776n);
  assert.equal(footer.originalSize, 1073995776n);
  assert.equal(footer.uuid[6]! >> 4, 4, 'version-4 UUID');
  assert.equal(footer.uuid[8]! >> 6, 2, 'RFC 4122 variant');
  assert.ok(footerChecksumValid(img));
  const dyn = decodeDynamicHeader(img.subarray(512, 1536));
  assert.equal(dyn.maxTableEntries, 513);
  assert.equal(dyn.tableOffset, 1536n);
  assert.ok(img.subarray(1536, 4096).every((b) => b === 0xff));
});

test('fixed plan: zeros over the first block (QEMU\'s allocate_first_block), a hole, then the footer; no copy at 0', () => {
  const layout = plan(100n << 20n, { subformat: 'fixed' });
  assert.equal(layout.length, 104865792 + 512);
  assert.equal(layout.writes.length, 2);
  assert.equal(layout.writes[0]!.offset, 0);
  assert.deepEqual(layout.writes[0]!.data, new Uint8Array(4096));
  assert.equal(layout.writes[1]!.offset, 104865792);
  assert.equal(layout.summary.clusterSize, undefined);
  const footer = decodeFooter(layout.writes[1]!.data);
  assert.equal(footer.diskType, 2);
  assert.equal(footer.dataOffset, 0xffff_ffff_ffff_ffffn);
  assert.equal(probeVpc(materialize(layout)), 0, 'a fixed VHD probes as raw');
});

test('force_size keeps the exact (sector-rounded) size and stamps qem2', () => {
  const layout = plan(10n * 1024n * 1024n + 1n, { force_size: 'on' });
  const footer = decodeFooter(layout.writes[0]!.data);
  assert.equal(footer.creatorApp, 'qem2');
  assert.equal(footer.currentSize, 10n * 1024n * 1024n + 512n);
  assert.deepEqual([footer.cylinders, footer.heads, footer.sectorsPerTrack], [65535, 16, 255]);
});

test('an empty dynamic disk has no BAT; an empty fixed disk is refused', () => {
  const layout = plan(0n);
  assert.equal(layout.length, 2048);
  assert.equal(decodeDynamicHeader(materialize(layout).subarray(512)).maxTableEntries, 0);
  assert.throws(() => plan(0n, { subformat: 'fixed' }), (e: unknown) => e instanceof VmimgError && e.code === 'SIZE_OUT_OF_RANGE');
});

test('planning takes time only from ctx.now and randomness only from ctx.random', () => {
  const a = materialize(plan(5n << 20n));
  const b = materialize(plan(5n << 20n));
  assert.deepEqual(a, b);
  const other = materialize(vpcDriver.planCreate(ctxFor(VPC_OPTIONS, 5n << 20n, {}, { now: () => NOW + 1000, random: seededRandom(7) })));
  assert.notDeepEqual(a, other);
});

test('option errors: subformat values, sizes past 2040 GiB', () => {
  for (const subformat of ['foo', 'Fixed', 'DYNAMIC', '']) {
    assert.throws(() => plan(1n << 20n, { subformat }), (e: unknown) => e instanceof VmimgError && e.code === 'INVALID_OPTION' && e.message.includes(`'${subformat}'`));
  }
  const max = 0xff00_0000n * 512n;
  assert.equal(plan(max).summary.virtualSize, max);
  assert.equal(plan(max - 511n, { subformat: 'fixed' }).summary.virtualSize, max);
  for (const opts of [{}, { subformat: 'fixed' }, { force_size: 'on' }] as Array<Record<string, string>>) {
    assert.throws(() => plan(max + 1n, opts), (e: unknown) => e instanceof VmimgError && e.code === 'SIZE_OUT_OF_RANGE' && e.message.includes('too large'));
  }
  const o = new CreateOptions(VPC_OPTIONS);
  assert.throws(() => o.setText('force_size', 'maybe'), (e: unknown) => e instanceof VmimgError && e.code === 'INVALID_OPTION');
  assert.deepEqual(
    vpcDriver.createOptions.map((s) => s.name),
    ['size', 'subformat', 'force_size'],
  );
});

async function facts(img: Uint8Array) {
  return readVpcFacts(new MemoryStorage(img, { name: 'm.vhd' }));
}

function withFooter(img: Uint8Array, change: (f: VhdFooter) => VhdFooter): Uint8Array {
  const out = img.slice();
  for (const at of out.length > 1024 && decodeFooter(out).cookie === 'conectix' ? [0, out.length - 512] : [out.length - 512]) {
    out.set(encodeFooter(change(decodeFooter(out.subarray(at, at + 512)))), at);
  }
  return out;
}

test('readHeader: sizes of planned images, fixed and dynamic', async () => {
  for (const [size, opts] of [
    [1n << 30n, {}],
    [100n << 20n, { subformat: 'fixed' }],
    [12345678n, { force_size: 'on' }],
    [300n << 30n, {}],
  ] as const) {
    const layout = plan(size, opts);
    const f = await facts(materialize(layout));
    assert.equal(f.virtualSize, layout.summary.virtualSize);
    assert.equal(f.fixed, opts.subformat === 'fixed');
  }
});

test('readHeader: the creator application decides between CHS and current_size as in QEMU 7.2', async () => {
  const img = materialize(plan(100n << 20n));
  const chsSize = 104865792n;
  for (const app of ['win ', 'qem2', 'd2v ', 'CTXS', 'tap\0']) {
    assert.ok(!usesChsSize(app));
    const f = await facts(withFooter(img, (x) => ({ ...x, creatorApp: app, currentSize: 100n << 20n })));
    assert.equal(f.virtualSize, 100n << 20n, JSON.stringify(app));
  }
  for (const app of ['vpc ', 'qemu', 'wa\0\0', 'tap ', 'd2v\0', 'xxxx']) {
    assert.ok(usesChsSize(app));
    const f = await facts(withFooter(img, (x) => ({ ...x, creatorApp: app, currentSize: 100n << 20n })));
    assert.equal(f.virtualSize, chsSize, JSON.stringify(app));
  }
  const maxGeometry = await facts(withFooter(img, (x) => ({ ...x, cylinders: 65535, heads: 16, sectorsPerTrack: 255, currentSize: 100n << 20n })));
  assert.equal(maxGeometry.virtualSize, 100n << 20n);
  const unaligned = await facts(withFooter(img, (x) => ({ ...x, creatorApp: 'win ', currentSize: (100n << 20n) + 100n })));
  assert.equal(unaligned.virtualSize, 100n << 20n, 'rounded down to a sector');
});

test('readHeader refuses what vpc_open refuses, with stable codes', async () => {
  const img = materialize(plan(100n << 20n));
  const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
  const cases: Array<[string, Uint8Array, string, string]> = [];
  const badSum = img.slice();
  badSum[100] = 7;
  cases.push(['checksum', badSum, 'CORRUPT_IMAGE', 'Incorrect header checksum']);
  cases.push(['too large', withFooter(img, (x) => ({ ...x, creatorApp: 'win ', currentSize: 3n << 40n })), 'UNSUPPORTED_IMAGE', 'File too large']);
  const setDyn = (at: number, value: number) => {
    const b = img.slice();
    dv(b).setUint32(512 + at, value);
    return b;
  };
  cases.push(['block size 768', setDyn(32, 768), 'CORRUPT_IMAGE', 'Invalid block size 768']);
  cases.push(['block size 256', setDyn(32, 256), 'CORRUPT_IMAGE', 'Invalid block size 256']);
  cases.push(['entries 0x7fffffff', setDyn(28, 0x7fff_ffff), 'UNSUPPORTED_IMAGE', 'Max Table Entries too large (2147483647)']);
  cases.push(['entries 0xffffffff', setDyn(28, 0xffff_ffff), 'UNSUPPORTED_IMAGE', 'Max Table Entries too large (-1)']);
  cases.push(['entries 1', setDyn(28, 1), 'CORRUPT_IMAGE', 'Page table too small']);
  const magic = img.slice();
  magic[512] = 0;
  cases.push(['dynamic magic', magic, 'CORRUPT_IMAGE', 'Invalid header magic']);
  const block = img.slice();
  dv(block).setUint32(1536, 10);
  cases.push(['block past the end', block, 'CORRUPT_IMAGE', 'The image has been truncated.']);
  const short = img.slice(0, 1536 + 100);
  cases.push(['BAT cut short', short, 'CORRUPT_IMAGE', 'The image has been truncated.']);
  const noCookie = img.slice();
  noCookie[0] = 0;
  noCookie[noCookie.length - 512] = 0;
  cases.push(['no cookie', noCookie, 'CORRUPT_IMAGE', 'invalid VPC image']);
  cases.push(['tiny', new Uint8Array(100), 'CORRUPT_IMAGE', 'invalid VPC image']);
  cases.push(['empty', new Uint8Array(0), 'CORRUPT_IMAGE', 'File too small for a VHD header']);
  const fixed = materialize(plan(1n << 20n, { subformat: 'fixed' }));
  cases.push(['fixed footer typed dynamic', withFooter(fixed, (x) => ({ ...x, diskType: 3 })), 'CORRUPT_IMAGE', 'invalid VPC image']);
  const onlyFooter = withFooter(new Uint8Array(512), () => decodeFooter(fixed.subarray(fixed.length - 512)));
  cases.push(['footer alone', onlyFooter, 'CORRUPT_IMAGE', 'Error reading dynamic VHD header']);
  for (const [label, bytes, code, message] of cases) {
    await assert.rejects(facts(bytes), (e: unknown) => e instanceof VmimgError && e.code === code && e.message.endsWith(message), label);
  }
});

test('probe: conectix at offset 0 only', () => {
  const img = materialize(plan(1n << 20n));
  assert.equal(probeVpc(img), 100);
  assert.equal(probeVpc(img.subarray(0, 7)), 0);
  assert.equal(probeVpc(new Uint8Array(512)), 0);
});
