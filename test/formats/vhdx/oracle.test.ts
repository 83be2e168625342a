/**
 * vhdx create against qemu-img 7.2. For every matrix case both tools create the image side by
 * side and: the Formatting lines are equal; the files are equal except the creator string, the
 * headers' sequence number, GUIDs and checksums, and the page 83 GUID; recreated with qemu-img's
 * sequence number and GUIDs as its randomness, vmimg's file differs from qemu-img's in the
 * creator string alone; `qemu-img check` finds no errors in vmimg's file; `qemu-img info` agrees
 * (and with vmimg's readHeader); and data qemu-io writes into both reads back the same.
 * Also: rejected inputs, the fixed-disk case qemu-img cannot reopen, and readHeader against
 * qemu-img info on poked images.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { vhdxDriver } from '../../../src/formats/vhdx/driver.js';
import { BAT_REGION_GUID, METADATA_REGION_GUID, parseGuid } from '../../../src/formats/vhdx/guid.js';
import {
  CREATOR_BYTES,
  CREATOR_OFFSET,
  decodeHeader,
  decodeRegionEntry,
  encodeHeader,
  encodeRegionTable,
  HEADER1_OFFSET,
  HEADER2_OFFSET,
  REGION_TABLE1_OFFSET,
  REGION_TABLE2_OFFSET,
  type RegionTableEntry,
  type VhdxHeader,
} from '../../../src/formats/vhdx/structs.js';
import { vhdxChecksum } from '../../../src/formats/vhdx/crc32c.js';
import { createImage } from '../../../src/ops/create.js';
import { FileStorage } from '../../../src/storage/file.js';
import { VmimgError } from '../../../src/util/errors.js';
import { createPair } from '../../helpers/create.js';
import { oracle, qemuImg, qemuInfo, tempDir } from '../../helpers/oracle.js';
import { diffFiles, replayRandom, roundTrip } from '../vpc/support.js';
import { vhdxMatrix } from './matrix.js';

const INFO_FIELDS = ['virtual-size', 'cluster-size', 'format', 'dirty-flag'];
const MiB = 1 << 20;
const CREATOR_MASK: [number, number] = [CREATOR_OFFSET, CREATOR_BYTES];

function infoFields(path: string): Record<string, unknown> {
  const info = qemuInfo(path, 'vhdx');
  return Object.fromEntries(INFO_FIELDS.map((k) => [k, info[k]]));
}

async function readAt(path: string, offset: number, length: number): Promise<Uint8Array> {
  const s = await FileStorage.open(path);
  try {
    return await s.read(offset, length);
  } finally {
    await s.close();
  }
}

async function readHeaderOf(path: string) {
  const storage = await FileStorage.open(path);
  try {
    return await vhdxDriver.readHeader(storage);
  } catch (e) {
    return e as VmimgError;
  } finally {
    await storage.close();
  }
}

/** The random values in a qemu-img vhdx file, in the order vmimg draws them. */
async function randomnessOf(path: string): Promise<{ chunks: Uint8Array[]; page83At: number }> {
  const h1 = await readAt(path, HEADER1_OFFSET, 80);
  const rt = await readAt(path, REGION_TABLE1_OFFSET, 16 + 64);
  const metadata = decodeRegionEntry(rt, 1);
  const page83At = Number(metadata.fileOffset) + 64 * 1024 + 16;
  return { chunks: [h1.slice(8, 12), h1.slice(16, 32), h1.slice(32, 48), await readAt(path, page83At, 16)], page83At };
}

test('vhdx create matrix: qemu-img\'s layout and tables, check clean, same info, same data after writes', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t, 'vmimg-vhdx-');
  const cases = vhdxMatrix();
  assert.ok(cases.length >= 60, `matrix has ${cases.length} cases`);
  let n = 0;
  let roundTrips = 0;
  for (const c of cases) {
    const label = JSON.stringify(c);
    const caseDir = join(dir, String(n++));
    mkdirSync(caseDir);
    const pair = await createPair(caseDir, { format: 'vhdx', name: 't.vhdx', size: c.size, options: c.options });
    assert.equal(pair.formatting, pair.qemu.stdout.trimEnd(), label);

    const { chunks, page83At } = await randomnessOf(pair.theirs);
    const masks: Array<[number, number]> = [CREATOR_MASK, [HEADER1_OFFSET + 4, 44], [HEADER2_OFFSET + 4, 44], [page83At, 16]];
    assert.equal(await diffFiles(pair.theirs, pair.ours, masks), undefined, label);

    const again = join(caseDir, 'r');
    mkdirSync(again);
    await createImage({ filename: join(again, 't.vhdx'), format: 'vhdx', size: c.size, optionStrings: c.options, random: replayRandom(chunks) });
    assert.equal(await diffFiles(pair.theirs, join(again, 't.vhdx'), [CREATOR_MASK]), undefined, `${label} (replayed randomness)`);

    const check = qemuImg(['check', '-f', 'vhdx', pair.ours]);
    assert.equal(check.status, 0, `${label}: ${check.stdout}${check.stderr}`);
    assert.match(check.stdout, /No errors were found on the image\./, label);
    const theirInfo = infoFields(pair.theirs);
    assert.deepEqual(infoFields(pair.ours), theirInfo, label);
    assert.equal(BigInt(theirInfo['virtual-size'] as number), pair.result.virtualSize, label);
    assert.equal(theirInfo['cluster-size'], pair.result.clusterSize, label);
    for (const path of [pair.ours, pair.theirs]) {
      const facts = await readHeaderOf(path);
      assert.ok(!(facts instanceof VmimgError), `${label}: ${String(facts)}`);
      assert.equal(facts.virtualSize, pair.result.virtualSize, label);
    }

    const size = Number(pair.result.virtualSize);
    if (size >= 4096) {
      // A first write to a block makes qemu-img zero all of it: keep writes few with big blocks.
      const writes = (pair.result.clusterSize ?? 0) >= 32 * MiB ? 1 : 3;
      assert.equal(roundTrip('vhdx', pair.theirs, pair.ours, size, writes), undefined, label);
      const after = qemuImg(['check', '-f', 'vhdx', pair.ours]);
      assert.equal(after.status, 0, `${label} after writes: ${after.stdout}${after.stderr}`);
      roundTrips++;
    }
  }
  assert.ok(roundTrips >= 55, `${roundTrips} round trips`);
});

const REJECTED: Array<{ options: string[]; size: string; code: string; mentions: string }> = [
  { options: [], size: '65T', code: 'SIZE_OUT_OF_RANGE', mentions: 'max of 64TB' },
  { options: [], size: '70368744177665', code: 'SIZE_OUT_OF_RANGE', mentions: 'max of 64TB' },
  { options: ['subformat=fixed'], size: '1P', code: 'SIZE_OUT_OF_RANGE', mentions: 'max of 64TB' },
  { options: ['block_size=3M'], size: '1G', code: 'INVALID_OPTION', mentions: 'power of two' },
  { options: ['block_size=100M'], size: '1G', code: 'INVALID_OPTION', mentions: 'power of two' },
  { options: ['block_size=5242879'], size: '1G', code: 'INVALID_OPTION', mentions: 'power of two' },
  { options: ['log_size=0'], size: '1G', code: 'INVALID_OPTION', mentions: 'multiple of 1 MB' },
  { options: ['log_size=18446744073709551615'], size: '1G', code: 'INVALID_OPTION', mentions: 'multiple of 1 MB' },
  { options: ['log_size=4G'], size: '1G', code: 'INVALID_OPTION', mentions: 'smaller than 4 GB' },
  { options: ['log_size=4294967295'], size: '1G', code: 'INVALID_OPTION', mentions: 'smaller than 4 GB' },
  { options: ['subformat=foo'], size: '1G', code: 'INVALID_OPTION', mentions: "'foo'" },
  { options: ['subformat=Dynamic'], size: '1G', code: 'INVALID_OPTION', mentions: "'Dynamic'" },
  { options: ['block_state_zero=foo'], size: '1G', code: 'INVALID_OPTION', mentions: 'block_state_zero' },
  { options: ['block_size=x'], size: '1G', code: 'INVALID_OPTION', mentions: 'block_size' },
  { options: ['cluster_size=64k'], size: '1G', code: 'UNKNOWN_OPTION', mentions: 'cluster_size' },
];

test('vhdx create rejects what qemu-img rejects, with stable codes', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-vhdx-');
  for (const r of REJECTED) {
    const label = JSON.stringify(r);
    const q = qemuImg(['create', '-f', 'vhdx', ...r.options.flatMap((o) => ['-o', o]), 'q.vhdx', r.size], dir);
    assert.notEqual(q.status, 0, `qemu-img accepted ${label}`);
    await assert.rejects(
      createImage({ filename: join(dir, 'v.vhdx'), format: 'vhdx', size: r.size, optionStrings: r.options }),
      (e: unknown) => e instanceof VmimgError && e.code === r.code && e.message.includes(r.mentions),
      label,
    );
  }
});

test('a fixed disk qemu-img 7.2 cannot reopen (offsets, > chunk-ratio blocks, short last block): vmimg pads it to whole blocks', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-vhdx-');
  const options = ['subformat=fixed,block_state_zero=off'];
  const pair = await createPair(dir, { format: 'vhdx', name: 'p.vhdx', size: '4097M', options });
  const theirs = qemuImg(['check', '-f', 'vhdx', pair.theirs]);
  assert.equal(theirs.status, 2, theirs.stdout + theirs.stderr);
  assert.match(theirs.stderr, /points after end of file/);
  const ourFacts = await readHeaderOf(pair.theirs);
  assert.ok(ourFacts instanceof VmimgError && ourFacts.code === 'CORRUPT_IMAGE' && /points after end of file/.test(ourFacts.message), String(ourFacts));

  const ours = qemuImg(['check', '-f', 'vhdx', pair.ours]);
  assert.equal(ours.status, 0, ours.stdout + ours.stderr);
  assert.deepEqual(infoFields(pair.ours), { 'virtual-size': 4097 * MiB, 'cluster-size': 16 * MiB, format: 'vhdx', 'dirty-flag': false });
  const theirLength = statSync(pair.theirs).size;
  assert.equal(pair.result.fileLength, theirLength + 15 * MiB, 'the last 16 MiB block is whole');
  // Everything qemu-img wrote is the same, the padding is a hole.
  const { chunks } = await randomnessOf(pair.theirs);
  mkdirSync(join(dir, 'r'));
  const again = join(dir, 'r', 'p.vhdx');
  await createImage({ filename: again, format: 'vhdx', size: '4097M', optionStrings: options, random: replayRandom(chunks) });
  const s = await FileStorage.open(again, { writable: true });
  await s.truncate(theirLength);
  await s.close();
  assert.equal(await diffFiles(pair.theirs, again, [CREATOR_MASK]), undefined);
});

interface Poke {
  name: string;
  change: (img: Uint8Array) => Uint8Array | void;
  /** qemu-img's message when it refuses, and vmimg's code then. */
  qemu?: string;
  code?: string;
}

const v = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

function header(img: Uint8Array, at: number, change: (h: VhdxHeader) => VhdxHeader): void {
  img.set(encodeHeader(change(decodeHeader(img.subarray(at, at + 4096)))), at);
}

/** Rewrites region table 1 (optionally claiming `count` entries), with a valid checksum. */
function regions(img: Uint8Array, entries: RegionTableEntry[], count?: number): void {
  const table = encodeRegionTable(entries);
  if (count !== undefined) {
    v(table).setUint32(8, count, true);
    v(table).setUint32(4, vhdxChecksum(table, 4), true);
  }
  img.set(table, REGION_TABLE1_OFFSET);
}

const BAT: RegionTableEntry = { guid: BAT_REGION_GUID, fileOffset: 2n * BigInt(MiB), length: MiB, flags: 0 };
const META: RegionTableEntry = { guid: METADATA_REGION_GUID, fileOffset: 3n * BigInt(MiB), length: MiB, flags: 0 };
const OTHER = parseGuid('01234567-89ab-cdef-0123-456789abcdef');
const META_AT = 3 * MiB;

const POKES: Poke[] = [
  { name: 'pristine', change: () => undefined },
  { name: 'header1-checksum', change: (b) => void (b[HEADER1_OFFSET + 200] = 1) },
  { name: 'header2-checksum', change: (b) => void (b[HEADER2_OFFSET + 200] = 1) },
  { name: 'both-checksums', change: (b) => void ((b[HEADER1_OFFSET + 200] = 1), (b[HEADER2_OFFSET + 200] = 1)), qemu: 'No valid VHDX header found', code: 'CORRUPT_IMAGE' },
  { name: 'header2-version-2', change: (b) => header(b, HEADER2_OFFSET, (h) => ({ ...h, version: 2 })) },
  { name: 'both-versions-2', change: (b) => (header(b, HEADER1_OFFSET, (h) => ({ ...h, version: 2 })), header(b, HEADER2_OFFSET, (h) => ({ ...h, version: 2 }))), qemu: 'No valid VHDX header found', code: 'CORRUPT_IMAGE' },
  { name: 'equal-seq-identical', change: (b) => void b.copyWithin(HEADER2_OFFSET, HEADER1_OFFSET, HEADER1_OFFSET + 4096) },
  { name: 'equal-seq-different', change: (b) => header(b, HEADER2_OFFSET, (h) => ({ ...h, sequenceNumber: h.sequenceNumber - 1n, logLength: 2 * MiB })), qemu: 'No valid VHDX header found', code: 'CORRUPT_IMAGE' },
  { name: 'older-header-bad-log', change: (b) => header(b, HEADER1_OFFSET, (h) => ({ ...h, logOffset: 12345n })) },
  { name: 'log-offset-unaligned', change: (b) => header(b, HEADER2_OFFSET, (h) => ({ ...h, logOffset: 12345n })), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'log-version-1', change: (b) => header(b, HEADER2_OFFSET, (h) => ({ ...h, logVersion: 1 })), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'log-guid-no-length', change: (b) => header(b, HEADER2_OFFSET, (h) => ({ ...h, logGuid: OTHER, logLength: 0 })) },
  { name: 'log-guid-bad-length', change: (b) => header(b, HEADER2_OFFSET, (h) => ({ ...h, logGuid: OTHER, logLength: 12345 })), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  // A log GUID over a log with no valid entry: nothing to replay, both open it.
  { name: 'log-guid-empty-log', change: (b) => header(b, HEADER2_OFFSET, (h) => ({ ...h, logGuid: OTHER })) },
  { name: 'region-checksum', change: (b) => void (b[REGION_TABLE1_OFFSET + 300] = 1), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'region2-checksum', change: (b) => void (b[REGION_TABLE2_OFFSET + 300] = 1) },
  { name: 'region-no-metadata', change: (b) => regions(b, [BAT]), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'region-two-bats', change: (b) => regions(b, [BAT, META, { ...BAT, fileOffset: 5n * BigInt(MiB) }]), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'region-overlap', change: (b) => regions(b, [{ ...BAT, length: 2 * MiB }, META]), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'region-overlaps-log', change: (b) => regions(b, [{ ...BAT, fileOffset: BigInt(MiB) }, META]), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'region-unknown-optional', change: (b) => regions(b, [BAT, META, { guid: OTHER, fileOffset: 6n * BigInt(MiB), length: MiB, flags: 0 }]) },
  { name: 'region-unknown-required', change: (b) => regions(b, [BAT, META, { guid: OTHER, fileOffset: 6n * BigInt(MiB), length: MiB, flags: 1 }]), qemu: 'Operation not supported', code: 'UNSUPPORTED_IMAGE' },
  { name: 'region-required-bits', change: (b) => regions(b, [{ ...BAT, flags: 1 }, { ...META, flags: 1 }]) },
  { name: 'region-count-2047', change: (b) => regions(b, [BAT, META], 2047) },
  { name: 'region-count-2048', change: (b) => regions(b, [BAT, META], 2048), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'metadata-signature', change: (b) => void (b[META_AT] = 0x4d), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'metadata-count-2048', change: (b) => v(b).setUint16(META_AT + 10, 2048, true), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'metadata-missing-page83', change: (b) => v(b).setUint16(META_AT + 10, 2, true), qemu: 'Operation not supported', code: 'UNSUPPORTED_IMAGE' },
  { name: 'metadata-unknown-required', change: (b) => (v(b).setUint16(META_AT + 10, 6, true), b.set(OTHER, META_AT + 32 + 5 * 32), v(b).setUint32(META_AT + 32 + 5 * 32 + 24, 4, true)), qemu: 'Operation not supported', code: 'UNSUPPORTED_IMAGE' },
  { name: 'metadata-unknown-optional', change: (b) => (v(b).setUint16(META_AT + 10, 6, true), b.set(OTHER, META_AT + 32 + 5 * 32)) },
  { name: 'metadata-duplicate', change: (b) => (v(b).setUint16(META_AT + 10, 6, true), b.copyWithin(META_AT + 32 + 5 * 32, META_AT + 32, META_AT + 64)), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'logical-sector-4096', change: (b) => v(b).setUint32(META_AT + 0x10020, 4096, true), qemu: 'Operation not supported', code: 'UNSUPPORTED_IMAGE' },
  { name: 'physical-sector-4096', change: (b) => v(b).setUint32(META_AT + 0x10024, 4096, true) },
  { name: 'block-size-3M', change: (b) => v(b).setUint32(META_AT + 0x10000, 3 * MiB, true), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'block-size-512k', change: (b) => v(b).setUint32(META_AT + 0x10000, 512 * 1024, true), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'block-size-512M', change: (b) => v(b).setUint32(META_AT + 0x10000, 512 * MiB, true), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'block-size-1M', change: (b) => v(b).setUint32(META_AT + 0x10000, MiB, true) },
  { name: 'has-parent', change: (b) => v(b).setUint32(META_AT + 0x10004, 2, true), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'leave-allocated', change: (b) => v(b).setUint32(META_AT + 0x10004, 1, true) },
  { name: 'size-100G', change: (b) => v(b).setBigUint64(META_AT + 0x10008, 100n << 30n, true) },
  {
    name: 'size-65T-beyond-spec',
    change: (b) => {
      // A 3 MiB BAT region (metadata moved to 5 MiB) holds the entries of 65 TiB in 256 MiB blocks.
      b.copyWithin(5 * MiB, META_AT, META_AT + MiB);
      b.fill(0, META_AT, META_AT + MiB);
      regions(b, [{ ...BAT, length: 3 * MiB }, { ...META, fileOffset: 5n * BigInt(MiB) }]);
      v(b).setBigUint64(5 * MiB + 0x10008, 65n << 40n, true);
      v(b).setUint32(5 * MiB + 0x10000, 256 * MiB, true);
    },
  },
  { name: 'size-2^52-block-count-wraps', change: (b) => (v(b).setBigUint64(META_AT + 0x10008, 1n << 52n, true), v(b).setUint32(META_AT + 0x10000, MiB, true)), qemu: 'Invalid argument', code: 'UNSUPPORTED_IMAGE' },
  { name: 'size-unaligned', change: (b) => v(b).setBigUint64(META_AT + 0x10008, (64n << 20n) + 1000n, true) },
  { name: 'size-2T-bat-too-small', change: (b) => v(b).setBigUint64(META_AT + 0x10008, 2n << 40n, true), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'size-0-bat-too-small', change: (b) => v(b).setBigUint64(META_AT + 0x10008, 0n, true), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'bat-block-past-eof', change: (b) => v(b).setBigUint64(2 * MiB, (100n << 20n) | 6n, true), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'bat-block-end-past-eof', change: (b) => v(b).setBigUint64(2 * MiB, (7n << 20n) | 6n, true), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'bat-block-inside', change: (b) => (v(b).setBigUint64(2 * MiB, (8n << 20n) | 6n, true), extend(b, 16 * MiB)) },
  { name: 'bat-block-over-metadata', change: (b) => (v(b).setBigUint64(2 * MiB, (3n << 20n) | 6n, true), extend(b, 16 * MiB)), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
  { name: 'bat-undefined-states', change: (b) => (v(b).setBigUint64(2 * MiB, 1n, true), v(b).setBigUint64(2 * MiB + 8, 7n, true), v(b).setBigUint64(2 * MiB + 16, (1n << 40n) | 3n, true)) },
  { name: 'truncated-to-4M', change: (b) => b.slice(0, 4 * MiB) },
  { name: 'signature', change: (b) => void (b[7] = 0x46), qemu: 'Invalid argument', code: 'CORRUPT_IMAGE' },
];

function extend(b: Uint8Array, length: number): Uint8Array {
  const out = new Uint8Array(Math.max(length, b.length));
  out.set(b);
  return out;
}

test('vhdx readHeader accepts, sizes and rejects exactly what qemu-img info does', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-vhdx-');
  const base = join(dir, 'base.vhdx');
  assert.equal(qemuImg(['create', '-q', '-f', 'vhdx', base, '64M']).status, 0);
  for (const poke of POKES) {
    const path = join(dir, `${poke.name}.vhdx`);
    const img = new Uint8Array(readFileSync(base));
    writeFileSync(path, poke.change(img) ?? img);
    const info = qemuImg(['info', '--output=json', '-f', 'vhdx', path]);
    const ours = await readHeaderOf(path);
    if (info.status === 0) {
      assert.equal(poke.qemu, undefined, `${poke.name}: qemu-img opens it`);
      assert.ok(!(ours instanceof VmimgError), `${poke.name}: ${String(ours)}`);
      assert.equal(ours.virtualSize, BigInt((JSON.parse(info.stdout) as { 'virtual-size': number })['virtual-size']), poke.name);
    } else {
      assert.ok(poke.qemu !== undefined && info.stderr.includes(poke.qemu), `${poke.name}: qemu-img says ${info.stderr}`);
      assert.ok(ours instanceof VmimgError && ours.code === poke.code, `${poke.name}: ${String(ours)}`);
      if (poke.qemu === 'No valid VHDX header found') assert.ok(ours.message.endsWith(poke.qemu), ours.message);
    }
  }
});
