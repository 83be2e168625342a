/**
 * VHDX logs (spec §2.3) against qemu-img 7.2, which replays a log when it opens an image
 * read-write and refuses to open it read-only. The logs are written here by a small encoder of
 * the test's own (entry header, descriptors, data sectors, CRC-32C computed from a local table),
 * not by vmimg. Each dirty image is copied: qemu-img replays one (`check -r all`), vmimg the
 * other, and the results must print the same, read the same and be the same file apart from the
 * headers' random GUIDs. Read-only opens are refused by both, leaving the file untouched; a log
 * GUID over a log without valid entries opens in both; hostile logs fail before any byte changes.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openImageFromStorage } from '../../../src/chain/open.js';
import { DENY_ALL } from '../../../src/chain/policy.js';
import { readVhdxFacts, type VhdxFacts } from '../../../src/formats/vhdx/header.js';
import { payloadBatIndex } from '../../../src/formats/vhdx/params.js';
import { decodeHeader, encodeHeader, HEADER1_OFFSET, HEADER2_OFFSET, HEADER_SIZE } from '../../../src/formats/vhdx/structs.js';
import { FileStorage } from '../../../src/storage/file.js';
import { MemoryStorage } from '../../../src/storage/memory.js';
import { isVmimgError } from '../../../src/util/errors.js';
import { vmimg } from '../../helpers/cli.js';
import { oracle, qemuImg, tempDir } from '../../helpers/oracle.js';
import { poke, qemuIo, readRange, sameInfo, sh } from '../vpc/read-support.js';

const MiB = 1 << 20;
const SECTOR = 4096;
const GUID = Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i);

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  return c >>> 0;
});
function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

type Desc = { at: number; data: Uint8Array } | { at: number; zero: number };
interface Entry {
  seq: bigint;
  descs: Desc[];
  flushed: number;
  last: number;
}

/** One log entry as §2.3.1 lays it out: descriptor sectors, then a sector per data descriptor. */
function encodeEntry(e: Entry): Uint8Array {
  const descSectors = Math.ceil((e.descs.length + 2) / 128);
  const dataCount = e.descs.filter((d) => 'data' in d).length;
  const out = new Uint8Array((descSectors + dataCount) * SECTOR);
  const v = new DataView(out.buffer);
  v.setUint32(0, 0x65676f6c, true); // "loge"
  v.setUint32(8, out.length, true);
  v.setBigUint64(16, e.seq, true);
  v.setUint32(24, e.descs.length, true);
  out.set(GUID, 32);
  v.setBigUint64(48, BigInt(e.flushed), true);
  v.setBigUint64(56, BigInt(e.last), true);
  let data = descSectors * SECTOR;
  e.descs.forEach((d, k) => {
    const at = 64 + 32 * k;
    if ('data' in d) {
      out.set(new TextEncoder().encode('desc'), at);
      out.set(d.data.subarray(SECTOR - 4), at + 4);
      out.set(d.data.subarray(0, 8), at + 8);
      out.set(new TextEncoder().encode('data'), data);
      v.setUint32(data + 4, Number(e.seq >> 32n), true);
      out.set(d.data.subarray(8, SECTOR - 4), data + 8);
      v.setUint32(data + SECTOR - 4, Number(e.seq & 0xffffffffn), true);
      data += SECTOR;
    } else {
      out.set(new TextEncoder().encode('zero'), at);
      v.setBigUint64(at + 8, BigInt(d.zero), true);
    }
    v.setBigUint64(at + 16, BigInt(d.at), true);
    v.setBigUint64(at + 24, e.seq, true);
  });
  v.setUint32(4, crc32c(out), true);
  return out;
}

async function factsOf(path: string): Promise<VhdxFacts> {
  const s = await FileStorage.open(path);
  try {
    return await readVhdxFacts(s, { check: true });
  } finally {
    await s.close();
  }
}

/** Puts `entry` at sector `sector` of the log (wrapping at its end) and sets the log GUID. */
function writeEntry(path: string, f: VhdxFacts, sector: number, entry: Uint8Array): void {
  const logAt = Number(f.header.logOffset);
  const sectors = f.header.logLength / SECTOR;
  for (let k = 0; k < entry.length / SECTOR; k++) poke(path, logAt + ((sector + k) % sectors) * SECTOR, entry.subarray(k * SECTOR, (k + 1) * SECTOR));
}

function setLogGuid(path: string, guid: Uint8Array): void {
  const h1 = decodeHeader(readRange(path, HEADER1_OFFSET, HEADER_SIZE));
  const h2 = decodeHeader(readRange(path, HEADER2_OFFSET, HEADER_SIZE));
  const at = h1.sequenceNumber > h2.sequenceNumber ? HEADER1_OFFSET : HEADER2_OFFSET;
  poke(path, at, encodeHeader({ ...(at === HEADER1_OFFSET ? h1 : h2), logGuid: guid }));
}

function pattern(seed: number): Uint8Array {
  return Uint8Array.from({ length: SECTOR }, (_, i) => (i * 13 + seed * 101 + (i >> 8)) & 0xff);
}

const sha = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

/** A 64 MiB dynamic image with 1 MiB blocks and data in blocks 0 and 1, made by qemu-img. */
async function baseImage(dir: string): Promise<{ path: string; f: VhdxFacts; block0: number }> {
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M', 'base.vhdx', '64M']);
  qemuIo(dir, 'vhdx', 'base.vhdx', ['write -P 0x11 0 2M']);
  const path = join(dir, 'base.vhdx');
  const f = await factsOf(path);
  const bat = readRange(path, Number(f.batRegion.fileOffset), 8).readBigUInt64LE(0);
  return { path, f, block0: Number(bat & ~0xfffffn) };
}

/** Replays copies of `dirty` with both tools; asserts the same output, content and bytes. */
async function replayBoth(dir: string, dirty: string): Promise<string> {
  const theirs = join(dir, 'theirs.vhdx');
  const ours = join(dir, 'ours.vhdx');
  copyFileSync(dirty, theirs);
  copyFileSync(dirty, ours);
  const q = qemuImg(['check', '-r', 'all', '-f', 'vhdx', theirs]);
  const v = await vmimg(['check', '-r', 'all', '-f', 'vhdx', ours]);
  assert.equal(v.status, q.status, `check -r all: qemu-img ${q.status} ${q.stderr}, vmimg ${v.status} ${v.stderr}`);
  assert.equal(v.stdout, q.stdout.replaceAll(theirs, ours));
  assert.equal(statSync(ours).size, statSync(theirs).size, 'file length after replay');
  assert.equal(qemuImg(['compare', '-f', 'vhdx', '-F', 'vhdx', theirs, ours]).status, 0, 'same guest content');
  // Byte for byte apart from the two headers (fresh random GUIDs and their checksums).
  const a = readFileSync(theirs);
  const b = readFileSync(ours);
  a.fill(0, HEADER1_OFFSET, HEADER2_OFFSET + HEADER_SIZE);
  b.fill(0, HEADER1_OFFSET, HEADER2_OFFSET + HEADER_SIZE);
  assert.ok(a.equals(b), 'files equal outside the headers');
  for (const at of [HEADER1_OFFSET, HEADER2_OFFSET]) {
    const h = decodeHeader(readRange(ours, at, HEADER_SIZE));
    const t = decodeHeader(readRange(theirs, at, HEADER_SIZE));
    assert.equal(h.sequenceNumber, t.sequenceNumber, `header at ${at}: sequence number`);
    assert.deepEqual([...h.logGuid], new Array(16).fill(0), `header at ${at}: log GUID cleared`);
  }
  assert.equal(qemuImg(['check', '-f', 'vhdx', ours]).status, 0, 'qemu-img check of the replayed image');
  const again = await vmimg(['check', '--output=json', ours]);
  assert.equal(again.status, 0);
  assert.deepEqual(JSON.parse(again.stdout), { 'check-errors': 0, filename: ours, format: 'vhdx' });
  return ours;
}

test('a log entry (BAT update, new block past the end, zeroed sectors) replays as qemu-img replays it', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t, 'vmimg-vhdx-log-');
  const { path, f, block0 } = await baseImage(dir);
  const length = statSync(path).size;
  const batAt = Number(f.batRegion.fileOffset);
  // Block 5 becomes FULLY_PRESENT at the current end of the file, through the BAT's first sector.
  const batSector = new Uint8Array(readRange(path, batAt, SECTOR));
  new DataView(batSector.buffer).setBigUint64(payloadBatIndex(f.geometry, 5) * 8, BigInt(length) | 6n, true);
  const entry = encodeEntry({
    seq: 5n,
    flushed: length,
    last: length + MiB - 512, // unaligned: qemu-img extends the file to the next 1 MiB as well
    descs: [
      { at: batAt, data: batSector },
      { at: length, data: pattern(1) },
      { at: block0 + 8192, zero: 8192 },
      { at: block0 + MiB - SECTOR, data: pattern(2) },
    ],
  });
  writeEntry(path, f, 0, entry);
  setLogGuid(path, GUID);
  const before = sha(path);

  // Read-only: both refuse, and nothing changes.
  const qi = qemuImg(['info', '-f', 'vhdx', path]);
  assert.equal(qi.status, 1);
  assert.match(qi.stderr, /contains a log that needs to be replayed/);
  for (const args of [['info'], ['map', '--output=json'], ['check'], ['compare', path]]) {
    const r = await vmimg([...args, path]);
    assert.notEqual(r.status, 0, args.join(' '));
    assert.match(r.stderr, /VHDX image file '.*base\.vhdx' opened read-only, but contains a log that needs to be replayed\nTo replay the log, run:\nvmimg check -r all '.*base\.vhdx' \[LOG_REPLAY_REQUIRED\]/, args.join(' '));
  }
  assert.equal(sha(path), before, 'read-only opens leave the file as it was');

  const ours = await replayBoth(dir, path);
  const raw = join(dir, 'raw');
  sh(dir, 'qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', ours, raw]);
  assert.deepEqual(new Uint8Array(readRange(raw, 5 * MiB, SECTOR)), pattern(1));
  assert.ok(readRange(raw, 8192, 8192).every((b) => b === 0));
  assert.deepEqual(new Uint8Array(readRange(raw, MiB - SECTOR, SECTOR)), pattern(2));
  // convert -n opens the target read-write: both tools replay, then write the source over it.
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'raw', 'src.raw', '64M']);
  qemuIo(dir, 'raw', 'src.raw', ['write -P 0x66 3M 1M']);
  const targets = [join(dir, 'n-theirs.vhdx'), join(dir, 'n-ours.vhdx')] as const;
  for (const target of targets) copyFileSync(path, target);
  assert.equal(qemuImg(['convert', '-n', '-f', 'raw', '-O', 'vhdx', join(dir, 'src.raw'), targets[0]]).status, 0);
  const n = await vmimg(['convert', '-n', '-f', 'raw', '-O', 'vhdx', join(dir, 'src.raw'), targets[1]]);
  assert.equal(n.status, 0, n.stderr);
  assert.equal(qemuImg(['compare', '-f', 'vhdx', '-F', 'vhdx', targets[0], targets[1]]).status, 0);
  assert.equal(qemuImg(['compare', '-f', 'raw', '-F', 'vhdx', join(dir, 'src.raw'), targets[1]]).status, 0);
  assert.equal(qemuImg(['check', '-f', 'vhdx', targets[1]]).status, 0);
  assert.deepEqual([...(await factsOf(targets[1])).header.logGuid], new Array(16).fill(0));
  // JSON output of the repairing check, on a fresh copy.
  const copy = join(dir, 'json.vhdx');
  copyFileSync(path, copy);
  const q = qemuImg(['check', '-r', 'all', '--output=json', copy]);
  copyFileSync(path, copy);
  const v = await vmimg(['check', '-r', 'all', '--output=json', copy]);
  assert.equal(v.stdout, q.stdout);
  assert.equal(v.status, q.status);
});

test('the active sequence is chosen as qemu-img chooses it (highest first sequence number, wrapping)', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t, 'vmimg-vhdx-logseq-');
  const { path, f, block0 } = await baseImage(dir);
  const length = statSync(path).size;
  const sectors = f.header.logLength / SECTOR;
  const one = (seq: bigint, k: number): Uint8Array => encodeEntry({ seq, flushed: length, last: length, descs: [{ at: block0 + k * SECTOR, data: pattern(k) }] });
  const clean = join(dir, 'clean.vhdx');
  copyFileSync(path, clean);
  writeEntry(path, f, 10, one(3n, 3));
  writeEntry(path, f, 12, one(4n, 4));
  writeEntry(path, f, sectors - 2, one(9n, 9)); // the last two sectors
  writeEntry(path, f, 0, one(10n, 10)); // continues it from sector 0
  writeEntry(path, f, 40, one(7n, 7));
  writeEntry(path, f, 43, one(8n, 8)); // a gap: not part of 7's run
  setLogGuid(path, GUID);
  const ours = await replayBoth(dir, path);
  const raw = join(dir, 'raw');
  sh(dir, 'qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', ours, raw]);
  const applied = [3, 4, 7, 8, 9, 10].filter((k) => Buffer.from(pattern(k)).equals(readRange(raw, k * SECTOR, SECTOR)));
  // The search finds the run 10 (from sector 0), 3-4 and 9-10 (from the last two sectors, wrapping);
  // QEMU keeps the run whose FIRST entry has the highest sequence number: 10 alone, not 9-10.
  assert.deepEqual(applied, [10]);

  // One entry wrapping around the end of the log (its descriptor sector last, its data first).
  const wrap = encodeEntry({ seq: 21n, flushed: length, last: length, descs: [{ at: block0 + 20 * SECTOR, data: pattern(20) }, { at: block0 + 22 * SECTOR, data: pattern(22) }] });
  writeEntry(clean, f, sectors - 1, wrap);
  setLogGuid(clean, GUID);
  const wrapped = await replayBoth(dir, clean);
  sh(dir, 'qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', wrapped, raw]);
  assert.deepEqual(new Uint8Array(readRange(raw, 22 * SECTOR, SECTOR)), pattern(22));
});

test('a log GUID over a log without valid entries opens like qemu-img opens it', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t, 'vmimg-vhdx-logempty-');
  const { path, f } = await baseImage(dir);
  // An entry for another log GUID, and one whose checksum is wrong: neither counts.
  const other = encodeEntry({ seq: 2n, flushed: 0, last: 0, descs: [{ at: 4 * MiB, zero: SECTOR }] });
  other.set(Uint8Array.from({ length: 16 }, () => 0x55), 32);
  writeEntry(path, f, 0, other);
  const bad = encodeEntry({ seq: 3n, flushed: 0, last: 0, descs: [{ at: 4 * MiB, zero: SECTOR }] });
  bad[100] = bad[100]! ^ 1;
  writeEntry(path, f, 5, bad);
  setLogGuid(path, GUID);
  const before = sha(path);
  await sameInfo(path, 'vhdx');
  const r = await vmimg(['check', path]);
  assert.equal(r.status, qemuImg(['check', path]).status);
  assert.equal(sha(path), before);
  // Writing would need a BAT update through that log: refused (QEMU: ENOTSUP), file untouched.
  const src = join(dir, 'src.raw');
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'raw', 'src.raw', '64M']);
  qemuIo(dir, 'raw', 'src.raw', ['write -P 0x77 20M 1M']);
  const w = await vmimg(['convert', '-n', '-f', 'raw', '-O', 'vhdx', src, path]);
  assert.notEqual(w.status, 0);
  assert.match(w.stderr, /nothing to replay.*\[UNSUPPORTED_IMAGE\]/);
  assert.equal(sha(path), before);
});

test('hostile logs fail by name before any byte of the file changes', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t, 'vmimg-vhdx-loghostile-');
  const { path, f, block0 } = await baseImage(dir);
  const length = statSync(path).size;
  const cases: Array<[string, Entry, RegExp]> = [
    ['write past the last offset', { seq: 4n, flushed: length, last: length, descs: [{ at: block0, data: pattern(1) }, { at: 2 ** 40, data: pattern(2) }] }, /descriptor 1 writes 1099511627776\.\.1099511631872, past the file's last offset/],
    ['zeroes petabytes', { seq: 4n, flushed: length, last: length, descs: [{ at: block0, zero: 2 ** 50 }] }, /descriptor 0 writes .* past the file's last offset/],
    ['writes into the log', { seq: 4n, flushed: length, last: length, descs: [{ at: Number(f.header.logOffset) + 8 * SECTOR, data: pattern(1) }] }, /inside the log itself/],
    ['flushed past the end', { seq: 4n, flushed: length + MiB, last: length + MiB, descs: [{ at: block0, data: pattern(1) }] }, /flushed up to \d+, but it is \d+ bytes long/],
  ];
  for (const [name, entry, message] of cases) {
    const copy = join(dir, 'hostile.vhdx');
    copyFileSync(path, copy);
    const f2 = await factsOf(copy);
    writeEntry(copy, f2, 0, encodeEntry(entry));
    setLogGuid(copy, GUID);
    const before = sha(copy);
    const r = await vmimg(['check', '-r', 'all', copy]);
    assert.equal(r.status, 1, name);
    assert.match(r.stderr, message, name);
    assert.match(r.stderr, /\[CORRUPT_IMAGE\]/, name);
    assert.equal(sha(copy), before, `${name}: the file is unchanged`);
  }
  // A data sector whose sequence number differs from its descriptor's: qemu-img refuses too.
  const copy = join(dir, 'seq.vhdx');
  copyFileSync(path, copy);
  const e = encodeEntry({ seq: 4n, flushed: length, last: length, descs: [{ at: block0, data: pattern(1) }] });
  e[2 * SECTOR - 4] = e[2 * SECTOR - 4]! ^ 1; // SequenceLow of the data sector
  new DataView(e.buffer).setUint32(4, 0, true);
  new DataView(e.buffer).setUint32(4, crc32c(e), true);
  writeEntry(copy, f, 0, e);
  setLogGuid(copy, GUID);
  const before = sha(copy);
  const second = join(dir, 'seq2.vhdx');
  copyFileSync(copy, second);
  assert.equal(qemuImg(['check', '-r', 'all', second]).status, 1);
  const r = await vmimg(['check', '-r', 'all', copy]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /the data sector of descriptor 0 has sequence number 5 \[CORRUPT_IMAGE\]/);
  assert.equal(sha(copy), before);
});

test('seeded damage to a dirty log: replay succeeds or fails with a VmimgError, never hangs or escapes', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t, 'vmimg-vhdx-logfuzz-');
  const { path, f, block0 } = await baseImage(dir);
  const length = statSync(path).size;
  const entry = encodeEntry({
    seq: 6n,
    flushed: length,
    last: length + MiB - SECTOR,
    descs: [{ at: block0, data: pattern(1) }, { at: block0 + 4 * SECTOR, zero: 3 * SECTOR }, { at: length, data: pattern(2) }],
  });
  writeEntry(path, f, 0, entry);
  setLogGuid(path, GUID);
  const dirty = new Uint8Array(readFileSync(path));
  const logAt = Number(f.header.logOffset);
  let seed = 0x2545f491;
  const rnd = (n: number): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
  const outcomes = { replayed: 0, refused: 0 };
  for (let i = 0; i < 300; i++) {
    const bytes = dirty.slice();
    for (let k = 1 + rnd(4); k > 0; k--) {
      const at = logAt + rnd(entry.length);
      bytes[at] = rnd(3) === 0 ? 0xff : bytes[at]! ^ (1 << rnd(8));
    }
    // Fix the CRC half the time, so damage reaches the descriptors and data, not just the checksum.
    if (i % 2 === 0) {
      const e = bytes.subarray(logAt, logAt + entry.length);
      new DataView(e.buffer, e.byteOffset).setUint32(4, 0, true);
      new DataView(e.buffer, e.byteOffset).setUint32(4, crc32c(e), true);
    }
    try {
      const { image } = await openImageFromStorage(new MemoryStorage(bytes, { writable: true, name: `case-${i}` }), `case-${i}`, { format: 'vhdx', policy: DENY_ALL, writable: true });
      await image.map(0, image.virtualSize);
      await image.close();
      outcomes.replayed++;
    } catch (e) {
      assert.ok(isVmimgError(e), `case ${i}: ${String(e)}`);
      outcomes.refused++;
    }
  }
  assert.ok(outcomes.replayed > 0 && outcomes.refused > 0, JSON.stringify(outcomes));
});
