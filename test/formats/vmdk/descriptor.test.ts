/**
 * Descriptor text without I/O: the exact text qemu-img 7.2 writes (reference A.5), and QEMU's
 * reading rules for CID, parentCID, createType, parentFileNameHint and extent lines. The
 * expected values for odd inputs were observed with `qemu-img info` on hand-written descriptors
 * (see docs/formats/vmdk.md).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatDescriptor, parentHintLine, parseExtentLines, readCid, readCreateType, readParentHint } from '../../../src/formats/vmdk/descriptor.js';
import { VmimgError } from '../../../src/util/errors.js';

const enc = (s: string) => new Uint8Array(Buffer.from(s, 'latin1'));

const T_VMDK = `# Disk DescriptorFile
version=1
CID=580b9ec7
parentCID=ffffffff
createType="monolithicSparse"

# Extent description
RW 2097152 SPARSE "t.vmdk"

# The Disk Data Base
#DDB

ddb.virtualHWVersion = "4"
ddb.geometry.cylinders = "2080"
ddb.geometry.heads = "16"
ddb.geometry.sectors = "63"
ddb.adapterType = "ide"
ddb.toolsVersion = "2147483647"
`;

const base = {
  cid: 0x580b9ec7,
  parentCid: 0xffffffff,
  createType: 'monolithicSparse',
  extents: [{ sectors: 2097152n, type: 'SPARSE' as const, fileName: 't.vmdk' }],
  hwVersion: '4',
  cylinders: 2080n,
  heads: 16,
  adapterType: 'ide',
  toolsVersion: '2147483647',
};

test('formatDescriptor writes qemu-img 7.2 text for a 1G monolithicSparse image (reference A.5)', () => {
  const text = Buffer.from(formatDescriptor(base)).toString('utf8');
  assert.equal(text, T_VMDK);
  assert.equal(text.length, 340, 'reference: 340 bytes used');
});

test('formatDescriptor puts parentFileNameHint right after createType with no blank line (ov.vmdk)', () => {
  const text = Buffer.from(formatDescriptor({ ...base, cid: 0x786a22ee, parentCid: 0x580b9ec7, parentFileNameHint: 't.vmdk', extents: [{ ...base.extents[0]!, fileName: 'ov.vmdk' }] })).toString();
  assert.ok(text.startsWith('# Disk DescriptorFile\nversion=1\nCID=786a22ee\nparentCID=580b9ec7\ncreateType="monolithicSparse"\nparentFileNameHint="t.vmdk"\n# Extent description\nRW 2097152 SPARSE "ov.vmdk"\n\n'));
  assert.equal(text.length, 368, 'reference: 368 bytes used');
});

test('CIDs print as unpadded lower-case hex', () => {
  const text = Buffer.from(formatDescriptor({ ...base, cid: 0x0d909ae7, parentCid: 0 })).toString();
  assert.match(text, /\nCID=d909ae7\nparentCID=0\n/);
});

test('the hint line is cut to 4095 bytes, as snprintf into QEMU 4096-byte buffer', () => {
  const long = 'a'.repeat(5000);
  const line = parentHintLine(long);
  assert.equal(line.length, 4095);
  assert.equal(Buffer.from(line).toString().slice(0, 20), 'parentFileNameHint="');
  assert.equal(parentHintLine('x.vmdk').length, 'parentFileNameHint="x.vmdk"'.length);
});

test('readCid follows vmdk_read_cid: first "CID" anywhere, one char skipped, glibc %x into 32 bits', () => {
  const cases: Array<[string, number | undefined]> = [
    ['CID=123456789\nparentCID=ffffffff\n', 0x23456789],
    ['CID= 0x1f\nparentCID=ffffffff\n', 31],
    ['CID=zz\nparentCID=ffffffff\n', undefined],
    ['parentCID=ffffffff\n', 0xffffffff],
    ['parentCID=abc\nCID=def\n', 0xabc],
    ['CID=-1\nparentCID=ffffffff\n', 0xffffffff],
    ['CID=12abcxyz\nparentCID=+5\n', 0x12abc],
    ['CID=fffffffffffffffffffff\n', 0xffffffff],
    ['CID:5\n', 5],
    ['CID=0xg\n', 0],
    ['CID=0x\nparentCID=1\n', 0],
    ['CID=-0x10\n', 0xfffffff0],
    ['CID=\n  5\n', 5],
    ['CID=  +0X1A\n', 26],
    ['CID=100000005\n', 5],
    ['# no id here\n', undefined],
    ['CID', undefined],
  ];
  for (const [text, want] of cases) assert.equal(readCid(enc(text), 'CID'), want, JSON.stringify(text));
  assert.equal(readCid(enc('CID=5\nparentCID=+5\n'), 'parentCID'), 5);
  assert.equal(readCid(enc('CID=5\n'), 'parentCID'), undefined);
});

test('readCid sees only the first 10239 bytes and stops at a NUL', () => {
  const late = new Uint8Array(12000);
  late.set(enc('CID=5\n'), 10236);
  assert.equal(readCid(late, 'CID'), undefined, 'CID straddles the cut at 10239');
  const early = new Uint8Array(12000);
  early.set(enc('CID=77\n'), 10200);
  assert.equal(readCid(early, 'CID'), undefined, 'a NUL before it ends the string');
  const ok = enc('x'.repeat(10200) + 'CID=77\n');
  assert.equal(readCid(ok, 'CID'), 0x77);
});

test('readCreateType follows vmdk_parse_description', () => {
  assert.equal(readCreateType(enc('createType="monolithicFlat"\n')), 'monolithicFlat');
  assert.equal(readCreateType(enc('# createType="vmfs" first\ncreateType="monolithicFlat"\n')), 'vmfs');
  assert.equal(readCreateType(enc('createType:"x"')), 'x', 'any two characters are skipped');
  assert.equal(readCreateType(enc('createType="monolithicFlat')), undefined, 'no closing quote');
  assert.equal(readCreateType(enc('createType=')), undefined);
  assert.equal(readCreateType(enc(`createType="${'a'.repeat(127)}"`)), 'a'.repeat(127));
  assert.equal(readCreateType(enc(`createType="${'a'.repeat(128)}"`)), undefined, 'longer than 127');
  assert.equal(readCreateType(enc('version=1\n')), undefined);
});

test('readParentHint follows vmdk_parent_open', () => {
  assert.deepEqual(readParentHint(enc('CID=1\n')), { ok: true });
  assert.deepEqual(readParentHint(enc('parentFileNameHint="a b.vmdk"\n')), { ok: true, name: 'a b.vmdk' });
  assert.equal(readParentHint(enc('parentFileNameHint="a b.vmdk\n')).ok, false);
  assert.deepEqual(readParentHint(enc(`parentFileNameHint="${'n'.repeat(4095)}"`)), { ok: true, name: 'n'.repeat(4095) });
  assert.equal(readParentHint(enc(`parentFileNameHint="${'n'.repeat(4096)}"`)).ok, false);
});

test('parseExtentLines follows vmdk_parse_extents (sscanf across lines, skips, invalid lines)', () => {
  const parse = (body: string) => parseExtentLines(enc(body));
  assert.deepEqual(parse('RW 2048 FLAT "data.raw" 0\n'), [{ access: 'RW', sectors: 2048n, type: 'FLAT', fileName: 'data.raw', flatOffset: 0n }]);
  assert.deepEqual(parse('RW 100 SPARSE "s.vmdk"\nRW 7 VMFS "v.raw"\n'), [
    { access: 'RW', sectors: 100n, type: 'SPARSE', fileName: 's.vmdk' },
    { access: 'RW', sectors: 7n, type: 'VMFS', fileName: 'v.raw', flatOffset: 0n },
  ]);
  assert.equal(parse('RW\n 2048 FLAT\n "data.raw"\n 0\n').length, 1, 'one extent spread over four lines');
  const skipped = parse(
    'RDONLY 2048 FLAT "d" 0\nNOACCESS 77 FLAT "d" 0\nRW 0 FLAT "d" 0\nRW 5 ZERO "d"\nRWXXXXXXXXXXXX 2048 FLAT "d" 0\n' +
      'RW 2048 FLATXXXXXXXXXX "d" 0\n# RW 5 FLAT "d" 0\nRW 5 SPARSE\nRW 1024 FLAT "data.raw" 0 junk\n',
  );
  assert.deepEqual(skipped.map((e) => e.sectors), [1024n]);
  assert.equal(parse(`RW 5 SPARSE "${'n'.repeat(511)}"\n`).length, 1);
  assert.deepEqual(
    parse(`RW 5 SPARSE "${'n'.repeat(512)}"\n`).map((e) => e.fileName),
    ['n'.repeat(511)],
    'a longer name is cut to 511 bytes and the line still counts (the closing quote is a literal after the 4th field)',
  );
  assert.throws(() => parse(`RW 5 FLAT "${'n'.repeat(512)}" 0\n`), /Invalid extent line/, 'a FLAT line then lacks its offset');
  for (const bad of ['RW 2048 FLAT "data.raw"', 'RW 100 FLAT "data.raw" -1', 'RW 100 VMFS "data.raw" 3', 'RW 2048 SPARSE "data.raw"\n1', 'RW 5 ZERO "d" 9']) {
    assert.throws(
      () => parse(bad + '\n'),
      (e: unknown) => e instanceof VmimgError && e.code === 'CORRUPT_IMAGE' && e.message === `Invalid extent line: ${bad.split('\n')[0]}`,
      bad,
    );
  }
  assert.deepEqual(parse('RW 99999999999999999999 FLAT "d" 0\n').map((e) => e.sectors), [9223372036854775807n], '%ld saturates');
  assert.deepEqual(parse('RW 5 FLAT "d" 0\0RW 6 FLAT "d" 0\n').map((e) => e.sectors), [5n], 'the text ends at a NUL');
});

test('an extent line counts once more for each blank line before it, as in QEMU (observed: 4 extents)', () => {
  const text = 'createType="monolithicFlat"\n\n\n\nRW 100 FLAT "data.raw" 0\n';
  assert.deepEqual(parseExtentLines(enc(text)).map((e) => e.sectors), [100n, 100n, 100n, 100n]);
  assert.equal(parseExtentLines(enc('x\n   \n  \t \nRW 100 FLAT "d" 0\n')).length, 3);
});

test('a megabyte of blank lines or digits parses in linear time; too many extents are refused', { timeout: 20000 }, () => {
  const blank = new Uint8Array(Buffer.from('\n'.repeat((1 << 20) - 40) + 'RW 1 FLAT "d" 0\n'));
  assert.throws(() => parseExtentLines(blank), (e: unknown) => e instanceof VmimgError && e.code === 'UNSUPPORTED_IMAGE' && /more than 65536 extents/.test(e.message));
  const spaces = new Uint8Array(Buffer.from(' \n'.repeat(30000) + 'RW 1 FLAT "d" 0\n'));
  assert.equal(parseExtentLines(spaces).length, 30001);
  const digits = new Uint8Array(Buffer.from('\n'.repeat(1000) + 'RW ' + '7'.repeat(1 << 19) + ' FLAT "d" 0\n'));
  assert.deepEqual(new Set(parseExtentLines(digits).map((e) => e.sectors)), new Set([9223372036854775807n]));
});
