/**
 * readHeader against `qemu-img info` (7.2) on corrupted sparse headers and hand-written
 * descriptor files: vmimg must open exactly what qemu-img opens, with the same virtual size and
 * CID, and reject the rest with a stable code (and QEMU's message where QEMU has one). The
 * descriptor files' extents exist, so qemu-img's verdict depends on the text alone.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { vmdkDriver } from '../../../src/formats/vmdk/driver.js';
import type { HeaderSummary } from '../../../src/formats/types.js';
import { FileStorage } from '../../../src/storage/file.js';
import { VmimgError } from '../../../src/util/errors.js';
import { readBytes } from '../../helpers/create.js';
import { oracle, qemuImg, tempDir } from '../../helpers/oracle.js';

type Code = 'CORRUPT_IMAGE' | 'UNSUPPORTED_IMAGE';

interface Poke {
  name: string;
  edits: Array<[offset: number, width: 1 | 4 | 8, value: bigint]>;
  /** Where qemu-img fails: its message (or a part of it), and vmimg's code. */
  qemu?: string;
  code?: Code;
  /** True when vmimg's message must contain qemu's too (QEMU's own wording, not errno text). */
  sameMessage?: boolean;
}

const POKES: Poke[] = [
  { name: 'v2', edits: [[4, 4, 2n]] },
  { name: 'v3plain', edits: [[4, 4, 3n]] },
  { name: 'v4', edits: [[4, 4, 4n]], qemu: 'Unsupported VMDK version 4', code: 'UNSUPPORTED_IMAGE', sameMessage: true },
  { name: 'v4gte', edits: [[4, 4, 4n], [44, 4, 1024n]], qemu: 'Unsupported VMDK version 4', code: 'UNSUPPORTED_IMAGE', sameMessage: true },
  { name: 'gte1024', edits: [[44, 4, 1024n]], qemu: 'L2 table size too big', code: 'CORRUPT_IMAGE', sameMessage: true },
  { name: 'gte0', edits: [[44, 4, 0n]], qemu: 'L1 entry size is invalid', code: 'CORRUPT_IMAGE', sameMessage: true },
  { name: 'gte1', edits: [[44, 4, 1n]] },
  { name: 'gran2^32', edits: [[20, 8, 1n << 32n]], qemu: 'L1 entry size is invalid', code: 'CORRUPT_IMAGE', sameMessage: true },
  { name: 'gran200000', edits: [[20, 8, 0x200000n]] },
  { name: 'gran200001', edits: [[20, 8, 0x200001n]], qemu: 'Invalid granularity, image may be corrupt', code: 'CORRUPT_IMAGE', sameMessage: true },
  { name: 'overhead', edits: [[64, 8, 1000n]], qemu: 'File truncated, expecting at least 512000 bytes', code: 'CORRUPT_IMAGE', sameMessage: true },
  { name: 'overheadneg', edits: [[64, 8, 1n << 62n]], qemu: 'File truncated, expecting at least 0 bytes', code: 'CORRUPT_IMAGE', sameMessage: true },
  { name: 'cap2^41', edits: [[12, 8, 1n << 41n]] },
  { name: 'cap2^42', edits: [[12, 8, 1n << 42n]], qemu: 'L1 size too big', code: 'CORRUPT_IMAGE', sameMessage: true },
  { name: 'cap2^54', edits: [[12, 8, 1n << 54n], [20, 8, 0x200000n]], qemu: 'File too large', code: 'CORRUPT_IMAGE', sameMessage: true },
  { name: 'cap0', edits: [[12, 8, 0n]], qemu: "Unsupported image type 'monolithicSparse'", code: 'UNSUPPORTED_IMAGE', sameMessage: true },
  { name: 'cap0doff0', edits: [[12, 8, 0n], [28, 8, 0n]] },
  { name: 'descwrap', edits: [[12, 8, 0n], [28, 8, 1n << 60n]], qemu: 'invalid VMDK image descriptor', code: 'CORRUPT_IMAGE', sameMessage: true },
  { name: 'gdatend', edits: [[56, 8, 0xffffffffffffffffn]], qemu: 'Invalid footer', code: 'CORRUPT_IMAGE', sameMessage: true },
  { name: 'gdneg', edits: [[56, 8, 1n << 54n]], qemu: 'Could not read l1 table from extent', code: 'CORRUPT_IMAGE', sameMessage: true },
  { name: 'rgdneg', edits: [[48, 8, 1n << 54n]], qemu: 'Could not read l1 backup table from extent', code: 'CORRUPT_IMAGE', sameMessage: true },
  { name: 'rgdneg-norgd', edits: [[48, 8, 1n << 54n], [8, 4, 1n]] },
  { name: 'rgdwrap', edits: [[48, 8, 1n << 55n]] },
  { name: 'doff5', edits: [[28, 8, 5n]] },
  { name: 'compressed', edits: [[77, 1, 1n]] },
  { name: 'checkbytes', edits: [[73, 4, 0n]] },
  { name: 'unclean', edits: [[72, 1, 1n]] },
  { name: 'cidz', edits: [[512 + 36, 1, 0x7an]], qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'cidgone', edits: [[512 + 32, 1, 0x7an]] },
  { name: 'parentcidgone', edits: [[512 + 32, 1, 0x7an], [512 + 51, 1, 0x7an]], qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'magic', edits: [[0, 4, 0x44444444n]], qemu: 'invalid VMDK image descriptor', code: 'CORRUPT_IMAGE', sameMessage: true },
];

const DESCRIPTORS: Array<{ name: string; text: string; qemu?: string; code?: Code; sameMessage?: boolean }> = [
  { name: 'plain', text: desc('CID=123456789', 'RW 2048 FLAT "data.raw" 0') },
  { name: 'hexprefix', text: desc('CID= 0x1f', 'RW 2048 FLAT "data.raw" 0') },
  { name: 'cidzz', text: desc('CID=zz', 'RW 2048 FLAT "data.raw" 0'), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'parentfirst', text: 'version=1\nparentCID=abc\nCID=def\ncreateType="monolithicFlat"\nRW 2048 FLAT "data.raw" 0\n' },
  { name: 'negative', text: desc('CID=-0x10', 'RW 2048 FLAT "data.raw" 0') },
  { name: 'huge', text: desc('CID=fffffffffffffffffffff', 'RW 2048 FLAT "data.raw" 0') },
  { name: 'colon', text: desc('CID:5', 'RW 2048 FLAT "data.raw" 0') },
  { name: 'multiline', text: desc('CID=5', 'RW\n 2048 FLAT\n "data.raw"\n 0') },
  { name: 'access', text: desc('CID=5', 'RDONLY 2048 FLAT "data.raw" 0\nRW 1024 FLAT "data.raw" 0\nRW 0 FLAT "data.raw" 0\nNOACCESS 7 FLAT "data.raw" 0') },
  { name: 'twoextents', text: desc('CID=5', 'RW 1024 FLAT "data.raw" 0\nRW 1000 FLAT "data.raw" 7') },
  { name: 'vmfs', text: desc('CID=5', 'RW 2048 VMFS "data.raw"', 'vmfs') },
  { name: 'junk', text: desc('CID=5', 'RW 2048 FLAT "data.raw" 0 junk', 'twoGbMaxExtentFlat') },
  { name: 'flatnooffset', text: desc('CID=5', 'RW 2048 FLAT "data.raw"'), qemu: 'Invalid extent line: RW 2048 FLAT "data.raw"', code: 'CORRUPT_IMAGE', sameMessage: true },
  { name: 'flatnegoffset', text: desc('CID=5', 'RW 100 FLAT "data.raw" -1'), qemu: 'Invalid extent line: RW 100 FLAT "data.raw" -1', code: 'CORRUPT_IMAGE', sameMessage: true },
  { name: 'vmfsoffset', text: desc('CID=5', 'RW 100 VMFS "data.raw" 3', 'vmfs'), qemu: 'Invalid extent line: RW 100 VMFS "data.raw" 3', code: 'CORRUPT_IMAGE', sameMessage: true },
  { name: 'badtype', text: desc('CID=5', 'RW 2048 FLAT "data.raw" 0', 'monolithicSparse'), qemu: "Unsupported image type 'monolithicSparse'", code: 'UNSUPPORTED_IMAGE', sameMessage: true },
  { name: 'notype', text: 'version=1\nCID=5\nparentCID=ffffffff\nRW 2048 FLAT "data.raw" 0\n', qemu: 'invalid VMDK image descriptor', code: 'CORRUPT_IMAGE', sameMessage: true },
  { name: 'noparent', text: 'version=1\nCID=5\ncreateType="monolithicFlat"\nRW 2048 FLAT "data.raw" 0\n', qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'noextents', text: desc('CID=5', 'RW 2048 ZERO "data.raw"'), code: 'CORRUPT_IMAGE' },
  { name: 'maxlength', text: desc('CID=5', 'RW 18014398507384832 FLAT "data.raw" 0') },
  { name: 'toolong', text: desc('CID=5', 'RW 18014398507384833 FLAT "data.raw" 0'), qemu: 'File too large', code: 'CORRUPT_IMAGE', sameMessage: true },
  { name: 'hint', text: desc('CID=5\nparentFileNameHint="data.raw"', 'RW 2048 FLAT "data.raw" 0') },
  { name: 'hintrunon', text: desc('CID=5', 'RW 2048 FLAT "data.raw" 0\nparentFileNameHint="x') },
  { name: 'hintopen', text: 'version=1\nCID=5\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "data.raw" 0\nparentFileNameHint="x\n', qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'hintlong', text: `version=1\nCID=5\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "data.raw" 0\nparentFileNameHint="${'h'.repeat(4096)}"\n`, qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'hintmax', text: `version=1\nCID=5\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "data.raw" 0\nparentFileNameHint="${'h'.repeat(4095)}"\n` },
];

function desc(ids: string, extents: string, createType = 'monolithicFlat'): string {
  return `# Disk DescriptorFile\nversion=1\n${ids}\nparentCID=ffffffff\ncreateType="${createType}"\n\n# Extent description\n${extents}\n\n#DDB\nddb.virtualHWVersion = "4"\n`;
}

function applyPoke(bytes: Uint8Array, poke: Poke): Uint8Array {
  const out = new Uint8Array(bytes); // a copy (Buffer#slice would share memory)
  const v = new DataView(out.buffer);
  for (const [at, width, value] of poke.edits) {
    if (width === 1) v.setUint8(at, Number(value));
    else if (width === 4) v.setUint32(at, Number(value), true);
    else v.setBigUint64(at, value, true);
  }
  return out;
}

async function readHeaderOf(path: string): Promise<HeaderSummary | VmimgError> {
  const storage = await FileStorage.open(path);
  try {
    return await vmdkDriver.readHeader(storage);
  } catch (e) {
    if (e instanceof VmimgError) return e;
    throw e;
  } finally {
    await storage.close();
  }
}

/** Compares vmimg's verdict on `path` with qemu-img info's. */
async function agree(path: string, label: string, expect: { qemu?: string; code?: Code; sameMessage?: boolean }): Promise<void> {
  const info = qemuImg(['info', '--output=json', '-f', 'vmdk', path]);
  const ours = await readHeaderOf(path);
  if (info.status === 0) {
    assert.equal(expect.code, undefined, `${label}: qemu-img opens it`);
    assert.ok(!(ours instanceof VmimgError), `${label}: ${String(ours)}`);
    const json = JSON.parse(info.stdout) as { 'virtual-size': number; 'format-specific': { data: { cid: number } } };
    assert.equal(ours.virtualSize, BigInt(json['virtual-size']), label);
    assert.equal(ours.vmdkCid, json['format-specific'].data.cid, label);
    return;
  }
  assert.ok(expect.code, `${label}: qemu-img rejects it: ${info.stderr}`);
  assert.ok(ours instanceof VmimgError && ours.code === expect.code, `${label}: ${String(ours)}`);
  if (expect.qemu) assert.ok(info.stderr.includes(expect.qemu), `${label}: qemu-img says ${info.stderr}`);
  if (expect.sameMessage) assert.ok(ours.message.includes(expect.qemu!), `${label}: ${ours.message}`);
}

test('vmdk readHeader opens exactly the corrupted sparse headers qemu-img info opens', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-vmdk-');
  const base = join(dir, 'base.vmdk');
  assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', base, '64M']).status, 0);
  const bytes = readBytes(base);
  for (const poke of POKES) {
    const path = join(dir, `${poke.name}.vmdk`);
    writeFileSync(path, applyPoke(bytes, poke));
    await agree(path, poke.name, poke);
  }
  writeFileSync(join(dir, 'short.vmdk'), bytes.subarray(0, 3));
  const short = await readHeaderOf(join(dir, 'short.vmdk'));
  assert.ok(short instanceof VmimgError && short.code === 'CORRUPT_IMAGE' && short.message.includes('File is too small'));
  assert.notEqual(qemuImg(['info', '-f', 'vmdk', join(dir, 'short.vmdk')]).status, 0);
});

test('vmdk readHeader reads descriptor files as qemu-img info does', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-vmdk-');
  writeFileSync(join(dir, 'data.raw'), new Uint8Array(1 << 20));
  for (const d of DESCRIPTORS) {
    const path = join(dir, `${d.name}.vmdk`);
    writeFileSync(path, d.text);
    await agree(path, d.name, d);
  }
});

test('vmdk readHeader reads what qemu-img writes (create and convert, every subformat)', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-vmdk-');
  writeFileSync(join(dir, 'src.raw'), Buffer.alloc(3 << 20, 7));
  const made: string[] = [];
  for (const sub of ['monolithicSparse', 'streamOptimized', 'monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat']) {
    const c = join(dir, `c-${sub}.vmdk`);
    assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', '-o', `subformat=${sub}`, c, '3G']).status, 0);
    const v = join(dir, `v-${sub}.vmdk`);
    assert.equal(qemuImg(['convert', '-O', 'vmdk', '-o', `subformat=${sub}`, join(dir, 'src.raw'), v]).status, 0);
    made.push(c, v);
  }
  for (const path of made) await agree(path, path, {});
  assert.equal(vmdkDriver.probe(readBytes(join(dir, 'c-monolithicFlat.vmdk')).subarray(0, 512)), 100);
  assert.equal(vmdkDriver.probe(readBytes(join(dir, 'c-streamOptimized.vmdk')).subarray(0, 512)), 100);
});

/** A small seeded PRNG (LCG) so the mutations are the same on every run. */
function prng(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s / 0x80000000;
  };
}

const PIECES = ['"', '\n', ' ', '\t', '0', '7', '-', 'x', 'R', 'W', 'C', 'I', 'D', '=', '#', '\r', '\0', 'FLAT', 'SPARSE', 'RW ', 'CID=', '999999999999'];

test('seeded mutations: vmdk readHeader agrees with qemu-img info on sparse headers and descriptor text', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-vmdk-');
  writeFileSync(join(dir, 'data.raw'), new Uint8Array(1 << 20));
  const sparse = join(dir, 'sparse.vmdk');
  const stream = join(dir, 'stream.vmdk');
  assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', sparse, '64M']).status, 0);
  assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', '-o', 'subformat=streamOptimized', stream, '64M']).status, 0);
  const bases = [readBytes(sparse), readBytes(stream)];
  const text = desc('CID=1a2b', 'RW 1024 FLAT "data.raw" 0\nRW 1024 VMFS "data.raw"');
  const rnd = prng(42);
  const path = join(dir, 'm.vmdk');
  let skipped = 0;
  for (let i = 0; i < 240; i++) {
    let bytes: Uint8Array;
    if (i % 2 === 0) {
      bytes = new Uint8Array(bases[(i / 2) % 2]!);
      for (let k = 0, n = 1 + Math.floor(rnd() * 3); k < n; k++) {
        const at = rnd() < 0.7 ? Math.floor(rnd() * 79) : 512 + Math.floor(rnd() * 188);
        const r = rnd();
        bytes[at] = r < 0.3 ? 0 : r < 0.5 ? 0xff : Math.floor(rnd() * 256);
      }
    } else {
      let s = text;
      for (let k = 0, n = 1 + Math.floor(rnd() * 3); k < n; k++) {
        const at = Math.floor(rnd() * s.length);
        const piece = PIECES[Math.floor(rnd() * PIECES.length)]!;
        const op = rnd();
        s = op < 0.4 ? s.slice(0, at) + piece + s.slice(at + 1) : op < 0.8 ? s.slice(0, at) + piece + s.slice(at) : s.slice(0, at) + s.slice(at + 1);
      }
      bytes = new Uint8Array(Buffer.from(s, 'latin1'));
    }
    writeFileSync(path, bytes);
    const info = qemuImg(['info', '--output=json', '-f', 'vmdk', path]);
    const ours = await readHeaderOf(path);
    const label = `mutation ${i}: ${info.stderr}`;
    if (info.status !== 0) {
      // qemu-img opens extent files (a mangled name, or data.raw read as a sparse extent); vmimg does not.
      const aboutExtent = /Could not open '[^']*': (Could not open '(?![^']*m\.vmdk')|Image not in VMDK format|File is too small)/.test(info.stderr);
      if (aboutExtent && !(ours instanceof VmimgError)) {
        skipped++;
        continue;
      }
      assert.ok(ours instanceof VmimgError && (ours.code === 'CORRUPT_IMAGE' || ours.code === 'UNSUPPORTED_IMAGE'), `${label} ours: ${String(ours)}`);
    } else {
      assert.ok(!(ours instanceof VmimgError), `${label} ours: ${String(ours)}`);
      const json = JSON.parse(info.stdout) as { 'virtual-size': number; 'format-specific': { data: { cid: number } } };
      assert.equal(ours.virtualSize, BigInt(json['virtual-size']), label);
      assert.equal(ours.vmdkCid, json['format-specific'].data.cid, label);
    }
  }
  t.diagnostic(`240 mutations; ${skipped} skipped because qemu-img failed on an extent file vmimg does not open`);
  assert.ok(skipped < 60, `too many skipped (${skipped})`);
});
