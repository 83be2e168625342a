/**
 * `vmimg measure` against `qemu-img measure` (7.2): for every case both run with the same
 * arguments; the exit status must match, stdout must be byte-identical on success (human and
 * JSON), and on failure vmimg's message must contain qemu-img's first error line.
 *
 * Matrix: --size values (0 to 1 PiB, odd sizes, the int64 limit) × raw/qcow2 targets × qcow2
 * options (cluster sizes 512 B–2 MiB, refcount widths, extended L2, compat=0.10, preallocation,
 * a backing file in -o); sources: sparse/holey/odd-sized/all-data raw files, qcow2 images with
 * data, zero clusters, compressed clusters, subclusters, preallocated metadata, v2, backing
 * chains and persistent bitmaps (several granularities and names, a 2 TiB image).
 */
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { vmimg } from '../helpers/cli.js';
import { oracle, qemuImg, run, tempDir } from '../helpers/oracle.js';
import { compareMeasure, type Mismatch } from './measure-support.js';

const SIZES = ['0', '1', '511', '512', '513', '65535', '65537', '1000000', '123456789', '1G', '100G', '1T', '16T', '1P', '8E', '9223372036854775807'];

const QCOW2_OPTIONS = [
  '',
  'cluster_size=512',
  'cluster_size=4k',
  'cluster_size=2M',
  'refcount_bits=1',
  'refcount_bits=64',
  'cluster_size=512,refcount_bits=64',
  'cluster_size=2M,refcount_bits=1',
  'extended_l2=on',
  'extended_l2=on,cluster_size=16k',
  'extended_l2=on,cluster_size=2M,refcount_bits=8',
  'compat=0.10',
  'compat=0.10,cluster_size=4k',
  'preallocation=metadata',
  'preallocation=falloc',
  'preallocation=full,cluster_size=4k',
  'backing_file=base.qcow2',
  'backing_file=base.qcow2,backing_fmt=qcow2,cluster_size=512',
];

/** The options that change how a source's data is counted (cluster size, backing, falloc). */
const DATA_OPTIONS = ['', 'cluster_size=512', 'cluster_size=4k', 'cluster_size=2M', 'extended_l2=on,cluster_size=16k', 'compat=0.10', 'preallocation=falloc', 'backing_file=base.qcow2'];

/** Sources measured with every option set (the others with DATA_OPTIONS). */
const FULLY_MEASURED = new Set(['holey.raw', 'mixed.qcow2', 'overlay2.qcow2', 'bitmaps.qcow2', 'compressed.qcow2']);

/** Runs every case and asserts none differs (all mismatches reported at once). */
async function runMatrix(t: TestContext, cwd: string, cases: string[][], wording: Record<string, RegExp> = {}): Promise<void> {
  const mismatches: Mismatch[] = [];
  for (const args of cases) {
    const m = await compareMeasure(cwd, args, wording[args.join(' ')]);
    if (m) mismatches.push(m);
  }
  t.diagnostic(`${cases.length - mismatches.length}/${cases.length} measure cases identical to qemu-img`);
  assert.deepEqual(mismatches, []);
}

function outputs(args: string[]): string[][] {
  return [args, ['--output=json', ...args]];
}

test('--size: raw and qcow2 targets over sizes and qcow2 options', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t);
  const cases: string[][] = [];
  for (const size of SIZES) {
    cases.push(...outputs(['-O', 'raw', '--size', size]));
    for (const o of QCOW2_OPTIONS) cases.push(...outputs(['-O', 'qcow2', ...(o ? ['-o', o] : []), '--size', size]));
  }
  await runMatrix(t, dir, cases);
});

/** Writes `chunks` ([offset, length, byte]) into a file of `size` bytes, leaving holes between. */
function sparseFile(path: string, size: number, chunks: Array<[number, number, number]>): void {
  const fd = openSync(path, 'w');
  try {
    for (const [offset, length, byte] of chunks) writeSync(fd, Buffer.alloc(length, byte), 0, length, offset);
  } finally {
    closeSync(fd);
  }
  truncateSync(path, size);
}

function sh(cwd: string, cmd: string, args: string[]): void {
  const r = run(cmd, args, { cwd });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

function qemuIo(cwd: string, file: string, commands: string[], format = 'qcow2'): void {
  sh(cwd, 'qemu-io', ['-f', format, ...commands.flatMap((c) => ['-c', c]), file]);
}

/** Sources of every kind, made in `dir`; returns [file, -f format] pairs. */
function makeSources(dir: string): Array<[string, string]> {
  const k = 1024;
  const m = 1024 * k;
  sparseFile(join(dir, 'empty.raw'), 0, []);
  sparseFile(join(dir, 'tiny.raw'), 1000, [[0, 1000, 1]]);
  sparseFile(join(dir, 'odd.raw'), 3 * m + 300, [[m + 7, 5, 2], [3 * m, 300, 3]]);
  sparseFile(join(dir, 'holey.raw'), 64 * m, [[0, 4 * k, 1], [70 * k, 1, 2], [2 * m - 512, 4 * k, 3], [33 * m, m, 4], [64 * m - 512, 512, 5]]);
  sparseFile(join(dir, 'zeros.raw'), 2 * m, [[0, 2 * m, 0]]);
  sparseFile(join(dir, 'sparse.raw'), 100 * m, []);
  sparseFile(join(dir, 'full.raw'), 5 * m + 4 * k, [[0, 5 * m + 4 * k, 0x5a]]);

  const create = (name: string, size: string, opts = ''): void => sh(dir, 'qemu-img', ['create', '-q', '-f', 'qcow2', ...(opts ? ['-o', opts] : []), name, size]);
  create('base.qcow2', '64M');
  qemuIo(dir, 'base.qcow2', ['write -P 1 0 1M', 'write -P 2 10M 64k', 'write -P 3 20M 3k', 'write -P 4 40M 1M']);
  create('mixed.qcow2', '64M');
  qemuIo(dir, 'mixed.qcow2', ['write -P 1 0 64k', 'write -P 2 100k 3k', 'write -P 3 1M 128k', 'write -z 1088k 64k', 'write -z -u 2M 256k', 'write -P 4 2176k 8k', 'discard 1M 64k', 'write -P 5 4095k 1k', 'write -P 6 63M 1k']);
  create('v2.qcow2', '10M', 'compat=0.10,cluster_size=4k');
  qemuIo(dir, 'v2.qcow2', ['write -P 1 0 5k', 'write -z 8k 8k', 'write -P 2 9M 1k']);
  create('small.qcow2', '5M', 'cluster_size=512,refcount_bits=1');
  qemuIo(dir, 'small.qcow2', ['write -P 1 1k 513', 'write -P 2 4M 100k']);
  create('subclusters.qcow2', '16M', 'extended_l2=on,cluster_size=128k');
  qemuIo(dir, 'subclusters.qcow2', ['write -P 1 0 4k', 'write -P 2 1M 1k', 'write -z 1028k 8k', 'write -P 3 15M 200k']);
  create('meta.qcow2', '32M', 'preallocation=metadata');
  qemuIo(dir, 'meta.qcow2', ['write -P 1 5M 70k']);
  create('falloc.qcow2', '8M', 'preallocation=falloc,cluster_size=4k');
  sh(dir, 'qemu-img', ['convert', '-c', '-O', 'qcow2', 'base.qcow2', 'compressed.qcow2']);
  sh(dir, 'qemu-img', ['convert', '-c', '-O', 'qcow2', '-o', 'compression_type=zstd,cluster_size=4k', 'mixed.qcow2', 'zstd.qcow2']);
  create('overlay.qcow2', '80M', 'backing_file=base.qcow2,backing_fmt=qcow2');
  qemuIo(dir, 'overlay.qcow2', ['write -P 9 512k 1M', 'write -z 10M 64k', 'write -P 8 70M 1k']);
  create('overlay2.qcow2', '80M', 'backing_file=overlay.qcow2,backing_fmt=qcow2,cluster_size=4k');
  qemuIo(dir, 'overlay2.qcow2', ['write -z 0 128k', 'write -P 7 41M 4k']);
  create('rawbacked.qcow2', '64M', 'backing_file=holey.raw,backing_fmt=raw');
  qemuIo(dir, 'rawbacked.qcow2', ['write -P 6 3M 1k']);
  create('bitmaps.qcow2', '1G');
  qemuIo(dir, 'bitmaps.qcow2', ['write -P 1 0 1M', 'write -P 2 100M 64k']);
  for (const [name, g] of [['b1', ''], ['a-much-longer-bitmap-name-for-the-directory', '4k'], ['fine', '512'], ['coarse', '2M'], ['ünïcode', '64k']]) {
    sh(dir, 'qemu-img', ['bitmap', '--add', ...(g ? ['-g', g] : []), 'bitmaps.qcow2', name!]);
  }
  create('huge.qcow2', '2T', 'cluster_size=2M');
  sh(dir, 'qemu-img', ['bitmap', '--add', '-g', '512', 'huge.qcow2', 'b1']);
  sh(dir, 'qemu-img', ['bitmap', '--add', '-g', '2M', 'huge.qcow2', 'b2']);
  create('v2bitmapless.qcow2', '1M', 'compat=0.10');
  create('nobitmaps.qcow2', '3M');
  create('odd.qcow2', '1000001');
  qemuIo(dir, 'odd.qcow2', ['write -P 1 975k 1k']);

  const raws = ['empty.raw', 'tiny.raw', 'odd.raw', 'holey.raw', 'zeros.raw', 'sparse.raw', 'full.raw'];
  const qcow2s = [
    'base.qcow2',
    'mixed.qcow2',
    'v2.qcow2',
    'small.qcow2',
    'subclusters.qcow2',
    'meta.qcow2',
    'falloc.qcow2',
    'compressed.qcow2',
    'zstd.qcow2',
    'overlay.qcow2',
    'overlay2.qcow2',
    'rawbacked.qcow2',
    'bitmaps.qcow2',
    'huge.qcow2',
    'v2bitmapless.qcow2',
    'nobitmaps.qcow2',
    'odd.qcow2',
  ];
  return [...raws.map((f) => [f, 'raw'] as [string, string]), ...qcow2s.map((f) => [f, 'qcow2'] as [string, string])];
}

test('sources: raw and qcow2 images (holes, zeros, compressed, chains, bitmaps) into raw and qcow2 targets', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const sources = makeSources(dir);
  const cases: string[][] = [];
  for (const [file, format] of sources) {
    cases.push(...outputs(['-O', 'raw', '-f', format, file]));
    for (const o of FULLY_MEASURED.has(file) ? QCOW2_OPTIONS : DATA_OPTIONS) cases.push(...outputs(['-O', 'qcow2', ...(o ? ['-o', o] : []), '-f', format, file]));
  }
  // A qcow2 file read as raw (its bytes are the data); probing instead of -f.
  cases.push(...outputs(['-O', 'qcow2', '-f', 'raw', 'bitmaps.qcow2']));
  cases.push(...outputs(['-O', 'qcow2', 'bitmaps.qcow2']), ...outputs(['-O', 'qcow2', 'overlay2.qcow2']));
  // The too-large check reads the size option, not the source.
  cases.push(['-O', 'qcow2', '-o', 'size=1P,cluster_size=512', 'base.qcow2'], ['-O', 'qcow2', '-o', 'size=1G', 'huge.qcow2']);
  cases.push(['-O', 'qcow2', '-o', 'cluster_size=512', 'huge.qcow2']);
  await runMatrix(t, dir, cases);
});

test('sources in other formats (vmdk, vpc, vhdx) and a fallocated raw file', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'qcow2', 'd.qcow2', '256M']);
  qemuIo(dir, 'd.qcow2', ['write -P 1 0 1M', 'write -P 2 100M 64k', 'write -P 3 200M 3k', 'write -z 201M 1M']);
  const sources: Array<[string, string[]]> = [
    ['d.vmdk', ['-O', 'vmdk']],
    ['so.vmdk', ['-O', 'vmdk', '-o', 'subformat=streamOptimized']],
    ['d.vhd', ['-O', 'vpc']],
    ['f.vhd', ['-O', 'vpc', '-o', 'subformat=fixed']],
    ['d.vhdx', ['-O', 'vhdx']],
  ];
  for (const [name, args] of sources) sh(dir, 'qemu-img', ['convert', ...args, 'd.qcow2', name]);
  sh(dir, 'fallocate', ['-l', '10M', 'fa.raw']);
  const fd = openSync(join(dir, 'fa.raw'), 'r+');
  writeSync(fd, Buffer.from('abc'), 0, 3, 5_000_000);
  closeSync(fd);
  const cases: string[][] = [];
  for (const file of [...sources.map(([n]) => n), 'fa.raw']) {
    cases.push(...outputs(['-O', 'raw', file]));
    for (const o of ['', 'cluster_size=512', 'cluster_size=2M', 'backing_file=x']) cases.push(...outputs(['-O', 'qcow2', ...(o ? ['-o', o] : []), file]));
  }
  await runMatrix(t, dir, cases);
});

/** Sets bits in a big-endian u32 or u64 field of a file. */
function pokeBits(path: string, offset: number, bytes: 4 | 8, set: bigint, clear = 0n): void {
  const b = readFileSync(path);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (bytes === 4) v.setUint32(offset, Number((BigInt(v.getUint32(offset)) | set) & ~clear));
  else v.setBigUint64(offset, (v.getBigUint64(offset) | set) & ~clear);
  writeFileSync(path, b);
}

/** The bitmap directory offset from the qcow2 v3 bitmaps header extension. */
function bitmapDirectory(path: string): number {
  const b = readFileSync(path);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let at = v.getUint32(100); at + 8 <= b.length; ) {
    const type = v.getUint32(at);
    const len = v.getUint32(at + 4);
    if (type === 0) break;
    if (type === 0x23852875) return Number(v.getBigUint64(at + 8 + 16));
    at += 8 + Math.ceil(len / 8) * 8;
  }
  throw new Error(`${path}: no bitmaps extension`);
}

test('persistent bitmaps: in-use bitmaps count, a cleared autoclear bit drops them, compat=0.10 and raw targets omit the key', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t);
  for (const name of ['inuse.qcow2', 'stale.qcow2']) {
    sh(dir, 'qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', name, '3G']);
    sh(dir, 'qemu-img', ['bitmap', '--add', '-g', '16k', name, 'first']);
    sh(dir, 'qemu-img', ['bitmap', '--add', '-g', '1M', name, 'second-bitmap']);
  }
  pokeBits(join(dir, 'inuse.qcow2'), bitmapDirectory(join(dir, 'inuse.qcow2')) + 12, 4, 1n);
  pokeBits(join(dir, 'stale.qcow2'), 88, 8, 0n, 1n);
  const cases: string[][] = [];
  for (const file of ['inuse.qcow2', 'stale.qcow2']) {
    for (const o of ['', 'cluster_size=512', 'cluster_size=2M', 'compat=0.10']) cases.push(...outputs(['-O', 'qcow2', ...(o ? ['-o', o] : []), file]));
    cases.push(...outputs(['-O', 'raw', file]));
  }
  await runMatrix(t, dir, cases);
  const ours = await compareMeasure(dir, ['-O', 'qcow2', 'inuse.qcow2']);
  assert.equal(ours, undefined);
  // 3 GiB at 16 KiB granularity is 24 KiB of bitmap: 6 clusters, table 1; at 1 MiB: 1 + 1; directory 1.
  assert.match(qemuImg(['measure', '-O', 'qcow2', '-o', 'cluster_size=4k', join(dir, 'inuse.qcow2')]).stdout, /bitmaps size: 40960\n/);
});

test('argument and option errors: same exit status and message as qemu-img', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'raw', 'r.raw', '1M']);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'qcow2', 's.qcow2', '1M']);
  sh(dir, 'qemu-img', ['snapshot', '-c', 'snap', 's.qcow2']);
  const cases: string[][] = [
    ['-O', 'qcow2'],
    ['-O', 'qcow2', '--size', '1G', 'r.raw'],
    ['-O', 'qcow2', '--size', '1G', 'r.raw', 's.qcow2'],
    ['-O', 'qcow2', '-f', 'raw', '--size', '1G'],
    ['-O', 'qcow2', '-l', 'snap', '--size', '1G'],
    ['-O', 'qcow2', '-l', 'nope', 's.qcow2'],
    ['-O', 'qcow2', '-l', 'snap', 'r.raw'],
    ['-O', 'qcow2', 'missing.qcow2'],
    ['-O', 'nosuchformat', '--size', '1G'],
    ['-O', 'qcow2', '--size', '1G', '-o', 'foo=1'],
    ['-O', 'raw', '--size', '1G', '-o', 'foo=bar'],
    ['-O', 'qcow2', '--size', '1G', '-o', 'preallocation=bogus'],
    ['-O', 'qcow2', '--size', '1G', '-o', 'compat=bogus'],
    ['-O', 'qcow2', '--size', '1G', '-o', 'compat=v3'],
    ['-O', 'qcow2', '--size', '1G', '-o', 'refcount_bits=3'],
    ['-O', 'qcow2', '--size', '1G', '-o', 'refcount_bits=0'],
    ['-O', 'qcow2', '--size', '1G', '-o', 'refcount_bits=128'],
    ['-O', 'qcow2', '--size', '1G', '-o', 'refcount_bits=8,compat=0.10'],
    ['-O', 'qcow2', '--size', '1G', '-o', 'cluster_size=1000'],
    ['-O', 'qcow2', '--size', '1G', '-o', 'cluster_size=256'],
    ['-O', 'qcow2', '--size', '1G', '-o', 'cluster_size=4M'],
    ['-O', 'qcow2', '--size', '1G', '-o', 'cluster_size=4294967808'],
    ['-O', 'qcow2', '--size', '1G', '-o', 'cluster_size=4k,extended_l2=on'],
    ['-O', 'qcow2', '--size', '1G', '-o', 'extended_l2=bogus'],
    ['-O', 'qcow2', '--size', '1G', '-o', 'cluster_size=xx'],
    ['-O', 'qcow2', '--size', '-1'],
    ['-O', 'qcow2', '--size', '1Q'],
    ['-O', 'qcow2', '--size', '1G', '--output=xml'],
    ['-O', 'qcow2', '-o', 'cluster_size=4k,refcount_bits=64', '--size', '16T'],
    ['-O', 'qcow2', '-o', 'cluster_size=512', '--size', '1P'],
    // Accepted by measure although create refuses them; the values are ignored.
    ['-O', 'qcow2', '--size', '1G', '-o', 'compat=0.10,extended_l2=on'],
    ['-O', 'qcow2', '--size', '1G', '-o', 'compat=0.10,lazy_refcounts=on'],
    ['-O', 'qcow2', '--size', '1G', '-o', 'compression_type=bogus'],
    ['-O', 'qcow2', '--size', '1G', '-o', 'backing_file=x,preallocation=full'],
    ['-O', 'qcow2', '--size', '1G', '-o', 'backing_fmt=qcow2'],
    ['-O', 'qcow2', '--size', '1G', '-o', 'data_file=x,data_file_raw=on,nocow=on,extent_size_hint=1M'],
    ['-O', 'qcow2', '--size', '1G', '-o', 'size=2G'],
    ['-O', 'raw', '--size', '1G', '-o', 'preallocation=bogus'],
    ['--size', '1G'],
    ['-O', 'qcow2', '-U', 'r.raw'],
  ];
  // Messages vmimg shares with its other commands, worded its own way.
  const wording = { '-O qcow2 missing.qcow2': /^vmimg: Could not open 'missing.qcow2': No such file or directory \[FILE_NOT_FOUND\]\n$/ };
  await runMatrix(t, dir, cases, wording);
});

test('qemu-img and vmimg agree the oracle comparison catches a difference', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  // Guard against a comparison that always passes: different sizes must differ.
  const a = await vmimg(['measure', '-O', 'qcow2', '--size', '1G']);
  const b = qemuImg(['measure', '-O', 'qcow2', '--size', '2G']);
  assert.equal(a.status, 0);
  assert.notEqual(a.stdout, b.stdout);
});
