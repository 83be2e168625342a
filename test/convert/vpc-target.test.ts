/**
 * vpc (VHD) as a convert target, judged by qemu-img 7.2. Sources: a pattern raw image written
 * with qemu-io (data, written zeros, holes, a write across a block boundary, an unaligned
 * tail) and the same disk as qcow2; targets dynamic (default), fixed and force_size, at sizes
 * the CHS search rounds up (into an extra BAT entry, too) and past 127.5 GiB (kept). For every
 * image vmimg writes:
 *  - `qemu-img compare` against the source succeeds, and `qemu-img convert -O raw` of it reads
 *    back the source's bytes followed by zeros up to the (rounded) virtual size;
 *  - `vmimg check` finds no errors (qemu-img has no check for vpc);
 *  - `qemu-img info --output=json` equals qemu-img's for its own convert of the same source
 *    (all but filename and actual-size);
 *  - the file equals qemu-img's byte for byte apart from the footers' timestamp, checksum and
 *    UUID and the sector bitmaps (qemu sets every bit; vmimg the written sectors, and a clear
 *    bit always covers zeros);
 *  - its length is ≤ `vmimg measure`'s required size (an upper bound: measure counts what the
 *    source's map calls data, the writer leaves all-zero blocks out), and `-S 0` fills
 *    fully-allocated exactly.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { vmimg } from '../helpers/cli.js';
import { oracle, qemuImg, qemuInfo, run, tempDir } from '../helpers/oracle.js';

const MiB = 1 << 20;
const BLOCK = 2 * MiB;

interface Source {
  path: string;
  fmt: string;
  size: number;
}

function ok(args: string[], cwd?: string): string {
  const r = qemuImg(args, cwd);
  assert.equal(r.status, 0, `qemu-img ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A raw image of `size` bytes with `writes` (qemu-io commands) applied. */
function rawSource(dir: string, name: string, size: number, writes: string[]): Source {
  const path = join(dir, name);
  ok(['create', '-q', '-f', 'raw', path, String(size)]);
  const r = run('qemu-io', ['-f', 'raw', ...writes.flatMap((w) => ['-c', w]), path]);
  assert.equal(r.status, 0, r.stderr);
  return { path, fmt: 'raw', size };
}

/** 12 MiB + 512 (rounded by CHS to 12603392): every kind of range the writer meets. */
const PATTERN_SIZE = 12 * MiB + 512;
const PATTERN = [
  'write -P 0x11 0 4k', // block 0: data at its start
  'write -P 0x22 1M 3k', // block 0: a run that does not fill its 4 KiB zero-detection granule
  'write -P 0 2M 2M', // block 1: written zeros (data in the source's map)
  // block 2: a hole
  `write -P 0x33 ${6 * MiB} 512`, // block 3: one sector
  `write -P 0x44 ${8 * MiB - 2048} 8k`, // across the block 3/4 boundary
  // block 5: a hole
  `write -P 0x55 ${12 * MiB} 512`, // block 6: the unaligned tail (the last source sector)
];

function asQcow2(dir: string, src: Source): Source {
  const path = join(dir, 'src.qcow2');
  ok(['convert', '-f', 'raw', '-O', 'qcow2', src.path, path]);
  return { path, fmt: 'qcow2', size: src.size };
}

/** Footer fields that differ between any two creations: timestamp, checksum, UUID. */
const FOOTER_VOLATILE: Array<[number, number]> = [
  [24, 28],
  [64, 84],
];

function be32(b: Buffer, at: number): number {
  return b.readUInt32BE(at);
}

/** BAT entries of a dynamic VHD made by qemu-img or vmimg (table at 1536). */
function batOf(file: Buffer): number[] {
  const entries = be32(file, 512 + 28);
  return Array.from({ length: entries }, (_, i) => be32(file, 1536 + i * 4));
}

/**
 * Compares vmimg's file with qemu-img's: same length, same bytes except the footers' volatile
 * fields and, for dynamic disks, the sector bitmaps; vmimg's bitmaps must mark every sector
 * holding non-zero data and leave only zero sectors unmarked.
 */
function sameLayout(ours: Buffer, theirs: Buffer, dynamic: boolean, label: string): void {
  assert.equal(ours.length, theirs.length, `${label}: file length`);
  const masked = new Uint8Array(ours.length);
  const footers = dynamic ? [0, ours.length - 512] : [ours.length - 512];
  for (const f of footers) for (const [a, b] of FOOTER_VOLATILE) masked.fill(1, f + a, f + b);
  if (dynamic) {
    const bat = batOf(ours);
    assert.deepEqual(bat, batOf(theirs), `${label}: BAT`);
    for (const entry of bat) {
      if (entry === 0xffffffff) continue;
      const at = entry * 512;
      masked.fill(1, at, at + 512);
      assert.ok(theirs.subarray(at, at + 512).every((x) => x === 0xff), `${label}: qemu-img sets every bitmap bit`);
      for (let s = 0; s < BLOCK / 512; s++) {
        const set = (ours[at + (s >> 3)]! & (0x80 >> (s & 7))) !== 0;
        const data = ours.subarray(at + 512 + s * 512, at + 512 + (s + 1) * 512);
        if (!set) assert.ok(data.every((x) => x === 0), `${label}: block @${at} sector ${s} has data but a clear bitmap bit`);
      }
    }
  }
  for (let i = 0; i < ours.length; i++) {
    if (ours[i] !== theirs[i] && !masked[i]) assert.fail(`${label}: byte ${i} differs (vmimg ${ours[i]}, qemu-img ${theirs[i]})`);
  }
}

/** `qemu-img info --output=json` without the fields that depend on the file name and the fs. */
function infoOf(path: string): Record<string, unknown> {
  const info = qemuInfo(path, 'vpc');
  delete info['filename'];
  delete info['actual-size'];
  return info;
}

/** Reads the target back through qemu-img: the source's bytes, then zeros to the virtual size. */
function readsBack(dir: string, src: Source, out: string, label: string): void {
  const back = join(dir, 'back.raw');
  ok(['convert', '-f', 'vpc', '-O', 'raw', out, back]);
  const raw = join(dir, 'src-as-raw.raw');
  if (src.fmt !== 'raw') ok(['convert', '-f', src.fmt, '-O', 'raw', src.path, raw]);
  const want = readFileSync(src.fmt === 'raw' ? src.path : raw);
  const got = readFileSync(back);
  assert.ok(got.length >= want.length, `${label}: read back ${got.length} < ${want.length} bytes`);
  assert.ok(got.subarray(0, want.length).equals(want), `${label}: content differs from the source`);
  assert.ok(got.subarray(want.length).every((x) => x === 0), `${label}: bytes past the source are not zero`);
  run('rm', ['-f', back, raw]);
}

async function measured(src: Source, opts: string[]): Promise<{ required: number; 'fully-allocated': number }> {
  const r = await vmimg(['measure', '--output=json', '-f', src.fmt, '-O', 'vpc', ...opts, src.path]);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as { required: number; 'fully-allocated': number };
}

/** Converts `src` with both tools and checks everything the header comment lists. */
async function judge(t: TestContext, dir: string, src: Source, opts: string[], extra: string[] = []): Promise<{ ours: string; theirs: string }> {
  const label = `${src.fmt} ${src.size} → vpc ${[...opts, ...extra].join(' ')}`;
  const tag = `${src.fmt}-${src.size}-${[...opts, ...extra].join('').replace(/[^a-z0-9]/gi, '')}`;
  const ours = join(dir, `ours-${tag}.vhd`);
  const theirs = join(dir, `theirs-${tag}.vhd`);
  const r = await vmimg(['convert', '-f', src.fmt, '-O', 'vpc', ...opts, ...extra, src.path, ours]);
  assert.equal(r.status, 0, `${label}: ${r.stderr}`);
  ok(['convert', '-f', src.fmt, '-O', 'vpc', ...opts, ...extra, src.path, theirs]);

  const cmp = qemuImg(['compare', '-f', src.fmt, '-F', 'vpc', src.path, ours]);
  assert.equal(cmp.status, 0, `${label}: qemu-img compare: ${cmp.stdout}${cmp.stderr}`);
  assert.match(cmp.stdout, /Images are identical/);
  // Reading back whole disks only where they fit in memory (the 130 GiB one is judged by compare).
  if (src.size <= 256 * MiB) readsBack(dir, src, ours, label);

  const chk = await vmimg(['check', '-f', 'vpc', ours]);
  assert.equal(chk.status, 0, `${label}: vmimg check: ${chk.stdout}${chk.stderr}`);
  assert.match(chk.stdout, /No errors were found on the image/);

  assert.deepEqual(infoOf(ours), infoOf(theirs), `${label}: qemu-img info`);
  const dynamic = !opts.join(',').includes('subformat=fixed');
  sameLayout(readFileSync(ours), readFileSync(theirs), dynamic, label);
  // A fixed target is allocated like qemu-img's too (its first block written as zeros by the
  // file creation, then data, holes for zeros), so qemu-img map prints the same.
  if (!dynamic) assert.equal(qemuImg(['map', '--output=json', '-f', 'vpc', ours]).stdout, qemuImg(['map', '--output=json', '-f', 'vpc', theirs]).stdout, `${label}: qemu-img map`);

  // measure counts the source's data (as qemu-img's does for qcow2), not -S: with -S 0 zeros
  // are written too, up to fully-allocated.
  const m = await measured(src, opts);
  const length = statSync(ours).size;
  const bound = extra.includes('-S') ? m['fully-allocated'] : m.required;
  assert.ok(length <= bound, `${label}: file ${length} > measure's ${bound}`);
  assert.ok(m.required <= m['fully-allocated'], `${label}: required > fully-allocated`);
  t.diagnostic(`${label}: ${length} bytes, measure required ${m.required}, fully allocated ${m['fully-allocated']}`);
  return { ours, theirs };
}

test('convert -O vpc: pattern raw and qcow2 sources into dynamic, fixed and force_size targets', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const raw = rawSource(dir, 'src.raw', PATTERN_SIZE, PATTERN);
  const qcow2 = asQcow2(dir, raw);
  for (const src of [raw, qcow2]) {
    for (const opts of [[], ['-o', 'subformat=dynamic'], ['-o', 'subformat=fixed'], ['-o', 'force_size=on'], ['-o', 'subformat=fixed,force_size=on']]) {
      const { ours } = await judge(t, dir, src, opts);
      const info = qemuInfo(ours, 'vpc');
      // The CHS search rounds 12 MiB + 512 up to 362/4/17; force_size keeps it.
      assert.equal(info['virtual-size'], opts.join().includes('force_size') ? PATTERN_SIZE : 12603392);
      if (src.fmt === 'qcow2' && !opts.join().includes('fixed')) {
        // qcow2 drops the written zeros, so the source's allocated blocks are exactly the ones
        // the writer allocates: measure's required size is the file's length.
        assert.equal(statSync(ours).size, (await measured(src, opts)).required);
      }
    }
  }
});

test('convert -O vpc: the dynamic layout is qemu-img\'s (blocks in guest order after the BAT, zero blocks unallocated)', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const raw = rawSource(dir, 'src.raw', PATTERN_SIZE, PATTERN);
  const { ours } = await judge(t, dir, raw, []);
  const file = readFileSync(ours);
  // 7 entries: 28 bytes of BAT, padded to a sector; blocks 0, 3, 4, 6 hold data, 1 (zeros), 2, 5 not.
  const first = 2048;
  const step = (512 + BLOCK) / 512;
  assert.deepEqual(batOf(file), [first / 512, 0xffffffff, 0xffffffff, first / 512 + step, first / 512 + 2 * step, 0xffffffff, first / 512 + 3 * step]);
  assert.equal(file.length, first + 4 * (512 + BLOCK) + 512);
  assert.ok(file.subarray(0, 512).equals(file.subarray(file.length - 512)), 'footer copy at 0 equals the footer');
  // Block 3's bitmap: the 4 KiB granule at its start and the last 4 KiB granule (8 sectors each).
  const bm = file.subarray(first + (512 + BLOCK), first + (512 + BLOCK) + 512);
  assert.equal(bm[0], 0xff);
  assert.equal(bm[511], 0xff);
  assert.equal(bm.subarray(1, 511).every((x) => x === 0), true);
});

test('convert -O vpc -S 0 allocates every block of the source, as measure\'s fully-allocated size says', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const raw = rawSource(dir, 'src.raw', PATTERN_SIZE, PATTERN);
  const { ours } = await judge(t, dir, raw, [], ['-S', '0']);
  const m = await measured(raw, []);
  assert.equal(statSync(ours).size, m['fully-allocated']);
  assert.ok(batOf(readFileSync(ours)).every((e) => e !== 0xffffffff));
});

test('convert -O vpc: sizes the CHS search rounds into another block, tiny, empty and past 127.5 GiB', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  // 2 MiB rounds up to 2123776 bytes (61/4/17): a second BAT entry no source byte reaches.
  const two = rawSource(dir, 'two.raw', BLOCK, [`write -P 0x61 ${BLOCK - 512} 512`]);
  for (const opts of [[], ['-o', 'subformat=fixed'], ['-o', 'force_size=on']]) await judge(t, dir, two, opts);
  assert.equal(qemuInfo((await judge(t, dir, two, [], ['-S', '0'])).ours, 'vpc')['virtual-size'], 2123776);
  // One sector: 34816 bytes (1/4/17).
  const tiny = rawSource(dir, 'tiny.raw', 512, ['write -P 0x62 0 512']);
  for (const opts of [[], ['-o', 'subformat=fixed']]) await judge(t, dir, tiny, opts);
  // An odd size in the 31-sectors-per-track regime: 200 MiB + 512 → 209764352 (826/16/31).
  const odd = rawSource(dir, 'odd.raw', 200 * MiB + 512, ['write -P 0x63 100M 5k', `write -P 0x64 ${200 * MiB} 512`]);
  for (const opts of [[], ['-o', 'subformat=fixed']]) await judge(t, dir, odd, opts);
  // Empty: a dynamic disk with no BAT sectors (2048 bytes), as qemu-img writes it.
  const empty = rawSource(dir, 'empty.raw', 0, []);
  const { ours } = await judge(t, dir, empty, []);
  assert.equal(statSync(ours).size, 2048);
  // 130 GiB: the maximum geometry, so the size is kept; one block at 64 GiB, one at the end.
  const big = rawSource(dir, 'big.raw', 130 * 1024 * MiB, ['write -P 0x65 64G 1M', `write -P 0x66 ${130 * 1024 * MiB - 512} 512`]);
  const b = await judge(t, dir, big, []);
  assert.equal(qemuInfo(b.ours, 'vpc')['virtual-size'], 130 * 1024 * MiB);
  assert.equal(batOf(readFileSync(b.ours)).filter((e) => e !== 0xffffffff).length, 2);
});

test('convert -O vpc refuses a backing file and compression with qemu-img\'s messages, leaving no target', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const raw = rawSource(dir, 'src.raw', 4 * MiB, ['write -P 1 0 64k']);
  const cases: Array<{ args: string[]; code: string }> = [
    { args: ['-B', raw.path, '-F', 'raw'], code: 'UNSUPPORTED_OPTION' },
    { args: ['-o', `backing_file=${raw.path}`], code: 'UNKNOWN_OPTION' },
    { args: ['-c'], code: 'UNSUPPORTED_OPTION' },
  ];
  for (const c of cases) {
    const theirs = join(dir, 'theirs.vhd');
    const q = qemuImg(['convert', '-f', 'raw', '-O', 'vpc', ...c.args, raw.path, theirs]);
    assert.equal(q.status, 1);
    const message = q.stderr.trim().replace(/^qemu-img: /, '');
    const ours = join(dir, 'ours.vhd');
    const r = await vmimg(['convert', '-f', 'raw', '-O', 'vpc', ...c.args, raw.path, ours]);
    assert.equal(r.status, 1, `${c.args.join(' ')}: ${r.stderr}`);
    assert.ok(r.stderr.includes(message), `${c.args.join(' ')}: vmimg says ${JSON.stringify(r.stderr)}, qemu-img ${JSON.stringify(message)}`);
    assert.ok(r.stderr.includes(c.code), r.stderr);
    assert.equal(existsSync(ours), false, 'no target left behind');
  }
});

test('measure -O vpc: --size gives the empty and the fully allocated dynamic disk, and the fixed file', async () => {
  const dyn = await vmimg(['measure', '--output=json', '-O', 'vpc', '--size', '1G']);
  assert.equal(dyn.status, 0, dyn.stderr);
  // 1 GiB → 1073995776 (2081/16/63): 513 entries → 2560 bytes of BAT, the first block at 4096;
  // an empty disk is 4608 bytes, as create makes it.
  assert.deepEqual(JSON.parse(dyn.stdout), { required: 4608, 'fully-allocated': 1536 + 2560 + 513 * (512 + BLOCK) + 512 });
  const fixed = await vmimg(['measure', '--output=json', '-O', 'vpc', '-o', 'subformat=fixed', '--size', '1G']);
  assert.deepEqual(JSON.parse(fixed.stdout), { required: 1073995776 + 512, 'fully-allocated': 1073995776 + 512 });
  const forced = await vmimg(['measure', '--output=json', '-O', 'vpc', '-o', 'subformat=fixed,force_size=on', '--size', '1G']);
  assert.deepEqual(JSON.parse(forced.stdout), { required: 1073741824 + 512, 'fully-allocated': 1073741824 + 512 });
  const tooBig = await vmimg(['measure', '-O', 'vpc', '--size', '3T']);
  assert.notEqual(tooBig.status, 0);
  assert.match(tooBig.stderr, /too large for file format 'vpc'/);
});
