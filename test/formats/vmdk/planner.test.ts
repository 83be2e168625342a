/**
 * The vmdk header codec, probe and create planner without I/O: header values and layouts
 * observed from qemu-img 7.2 (reference A.5 and docs/formats/vmdk.md), geometry, option
 * validation order and codes, and the use of ctx.random as the only source of the CID.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { vmdkDriver } from '../../../src/formats/vmdk/driver.js';
import { decodeSparseHeader, encodeSparseHeader } from '../../../src/formats/vmdk/header.js';
import { MAX_CREATE_BYTES } from '../../../src/formats/vmdk/params.js';
import { geometryCylinders, sparseGeometry } from '../../../src/formats/vmdk/plan.js';
import { probeVmdk } from '../../../src/formats/vmdk/probe.js';
import { VmimgError } from '../../../src/util/errors.js';
import { ctxFor, descriptorText, materialize } from './support.js';

const G = 1n << 30n;

function plan(size: bigint, options: Record<string, string> = {}, extra: Parameters<typeof ctxFor>[2] = {}) {
  const layout = vmdkDriver.planCreate(ctxFor(size, options, extra));
  const img = materialize(layout);
  return { layout, img, h: decodeSparseHeader(img) };
}

test('1G monolithicSparse: header of reference A.5 (t.vmdk), grain directories, 384-sector file', () => {
  const { layout, img, h } = plan(G, {}, { filename: 'some/dir/t.vmdk' });
  assert.deepEqual(
    { ...h, checkBytes: [...h.checkBytes] },
    {
      version: 1,
      flags: 3,
      capacity: 2097152n,
      grainSize: 128n,
      descriptorOffset: 1n,
      descriptorSize: 20n,
      numGTEsPerGT: 512,
      rgdOffset: 21n,
      gdOffset: 150n,
      overhead: 384n,
      uncleanShutdown: 0,
      checkBytes: [0x0a, 0x20, 0x0d, 0x0a],
      compressAlgorithm: 0,
    },
  );
  assert.equal(Buffer.from(img.subarray(0, 4)).toString('latin1'), 'KDMV');
  assert.equal(layout.length, 196608);
  const v = new DataView(img.buffer);
  const rgd = Array.from({ length: 32 }, (_, i) => v.getUint32(21 * 512 + i * 4, true));
  const gd = Array.from({ length: 32 }, (_, i) => v.getUint32(150 * 512 + i * 4, true));
  assert.deepEqual(rgd.slice(0, 4), [22, 26, 30, 34]);
  assert.equal(rgd[31], 146);
  assert.deepEqual(gd.slice(0, 4), [151, 155, 159, 163]);
  assert.equal(gd[31], 275);
  assert.equal(v.getUint32(21 * 512 + 32 * 4, true), 0, 'padding after the last entry');
  assert.match(descriptorText(img), /\nRW 2097152 SPARSE "t.vmdk"\n/, 'the basename, not the path');
  assert.deepEqual(layout.summary, { virtualSize: G, clusterSize: 65536, subformat: 'monolithicSparse' });
  assert.deepEqual(layout.allocate, []);
});

test('streamOptimized and zeroed_grain: versions and flags as qemu-img writes them', () => {
  const so = plan(G, { subformat: 'streamOptimized' }).h;
  assert.deepEqual([so.version, so.flags, so.compressAlgorithm, so.gdOffset], [3, 0x30003, 1, 150n], 'so.vmdk of reference A.5');
  const zg = plan(G, { zeroed_grain: 'on' }).h;
  assert.deepEqual([zg.version, zg.flags, zg.compressAlgorithm], [2, 7, 0]);
  const both = plan(1n << 20n, { zeroed_grain: 'on', subformat: 'streamOptimized' }).h;
  assert.deepEqual([both.version, both.flags, both.compressAlgorithm, both.rgdOffset, both.gdOffset, both.overhead], [3, 0x30007, 1, 21n, 26n, 128n]);
  assert.match(descriptorText(plan(G, { subformat: 'streamOptimized' }).img), /createType="streamOptimized"/);
});

test('geometry: grain tables, directory sectors and the rounded overhead at their boundaries', () => {
  const g = (bytes: bigint) => {
    const x = sparseGeometry(bytes);
    return [x.grains, x.gtCount, x.gdSectors, x.rgdOffset, x.gdOffset, x.grainOffset];
  };
  assert.deepEqual(g(512n), [1, 1, 1, 21, 26, 128]);
  assert.deepEqual(g(32n << 20n), [512, 1, 1, 21, 26, 128]);
  assert.deepEqual(g((32n << 20n) + 512n), [513, 2, 1, 21, 30, 128]);
  assert.deepEqual(g(4n * G), [65536, 128, 1, 21, 534, 1152]);
  assert.deepEqual(g(4n * G + 512n), [65537, 129, 2, 21, 539, 1152]);
  // Observed: 2T → 269025280-byte file; the largest size vmimg creates → the header qemu-img wrote.
  assert.equal(BigInt(sparseGeometry(2048n * G).grainOffset) * 512n, 269025280n);
  const max = sparseGeometry(MAX_CREATE_BYTES);
  assert.deepEqual([max.capacity, max.gdOffset, max.grainOffset], [549755748352n, 33619985, 67240064]);
  assert.equal(MAX_CREATE_BYTES, 281474943156224n);
});

test('cylinders = size / (63 × heads × 512), heads 16 for ide and 255 for the others', () => {
  assert.equal(geometryCylinders(G, 16), 2080n);
  assert.equal(geometryCylinders(10n << 20n, 255), 1n);
  assert.equal(geometryCylinders(1024n, 255), 0n);
  const text = (adapter: string) => descriptorText(plan(10n << 20n, { adapter_type: adapter }).img);
  assert.match(text('ide'), /cylinders = "20"\nddb.geometry.heads = "16"\n[^]*adapterType = "ide"/);
  for (const a of ['lsilogic', 'buslogic', 'legacyESX']) assert.match(text(a), new RegExp(`cylinders = "1"\nddb.geometry.heads = "255"\n[^]*adapterType = "${a}"`));
});

test('sizes round up to whole sectors in the header, the extent line and the geometry', () => {
  const { h, img, layout } = plan(1000n, { adapter_type: 'buslogic' });
  assert.equal(h.capacity, 2n);
  assert.match(descriptorText(img), /RW 2 SPARSE/);
  assert.match(descriptorText(img), /cylinders = "0"/);
  assert.equal(layout.summary.virtualSize, 1024n);
});

test('hwversion, compat6 and toolsversion land in the DDB as qemu-img resolves them', () => {
  const ddb = (o: Record<string, string>) => {
    const t = descriptorText(plan(G, o).img);
    return [/virtualHWVersion = "(.*)"/.exec(t)![1], /toolsVersion = "(.*)"/.exec(t)![1]];
  };
  assert.deepEqual(ddb({}), ['4', '2147483647']);
  assert.deepEqual(ddb({ compat6: 'on' }), ['6', '2147483647']);
  assert.deepEqual(ddb({ compat6: 'on', hwversion: 'undefined' }), ['6', '2147483647']);
  assert.deepEqual(ddb({ hwversion: '7', toolsversion: '9' }), ['7', '9']);
  assert.deepEqual(ddb({ hwversion: '', toolsversion: '' }), ['', '']);
  assert.deepEqual(ddb({ hwversion: 'a"b', toolsversion: 'x y' }), ['a"b', 'x y']);
});

test('the CID comes from ctx.random only; a backing parent gives parentCID and the hint', () => {
  const a = plan(G, {}, { cid: 0x0000beef });
  assert.match(descriptorText(a.img), /\nCID=beef\nparentCID=ffffffff\n/);
  const again = plan(G, {}, { cid: 0x0000beef });
  assert.deepEqual(again.img, a.img, 'same inputs, same bytes');
  const child = plan(G, { backing_file: '../p/base.vmdk', backing_fmt: 'vmdk' }, { cid: 1, backing: { format: 'vmdk', virtualSize: G, vmdkCid: 0x580b9ec7 } });
  assert.match(descriptorText(child.img), /\nCID=1\nparentCID=580b9ec7\ncreateType="monolithicSparse"\nparentFileNameHint="..\/p\/base.vmdk"\n# Extent description\n/);
});

function rejects(fn: () => unknown, code: string, mentions: string): void {
  assert.throws(fn, (e: unknown) => e instanceof VmimgError && e.code === code && e.message.includes(mentions), `${code} ${mentions}`);
}

test('option errors, in qemu-img order, with stable codes', () => {
  const p = (o: Record<string, string>, size = G, extra: Parameters<typeof ctxFor>[2] = {}) => () => vmdkDriver.planCreate(ctxFor(size, o, extra));
  rejects(p({ adapter_type: 'IDE' }), 'INVALID_OPTION', "'IDE'");
  rejects(p({ adapter_type: '' }), 'INVALID_OPTION', "''");
  rejects(p({ subformat: 'monolithicflat' }), 'INVALID_OPTION', 'monolithicflat');
  rejects(p({ subformat: 'foo', adapter_type: 'bar' }), 'INVALID_OPTION', "'bar'");
  rejects(p({ backing_fmt: 'raw', subformat: 'foo' }), 'BACKING_FORMAT_UNSUPPORTED', 'must be a vmdk');
  rejects(p({ compat6: 'on', hwversion: '7' }), 'INVALID_OPTION', 'compat6 cannot be enabled with hwversion set');
  rejects(p({ compat6: 'on', hwversion: '7', subformat: 'monolithicFlat' }), 'INVALID_OPTION', 'compat6');
  for (const s of ['monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat']) rejects(p({ subformat: s }), 'UNSUPPORTED_OPTION', `'${s}' is not supported`);
  rejects(p({}, 0n), 'SIZE_OUT_OF_RANGE', 'size 0');
  rejects(p({}, MAX_CREATE_BYTES + 1n), 'SIZE_OUT_OF_RANGE', 'too large');
  rejects(p({}, (1n << 63n) - 1n), 'SIZE_OUT_OF_RANGE', 'too large');
  rejects(p({ toolsversion: 't'.repeat(11000) }), 'INVALID_OPTION', 'descriptor would be');
  rejects(p({ backing_file: 'b.raw' }, G, { backing: { format: 'raw', virtualSize: G } }), 'BACKING_FORMAT_UNSUPPORTED', 'Invalid backing file format: raw');
  rejects(p({ backing_file: 'b.vmdk' }, G, { backing: { format: 'vmdk', virtualSize: G } }), 'BACKING_UNPARSABLE', 'parent CID');
  rejects(p({ backing_file: 'b.vmdk' }), 'INTERNAL', 'needsBackingHeader');
  const parent = { backing: { format: 'vmdk' as const, virtualSize: G, vmdkCid: 5 } };
  rejects(p({ backing_file: 'a"b.vmdk' }, G, parent), 'INVALID_OPTION', '"');
  rejects(p({ backing_file: 'n'.repeat(4075) }, G, parent), 'PATH_TOO_LONG', '4075');
  assert.ok(vmdkDriver.planCreate(ctxFor(G, { backing_file: 'n'.repeat(4074) }, parent)).length > 0);
  assert.ok(vmdkDriver.planCreate(ctxFor(MAX_CREATE_BYTES - 511n, {})).length > 0, 'rounds up to the largest size');
  assert.ok(vmdkDriver.planCreate(ctxFor(G, { toolsversion: 't'.repeat(10240 - 340 + 10) })).length > 0, 'descriptor of exactly 10240 bytes');
  rejects(p({ toolsversion: 't'.repeat(10240 - 340 + 11) }), 'INVALID_OPTION', '10241 bytes');
});

test('probe: KDMV and COWD magics, text descriptors as vmdk_probe reads them', () => {
  const b = (s: string) => new Uint8Array(Buffer.from(s, 'latin1'));
  assert.equal(probeVmdk(b('KDMV')), 100);
  assert.equal(probeVmdk(b('COWD\0\0\0\0')), 100);
  assert.equal(probeVmdk(b('KDM')), 0);
  assert.equal(probeVmdk(b('# Disk DescriptorFile\nversion=1\nCID=1\n')), 100);
  assert.equal(probeVmdk(b('# a\r\n#b\n   \r\n \nversion=3\r\n')), 100);
  assert.equal(probeVmdk(b('version=2\n')), 100);
  assert.equal(probeVmdk(b('version=4\n')), 0);
  assert.equal(probeVmdk(b('\nversion=1\n')), 0, 'an empty line before version= is not allowed');
  assert.equal(probeVmdk(b('  x\nversion=1\n')), 0);
  assert.equal(probeVmdk(b('# comment\nversion=1')), 0, 'the version line must end within the bytes');
  assert.equal(probeVmdk(b('#' + 'x'.repeat(600) + '\nversion=1\n').subarray(0, 512)), 0, 'QEMU sees 512 bytes');
  assert.equal(probeVmdk(b('QFI\xfb')), 0);
});

test('header codec round trip preserves every field, including unusual values', () => {
  const h = {
    version: 3,
    flags: 0xffffffff,
    capacity: (1n << 64n) - 1n,
    grainSize: 0x200000n,
    descriptorOffset: 7n,
    descriptorSize: 9n,
    numGTEsPerGT: 4096,
    rgdOffset: 1n << 40n,
    gdOffset: 0xffffffffffffffffn,
    overhead: 12345n,
    uncleanShutdown: 1,
    checkBytes: [1, 2, 3, 4] as const,
    compressAlgorithm: 0xbeef,
  };
  const bytes = encodeSparseHeader(h);
  assert.equal(bytes.length, 79);
  assert.deepEqual({ ...decodeSparseHeader(bytes), checkBytes: [1, 2, 3, 4] }, { ...h, checkBytes: [1, 2, 3, 4] });
  assert.deepEqual([...decodeSparseHeader(bytes).checkBytes], [1, 2, 3, 4]);
});
