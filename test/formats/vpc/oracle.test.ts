/**
 * vpc create against qemu-img 7.2. For every matrix case both tools create the image side by side
 * and: the Formatting lines are equal; the files are equal except the footer's timestamp, UUID
 * and checksum; recreated with qemu-img's timestamp and UUID, vmimg's file equals qemu-img's
 * exactly; `qemu-img info` agrees (and with vmimg's own readHeader); `qemu-img check` has nothing
 * to say about vpc (exit 63) for either; and data qemu-io writes into both reads back the same.
 * Also: what qemu-img rejects is rejected with stable codes, and readHeader accepts and sizes
 * exactly the (poked) images qemu-img info opens.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { decodeFooter, encodeFooter, FOOTER_SIZE, vhdTimestamp, VHD_EPOCH_UNIX_SECONDS, type VhdFooter } from '../../../src/formats/vpc/footer.js';
import { vpcDriver } from '../../../src/formats/vpc/driver.js';
import { createImage } from '../../../src/ops/create.js';
import { FileStorage } from '../../../src/storage/file.js';
import { VmimgError } from '../../../src/util/errors.js';
import { createPair } from '../../helpers/create.js';
import { oracle, qemuImg, qemuInfo, tempDir } from '../../helpers/oracle.js';
import { vpcMatrix } from './matrix.js';
import { diffFiles, replayRandom, roundTrip } from './support.js';

const INFO_FIELDS = ['virtual-size', 'cluster-size', 'format', 'dirty-flag'];

function infoFields(path: string): Record<string, unknown> {
  const info = qemuInfo(path, 'vpc');
  return Object.fromEntries(INFO_FIELDS.map((k) => [k, info[k]]));
}

async function readHeaderOf(path: string) {
  const storage = await FileStorage.open(path);
  try {
    return await vpcDriver.readHeader(storage);
  } catch (e) {
    return e as VmimgError;
  } finally {
    await storage.close();
  }
}

/** Footer offsets in a file of `length` bytes: the copy at 0 (dynamic) and the one at the end. */
async function footerOffsets(path: string, length: number): Promise<number[]> {
  const atZero = (await footerAt(path, 0)).cookie === 'conectix';
  return atZero ? [0, length - FOOTER_SIZE] : [length - FOOTER_SIZE];
}

async function footerAt(path: string, offset: number): Promise<VhdFooter> {
  const s = await FileStorage.open(path);
  try {
    return decodeFooter(await s.read(offset, FOOTER_SIZE));
  } finally {
    await s.close();
  }
}

test('vpc create matrix: same bytes as qemu-img but for timestamp/UUID/checksum, same info, same data after writes', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t, 'vmimg-vpc-');
  const cases = vpcMatrix();
  assert.ok(cases.length >= 70, `matrix has ${cases.length} cases`);
  let n = 0;
  let roundTrips = 0;
  for (const c of cases) {
    const label = JSON.stringify(c);
    const caseDir = join(dir, String(n++));
    mkdirSync(caseDir);
    const pair = await createPair(caseDir, { format: 'vpc', name: 't.vhd', size: c.size, options: c.options });
    assert.equal(pair.formatting, pair.qemu.stdout.trimEnd(), label);
    const length = statSync(pair.theirs).size;
    assert.equal(pair.result.fileLength, length, label);

    const offsets = await footerOffsets(pair.theirs, length);
    const masks = offsets.flatMap((o): Array<[number, number]> => [
      [o + 24, 4],
      [o + 64, 20],
    ]);
    assert.equal(await diffFiles(pair.theirs, pair.ours, masks), undefined, label);

    // With qemu-img's timestamp and UUID as its clock and randomness, vmimg writes the same file.
    const theirFooter = await footerAt(pair.theirs, length - FOOTER_SIZE);
    const again = join(caseDir, 'r');
    mkdirSync(again);
    await createImage({
      filename: join(again, 't.vhd'),
      format: 'vpc',
      size: c.size,
      optionStrings: c.options,
      now: () => (theirFooter.timestamp + VHD_EPOCH_UNIX_SECONDS) * 1000 + 999,
      random: replayRandom([theirFooter.uuid]),
    });
    assert.equal(await diffFiles(pair.theirs, join(again, 't.vhd')), undefined, `${label} (replayed randomness)`);

    // QEMU's file creation writes zeros over the first block: the allocation, so the map, is the same.
    assert.equal(qemuImg(['map', '--output=json', '-f', 'vpc', pair.ours]).stdout, qemuImg(['map', '--output=json', '-f', 'vpc', pair.theirs]).stdout, label);
    const theirInfo = infoFields(pair.theirs);
    assert.deepEqual(infoFields(pair.ours), theirInfo, label);
    assert.equal(BigInt(theirInfo['virtual-size'] as number), pair.result.virtualSize, label);
    const ours = await readHeaderOf(pair.ours);
    assert.ok(!(ours instanceof VmimgError), `${label}: ${String(ours)}`);
    assert.equal(ours.virtualSize, pair.result.virtualSize, label);

    const check = qemuImg(['check', '-f', 'vpc', pair.ours]);
    assert.equal(check.status, 63, `${label}: ${check.stderr}`);
    assert.match(check.stderr, /does not support checks/);

    const size = Number(pair.result.virtualSize);
    if (size >= 4096) {
      assert.equal(roundTrip('vpc', pair.theirs, pair.ours, size), undefined, label);
      roundTrips++;
    }
  }
  assert.ok(roundTrips >= 60, `${roundTrips} round trips`);
});

/** Inputs qemu-img 7.2 rejects, with the code vmimg must give. */
const REJECTED: Array<{ options: string[]; size: string; code: string; mentions: string }> = [
  { options: [], size: '2190433321472', code: 'SIZE_OUT_OF_RANGE', mentions: 'too large' },
  { options: [], size: '2190433320961', code: 'SIZE_OUT_OF_RANGE', mentions: 'too large' },
  { options: ['subformat=fixed'], size: '2190433320961', code: 'SIZE_OUT_OF_RANGE', mentions: 'too large' },
  { options: ['force_size=on'], size: '2190433320961', code: 'SIZE_OUT_OF_RANGE', mentions: 'too large' },
  { options: ['subformat=fixed,force_size=on'], size: '3T', code: 'SIZE_OUT_OF_RANGE', mentions: 'too large' },
  { options: [], size: '3T', code: 'SIZE_OUT_OF_RANGE', mentions: 'too large' },
  { options: [], size: '8E', code: 'SIZE_OUT_OF_RANGE', mentions: '' },
  { options: ['subformat=foo'], size: '1G', code: 'INVALID_OPTION', mentions: "'foo'" },
  { options: ['subformat=Fixed'], size: '1G', code: 'INVALID_OPTION', mentions: "'Fixed'" },
  { options: ['subformat='], size: '1G', code: 'INVALID_OPTION', mentions: "''" },
  { options: ['force_size=maybe'], size: '1G', code: 'INVALID_OPTION', mentions: 'force_size' },
  { options: ['bogus=1'], size: '1G', code: 'UNKNOWN_OPTION', mentions: 'bogus' },
];

test('vpc create rejects what qemu-img rejects, with stable codes', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-vpc-');
  for (const r of REJECTED) {
    const label = JSON.stringify(r);
    const q = qemuImg(['create', '-f', 'vpc', ...r.options.flatMap((o) => ['-o', o]), 'q.vhd', r.size], dir);
    assert.notEqual(q.status, 0, `qemu-img accepted ${label}`);
    await assert.rejects(
      createImage({ filename: join(dir, 'v.vhd'), format: 'vpc', size: r.size, optionStrings: r.options }),
      (e: unknown) => e instanceof VmimgError && e.code === r.code && e.message.includes(r.mentions),
      label,
    );
  }
});

test('an empty fixed VHD: qemu-img writes a file it cannot open, vmimg refuses to write it', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-vpc-');
  assert.equal(qemuImg(['create', '-q', '-f', 'vpc', '-o', 'subformat=fixed', 'q.vhd', '0'], dir).status, 0);
  const info = qemuImg(['info', '-f', 'vpc', 'q.vhd'], dir);
  assert.notEqual(info.status, 0);
  assert.match(info.stderr, /Error reading dynamic VHD header/);
  const ours = await readHeaderOf(join(dir, 'q.vhd'));
  assert.ok(ours instanceof VmimgError && ours.code === 'CORRUPT_IMAGE' && ours.message.endsWith('Error reading dynamic VHD header'), String(ours));
  await assert.rejects(
    createImage({ filename: join(dir, 'v.vhd'), format: 'vpc', size: '0', optionStrings: ['subformat=fixed'] }),
    (e: unknown) => e instanceof VmimgError && e.code === 'SIZE_OUT_OF_RANGE',
  );
});

interface Poke {
  name: string;
  fixed?: boolean;
  /** Changes every footer (both copies of a dynamic disk); the checksum is recomputed unless `keepChecksum`. */
  footer?: (f: VhdFooter) => VhdFooter;
  keepChecksum?: boolean;
  /** Raw byte changes after the footer changes: [offset from start (or from end if negative), bytes]. */
  bytes?: Array<[number, number[]]>;
  /** New length (from the end when negative). */
  truncate?: number;
  /** Zero bytes appended. */
  append?: number;
  /** qemu-img's message when it refuses, and vmimg's code then. */
  qemu?: string;
  code?: string;
}

const MiB100 = 100n << 20n;
const POKES: Poke[] = [
  { name: 'pristine' },
  { name: 'pristine-fixed', fixed: true },
  ...['win ', 'qem2', 'd2v ', 'CTXS', 'tap\0', 'vpc ', 'qemu', 'wa\0\0', 'tap ', 'd2v\0', 'win\0', 'xyz!'].map((app) => ({
    name: `creator-${JSON.stringify(app)}`,
    footer: (f: VhdFooter) => ({ ...f, creatorApp: app, currentSize: MiB100 }),
  })),
  { name: 'creator-fixed-win', fixed: true, footer: (f) => ({ ...f, creatorApp: 'win ', currentSize: 5n << 20n }) },
  { name: 'current-size-unaligned', footer: (f) => ({ ...f, creatorApp: 'qem2', currentSize: MiB100 + 1000n }) },
  { name: 'max-geometry', footer: (f) => ({ ...f, cylinders: 65535, heads: 16, sectorsPerTrack: 255, currentSize: MiB100 }) },
  { name: 'geometry-zero', footer: (f) => ({ ...f, cylinders: 0 }) },
  { name: 'too-large', footer: (f) => ({ ...f, creatorApp: 'win ', currentSize: 3n << 40n }), qemu: 'File too large', code: 'UNSUPPORTED_IMAGE' },
  { name: 'max-size', footer: (f) => ({ ...f, creatorApp: 'win ', currentSize: 0xff00_0000n * 512n }), qemu: 'Page table too small', code: 'CORRUPT_IMAGE' },
  { name: 'bad-checksum', footer: (f) => ({ ...f, checksum: f.checksum ^ 1 }), keepChecksum: true, qemu: 'Incorrect header checksum', code: 'CORRUPT_IMAGE' },
  { name: 'bad-checksum-fixed', fixed: true, footer: (f) => ({ ...f, checksum: 5 }), keepChecksum: true, qemu: 'Incorrect header checksum', code: 'CORRUPT_IMAGE' },
  { name: 'fixed-typed-dynamic', fixed: true, footer: (f) => ({ ...f, diskType: 3 }), qemu: 'invalid VPC image', code: 'CORRUPT_IMAGE' },
  { name: 'fixed-typed-differencing', fixed: true, footer: (f) => ({ ...f, diskType: 4 }), qemu: 'invalid VPC image', code: 'CORRUPT_IMAGE' },
  { name: 'no-cookie-anywhere', bytes: [[0, [0]], [-512, [0]]], qemu: 'invalid VPC image', code: 'CORRUPT_IMAGE' },
  { name: 'copy-at-0-broken', bytes: [[0, [0]]], qemu: 'invalid VPC image', code: 'CORRUPT_IMAGE' },
  { name: 'dyn-magic', bytes: [[512, [0x78]]], qemu: 'Invalid header magic', code: 'CORRUPT_IMAGE' },
  { name: 'data-offset-far', footer: (f) => ({ ...f, dataOffset: 1n << 40n }), qemu: 'Invalid header magic', code: 'CORRUPT_IMAGE' },
  { name: 'data-offset-huge', footer: (f) => ({ ...f, dataOffset: 0xffff_ffff_ffff_fe00n }), qemu: 'Error reading dynamic VHD header', code: 'CORRUPT_IMAGE' },
  { name: 'block-size-768', bytes: [[512 + 32, [0, 0, 3, 0]]], qemu: 'Invalid block size 768', code: 'CORRUPT_IMAGE' },
  { name: 'block-size-256', bytes: [[512 + 32, [0, 0, 1, 0]]], qemu: 'Invalid block size 256', code: 'CORRUPT_IMAGE' },
  { name: 'block-size-512', bytes: [[512 + 32, [0, 0, 2, 0]]], qemu: 'Page table too small', code: 'CORRUPT_IMAGE' },
  { name: 'block-size-2G', bytes: [[512 + 32, [0x80, 0, 0, 0]]] },
  { name: 'entries-0x7fffffff', bytes: [[512 + 28, [0x7f, 0xff, 0xff, 0xff]]], qemu: 'Max Table Entries too large (2147483647)', code: 'UNSUPPORTED_IMAGE' },
  { name: 'entries-0xffffffff', bytes: [[512 + 28, [0xff, 0xff, 0xff, 0xff]]], qemu: 'Max Table Entries too large (-1)', code: 'UNSUPPORTED_IMAGE' },
  { name: 'entries-too-few', bytes: [[512 + 28, [0, 0, 0, 50]]], qemu: 'Page table too small', code: 'CORRUPT_IMAGE' },
  { name: 'entries-more', bytes: [[512 + 28, [0, 0, 0, 60]]] },
  { name: 'entries-past-eof', bytes: [[512 + 28, [0, 0, 4, 0]]], qemu: 'The image has been truncated.', code: 'CORRUPT_IMAGE' },
  { name: 'bat-entry-past-eof', bytes: [[1536, [0, 0, 0, 4]]], qemu: 'The image has been truncated.', code: 'CORRUPT_IMAGE' },
  { name: 'table-offset-huge', bytes: [[512 + 16, [0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]]], qemu: 'Error reading pagetable', code: 'CORRUPT_IMAGE' },
  { name: 'truncated', truncate: 1536 + 100, qemu: 'The image has been truncated.', code: 'CORRUPT_IMAGE' },
  { name: 'tiny', truncate: 100, bytes: [[0, [0]]], qemu: 'invalid VPC image', code: 'CORRUPT_IMAGE' },
  { name: 'empty', truncate: 0, qemu: 'File too small for a VHD header', code: 'CORRUPT_IMAGE' },
  { name: 'fixed-plus-100', fixed: true, append: 100, qemu: 'invalid VPC image', code: 'CORRUPT_IMAGE' },
  { name: 'fixed-short-100', fixed: true, truncate: -100 },
  { name: 'fixed-short-600', fixed: true, truncate: -600, qemu: 'invalid VPC image', code: 'CORRUPT_IMAGE' },
];

function applyPoke(image: Uint8Array, p: Poke): Uint8Array {
  let out = image.slice();
  if (p.footer) {
    const atZero = Buffer.from(out.subarray(0, 8)).toString('latin1') === 'conectix';
    for (const at of atZero ? [0, out.length - FOOTER_SIZE] : [out.length - FOOTER_SIZE]) {
      const f = p.footer(decodeFooter(out.subarray(at, at + FOOTER_SIZE)));
      out.set(encodeFooter(f, p.keepChecksum), at);
    }
  }
  if (p.truncate !== undefined) out = out.slice(0, p.truncate < 0 ? out.length + p.truncate : p.truncate);
  if (p.append !== undefined) {
    const longer = new Uint8Array(out.length + p.append);
    longer.set(out);
    out = longer;
  }
  for (const [at, bytes] of p.bytes ?? []) out.set(bytes, at < 0 ? out.length + at : at);
  return out;
}

test('vpc readHeader accepts, sizes and rejects exactly what qemu-img info does', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-vpc-');
  const dynamic = join(dir, 'base.vhd');
  const fixed = join(dir, 'fixed.vhd');
  assert.equal(qemuImg(['create', '-q', '-f', 'vpc', dynamic, '100M']).status, 0);
  assert.equal(qemuImg(['create', '-q', '-f', 'vpc', '-o', 'subformat=fixed', fixed, '10M']).status, 0);
  for (const poke of POKES) {
    const path = join(dir, `${poke.name.replace(/[^a-z0-9-]/gi, '_')}.vhd`);
    writeFileSync(path, applyPoke(readFileSync(poke.fixed ? fixed : dynamic), poke));
    const info = qemuImg(['info', '--output=json', '-f', 'vpc', path]);
    const ours = await readHeaderOf(path);
    if (info.status === 0) {
      assert.equal(poke.qemu, undefined, `${poke.name}: qemu-img opens it`);
      assert.ok(!(ours instanceof VmimgError), `${poke.name}: ${String(ours)}`);
      assert.equal(ours.virtualSize, BigInt((JSON.parse(info.stdout) as { 'virtual-size': number })['virtual-size']), poke.name);
    } else {
      assert.ok(poke.qemu !== undefined && info.stderr.includes(poke.qemu), `${poke.name}: qemu-img says ${info.stderr}`);
      assert.ok(ours instanceof VmimgError && ours.code === poke.code, `${poke.name}: ${String(ours)}`);
      assert.ok(ours.message.endsWith(poke.qemu), `${poke.name}: ${ours.message}`);
    }
  }
});

test('timestamps: qemu-img and vmimg stamp the same second when run in the same second', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-vpc-');
  const before = Date.now();
  assert.equal(qemuImg(['create', '-q', '-f', 'vpc', join(dir, 'q.vhd'), '1M']).status, 0);
  const after = Date.now();
  const stamp = (await footerAt(join(dir, 'q.vhd'), 0)).timestamp;
  assert.ok(stamp >= vhdTimestamp(before) && stamp <= vhdTimestamp(after), `${stamp} not in ${vhdTimestamp(before)}..${vhdTimestamp(after)}`);
});
