/**
 * readHeader on in-memory images: planned images read back (size, CID), QEMU's checks on
 * corrupted headers (codes and messages), the GD_AT_END footer path, descriptor files, and the
 * zero-capacity header that QEMU reads as a descriptor file.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { vmdkDriver } from '../../../src/formats/vmdk/driver.js';
import { encodeSparseHeader, decodeSparseHeader } from '../../../src/formats/vmdk/header.js';
import { readVmdkFacts } from '../../../src/formats/vmdk/open.js';
import { MemoryStorage } from '../../../src/storage/memory.js';
import { VmimgError } from '../../../src/util/errors.js';
import { ctxFor, materialize } from './support.js';

const G = 1n << 30n;

function image(size = 64n << 20n, options: Record<string, string> = {}, cid = 0x12345678): Uint8Array {
  return materialize(vmdkDriver.planCreate(ctxFor(size, options, { cid })));
}

function poke(img: Uint8Array, edits: Array<[number, 1 | 2 | 4 | 8, bigint]>): Uint8Array {
  const out = img.slice();
  const v = new DataView(out.buffer);
  for (const [at, width, value] of edits) {
    if (width === 1) v.setUint8(at, Number(value));
    else if (width === 2) v.setUint16(at, Number(value), true);
    else if (width === 4) v.setUint32(at, Number(value), true);
    else v.setBigUint64(at, value, true);
  }
  return out;
}

const read = (bytes: Uint8Array) => vmdkDriver.readHeader(new MemoryStorage(bytes));

async function rejects(bytes: Uint8Array, code: string, message: string | RegExp): Promise<void> {
  await assert.rejects(read(bytes), (e: unknown) => {
    assert.ok(e instanceof VmimgError, String(e));
    assert.equal(e.code, code, e.message);
    if (typeof message === 'string') assert.ok(e.message.includes(message), e.message);
    else assert.match(e.message, message);
    return true;
  });
}

test('planned images read back with their virtual size and CID', async () => {
  for (const [size, opts] of [
    [64n << 20n, {}],
    [1000n, { subformat: 'streamOptimized' }],
    [3n * G, { zeroed_grain: 'on', adapter_type: 'lsilogic' }],
  ] as const) {
    const facts = await readVmdkFacts(new MemoryStorage(image(size, opts, 0xcafe)));
    assert.equal(facts.virtualSize, ((size + 511n) / 512n) * 512n);
    assert.equal(facts.cid, 0xcafe);
    assert.equal(facts.parentCid, 0xffffffff);
    assert.equal(facts.createType, opts.subformat ?? 'monolithicSparse');
    assert.equal(facts.kind, 'sparse');
  }
  assert.deepEqual(await read(image()), { format: 'vmdk', virtualSize: 64n << 20n, vmdkCid: 0x12345678 });
});

test('sparse header checks in QEMU order, with QEMU messages', async () => {
  const img = image();
  await rejects(poke(img, [[4, 4, 4n]]), 'UNSUPPORTED_IMAGE', 'Unsupported VMDK version 4');
  await rejects(poke(img, [[44, 4, 1024n]]), 'CORRUPT_IMAGE', 'L2 table size too big');
  await rejects(poke(img, [[44, 4, 0n]]), 'CORRUPT_IMAGE', 'L1 entry size is invalid');
  await rejects(poke(img, [[20, 8, 1n << 32n]]), 'CORRUPT_IMAGE', 'L1 entry size is invalid');
  await rejects(poke(img, [[20, 8, 0x200001n]]), 'CORRUPT_IMAGE', 'Invalid granularity, image may be corrupt');
  await rejects(poke(img, [[64, 8, 1000n]]), 'CORRUPT_IMAGE', 'File truncated, expecting at least 512000 bytes');
  await rejects(img.subarray(0, 60000), 'CORRUPT_IMAGE', 'File truncated, expecting at least 65536 bytes');
  assert.equal((await read(img.subarray(0, 65535))).virtualSize, 64n << 20n, 'a partial last sector counts as a sector');
  await rejects(poke(img, [[12, 8, 1n << 42n]]), 'CORRUPT_IMAGE', 'L1 size too big');
  await rejects(poke(img, [[12, 8, 1n << 54n], [20, 8, 0x200000n]]), 'CORRUPT_IMAGE', 'File too large');
  await rejects(poke(img, [[4, 4, 9n], [44, 4, 1024n]]), 'UNSUPPORTED_IMAGE', 'version 9'); // version is checked first
  await rejects(img.subarray(0, 3), 'CORRUPT_IMAGE', 'File is too small');
  await rejects(poke(img, [[512 + 36, 1, 0x7an]]), 'CORRUPT_IMAGE', 'no hexadecimal CID');
  assert.equal((await read(poke(img, [[512 + 32, 1, 0x7an]]))).vmdkCid, 0xffffffff, 'with "CID" gone, "parentCID" matches');
  const version3Plain = await read(poke(img, [[4, 4, 3n]]));
  assert.equal(version3Plain.virtualSize, 64n << 20n, 'version 3 without compression opens read-only');
});

test('a zero-capacity header is read as a descriptor file, as QEMU does', async () => {
  const img = image();
  await rejects(poke(img, [[12, 8, 0n]]), 'UNSUPPORTED_IMAGE', "Unsupported image type 'monolithicSparse'");
  const zeroDescOffset = await readVmdkFacts(new MemoryStorage(poke(img, [[12, 8, 0n], [28, 8, 0n]])));
  assert.equal(zeroDescOffset.virtualSize, 0n, 'without a descriptor offset it stays a (zero-sized) sparse extent');
});

test('GD_AT_END: the footer supplies the header; a bad footer is "Invalid footer"', async () => {
  const img = image(10n << 20n, { subformat: 'streamOptimized' });
  const header = decodeSparseHeader(img);
  const footer = new Uint8Array(1536);
  const fv = new DataView(footer.buffer);
  fv.setUint32(12, 3, true); // footer marker: size 0, type 3
  footer.set(encodeSparseHeader({ ...header, capacity: 4096n }), 512);
  const withFooter = new Uint8Array(img.length + 1536);
  withFooter.set(poke(img, [[56, 8, 0xffffffffffffffffn]]));
  withFooter.set(footer, img.length);
  assert.equal((await read(withFooter)).virtualSize, 4096n * 512n);
  const badType = withFooter.slice();
  badType[img.length + 12] = 2;
  await rejects(badType, 'CORRUPT_IMAGE', 'Invalid footer');
  const badEos = withFooter.slice();
  badEos[img.length + 1024 + 12] = 1;
  await rejects(badEos, 'CORRUPT_IMAGE', 'Invalid footer');
  const badMagic = withFooter.slice();
  badMagic[img.length + 512] = 0;
  await rejects(badMagic, 'CORRUPT_IMAGE', 'Invalid footer');
});

function descriptorFile(lines: string): Uint8Array {
  return new Uint8Array(Buffer.from(`# Disk DescriptorFile\nversion=1\nCID=fe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\n# Extent description\n${lines}\n#DDB\n`));
}

test('descriptor files: size is the sum of RW extent sectors; no extent file is opened', async () => {
  const facts = await readVmdkFacts(new MemoryStorage(descriptorFile('RW 2048 FLAT "/nonexistent/a" 0\nRDONLY 9 FLAT "b" 0\nRW 100 SPARSE "c.vmdk"\n')));
  assert.equal(facts.kind, 'descriptor');
  assert.equal(facts.virtualSize, 2148n * 512n);
  assert.equal(facts.cid, 0xfe);
  assert.deepEqual(facts.extents!.map((e) => e.fileName), ['/nonexistent/a', 'c.vmdk']);
  await rejects(descriptorFile('RW 2048 FLAT "a"\n'), 'CORRUPT_IMAGE', 'Invalid extent line: RW 2048 FLAT "a"');
  await rejects(descriptorFile('RDONLY 2048 FLAT "a" 0\n'), 'CORRUPT_IMAGE', 'no usable extent');
  await rejects(descriptorFile('RW 18014398507384833 FLAT "a" 0\n'), 'CORRUPT_IMAGE', 'File too large');
  assert.equal((await read(descriptorFile('RW 18014398507384832 FLAT "a" 0\n'))).virtualSize, 9223372035781033984n);
  const noType = new Uint8Array(Buffer.from('version=1\nCID=1\nparentCID=2\nRW 5 FLAT "a" 0\n'));
  await rejects(noType, 'CORRUPT_IMAGE', 'invalid VMDK image descriptor');
  const sparseType = new Uint8Array(Buffer.from('CID=1\nparentCID=2\ncreateType="streamOptimized"\nRW 5 FLAT "a" 0\n'));
  await rejects(sparseType, 'UNSUPPORTED_IMAGE', "Unsupported image type 'streamOptimized'");
  const noParent = new Uint8Array(Buffer.from('CID=1\ncreateType="vmfs"\nRW 5 VMFS "a"\n'));
  await rejects(noParent, 'CORRUPT_IMAGE', 'no hexadecimal parentCID');
  const badHint = new Uint8Array(Buffer.from('CID=1\nparentCID=2\nparentFileNameHint="x\ncreateType="vmfs"\nRW 5 VMFS "a"\n'));
  assert.equal((await readVmdkFacts(new MemoryStorage(badHint))).parentFileNameHint, 'x\ncreateType=', 'the value runs to the next quote');
  const openHint = new Uint8Array(Buffer.from('CID=1\nparentCID=2\ncreateType="vmfs"\nRW 5 VMFS "a"\nparentFileNameHint="x\n'));
  await rejects(openHint, 'CORRUPT_IMAGE', 'parentFileNameHint has no closing quote');
});

test('a COWD extent: size from its header, CID from byte 0x200', async () => {
  const img = new Uint8Array(4096);
  const v = new DataView(img.buffer);
  img.set(Buffer.from('COWD'), 0);
  v.setUint32(12, 2048, true); // disk sectors
  v.setUint32(16, 8, true); // granularity
  v.setUint32(20, 4, true); // l1dir offset
  v.setUint32(24, 1, true); // l1dir size
  img.set(Buffer.from('CID=abc\nparentCID=ffffffff\n'), 512);
  assert.deepEqual(await read(img), { format: 'vmdk', virtualSize: 2048n * 512n, vmdkCid: 0xabc });
  const gran = img.slice();
  new DataView(gran.buffer).setUint32(16, 0x200001, true);
  await rejects(gran, 'CORRUPT_IMAGE', 'Invalid granularity');
});

test('property: any mutation of a planned image or descriptor either reads or fails with CORRUPT/UNSUPPORTED_IMAGE', async () => {
  const sparse = image(96n << 20n, {}, 0xabc);
  const text = descriptorFile('RW 1024 FLAT "a" 0\nRW 10 SPARSE "b.vmdk"\n');
  await fc.assert(
    fc.asyncProperty(
      fc.boolean(),
      fc.array(fc.tuple(fc.nat(1600), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
      fc.nat(70000),
      async (useSparse, edits, cut) => {
        const bytes = (useSparse ? sparse : text).slice();
        for (const [at, value] of edits) if (at < bytes.length) bytes[at] = value;
        const input = useSparse && cut > 600 ? bytes.subarray(0, cut) : bytes;
        try {
          const facts = await readVmdkFacts(new MemoryStorage(input));
          assert.ok(facts.virtualSize >= 0n && facts.virtualSize <= (1n << 63n) - (1n << 30n));
          assert.ok(Number.isInteger(facts.cid) && facts.cid >= 0 && facts.cid <= 0xffffffff);
        } catch (e) {
          assert.ok(e instanceof VmimgError && (e.code === 'CORRUPT_IMAGE' || e.code === 'UNSUPPORTED_IMAGE'), String(e));
        }
      },
    ),
    { seed: 20260601, numRuns: 400 },
  );
});
