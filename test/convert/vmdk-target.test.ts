/**
 * vmdk as a convert target, judged by qemu-img 7.2: for every subformat/option combination the
 * image vmimg writes passes `qemu-img check`, compares identical to the source, reports the
 * same `qemu-img info`/`map` as the image `qemu-img convert` writes from the same source with
 * the same options, and has the same header, grain tables and file length (docs/formats/vmdk.md,
 * "convert target"). Also measure against the files written, and the failure rule.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readdirSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { vmimg } from '../helpers/cli.js';
import { PATTERN_WRITES, rawWithWrites } from '../helpers/images.js';
import { oracle, qemuImg, run, tempDir } from '../helpers/oracle.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/** 24 MiB + 1.5 KiB: the pattern plus data in the unaligned (short) last grain. */
function makeSource(dir: string): string {
  return rawWithWrites(join(dir, 'src.raw'), 24 * 1024 * 1024 + 1536, [...PATTERN_WRITES, 'write -P 0x66 25166848 512']);
}

interface Layout {
  header: Buffer;
  /** Both grain directories, then every grain table entry they reach (in directory order). */
  gd: number[];
  rgd: number[];
  gtes: number[];
  rgtes: number[];
  overhead: number;
  length: number;
}

/** The sparse-extent metadata of a vmdk file written by either tool. */
function layoutOf(path: string): Layout {
  const f = readFileSync(path);
  const v = new DataView(f.buffer, f.byteOffset, f.length);
  const capacity = Number(v.getBigUint64(12, true));
  const rgdOffset = Number(v.getBigUint64(48, true));
  const gdOffset = Number(v.getBigUint64(56, true));
  const gtCount = Math.ceil(Math.ceil(capacity / 128) / 512);
  const dir = (at: number): number[] => Array.from({ length: gtCount }, (_, i) => v.getUint32(at * 512 + i * 4, true));
  const entries = (d: number[]): number[] => d.flatMap((gt) => Array.from({ length: 512 }, (_, i) => v.getUint32(gt * 512 + i * 4, true)));
  const gd = dir(gdOffset);
  const rgd = dir(rgdOffset);
  return { header: f.subarray(0, 512), gd, rgd, gtes: entries(gd), rgtes: entries(rgd), overhead: Number(v.getBigUint64(64, true)) * 512, length: f.length };
}

/** `qemu-img info --output=json` without what differs between any two images (CID, names, allocation). */
function info(path: string): unknown {
  const r = qemuImg(['info', '--output=json', path]);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout, (key, value: unknown) => (['cid', 'filename', 'actual-size'].includes(key) ? undefined : value));
}

function map(path: string): unknown {
  const r = qemuImg(['map', '--output=json', path]);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

function assertChecks(path: string, label: string): void {
  const c = qemuImg(['check', path]);
  assert.equal(c.status, 0, `${label}: qemu-img check: ${c.stdout}${c.stderr}`);
  assert.match(c.stdout, /No errors were found on the image/, label);
}

/** vmimg's and qemu-img's outputs for the same convert agree on everything but the CID. */
function assertSameAsQemu(ours: string, theirs: string, label: string, stream: boolean): void {
  assert.deepEqual(info(ours), info(theirs), `${label}: info`);
  assert.deepEqual(map(ours), map(theirs), `${label}: map`);
  const a = layoutOf(ours);
  const b = layoutOf(theirs);
  assert.ok(a.header.equals(b.header), `${label}: header sector`);
  assert.deepEqual([a.gd, a.rgd], [b.gd, b.rgd], `${label}: grain directories`);
  assert.ok(a.gtes.every((e, i) => e === b.gtes[i]) && a.gtes.length === b.gtes.length, `${label}: grain tables`);
  assert.deepEqual(a.rgtes, a.gtes, `${label}: redundant grain tables`);
  assert.equal(a.length, b.length, `${label}: file length`);
  if (!stream) {
    // Uncompressed grains are the guest's bytes: the whole grain area is identical.
    assert.ok(readFileSync(ours).subarray(a.overhead).equals(readFileSync(theirs).subarray(b.overhead)), `${label}: grain area`);
  }
}

const CASES: Array<{ name: string; args: string[]; stream: boolean }> = [
  { name: 'monolithicSparse', args: [], stream: false },
  { name: 'monolithicSparse -c (qemu-img stores plain grains)', args: ['-c'], stream: false },
  { name: 'monolithicSparse zeroed_grain=on', args: ['-o', 'zeroed_grain=on'], stream: false },
  { name: 'monolithicSparse adapter/hw/tools', args: ['-o', 'adapter_type=lsilogic,hwversion=7,toolsversion=123'], stream: false },
  { name: 'streamOptimized', args: ['-o', 'subformat=streamOptimized'], stream: true },
  { name: 'streamOptimized -c', args: ['-c', '-o', 'subformat=streamOptimized'], stream: true },
  { name: 'streamOptimized zeroed_grain=on buslogic', args: ['-o', 'subformat=streamOptimized,zeroed_grain=on,adapter_type=buslogic'], stream: true },
  { name: 'monolithicSparse -S 0', args: ['-S', '0'], stream: false },
  { name: 'streamOptimized -S 0 (zero grains compressed too)', args: ['-S', '0', '-o', 'subformat=streamOptimized'], stream: true },
  { name: 'monolithicSparse compat6 legacyESX', args: ['-o', 'compat6=on,adapter_type=legacyESX'], stream: false },
];

test('convert -O vmdk writes what qemu-img convert writes (check, compare, info, map, tables, length)', async (t) => {
  const dir = tempDir(t);
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const src = makeSource(dir);
  for (const [i, c] of CASES.entries()) {
    const ours = join(dir, `v${i}.vmdk`);
    const theirs = join(dir, `q${i}.vmdk`);
    const q = qemuImg(['convert', '-f', 'raw', '-O', 'vmdk', ...c.args, src, theirs]);
    assert.equal(q.status, 0, `${c.name}: qemu-img: ${q.stderr}`);
    assert.equal(q.stderr, '', `${c.name}: qemu-img is silent`);
    const r = await vmimg(['convert', '-f', 'raw', '-O', 'vmdk', ...c.args, src, ours]);
    assert.equal(r.status, 0, `${c.name}: ${r.stderr}`);
    assert.equal(r.stderr, '', c.name);
    assertChecks(ours, c.name);
    const cmp = qemuImg(['compare', '-f', 'raw', '-F', 'vmdk', src, ours]);
    assert.equal(cmp.status, 0, `${c.name}: ${cmp.stdout}${cmp.stderr}`);
    const own = await vmimg(['compare', '-f', 'raw', '-F', 'vmdk', src, ours]);
    assert.equal(own.status, 0, `${c.name}: vmimg compare: ${own.stdout}${own.stderr}`);
    assertSameAsQemu(ours, theirs, c.name, c.stream);
    const specific = (JSON.parse(qemuImg(['info', '--output=json', ours]).stdout) as { 'format-specific': { data: { extents: Array<{ compressed?: boolean }> } } })['format-specific'];
    assert.equal(specific.data.extents[0]!.compressed, c.stream ? true : undefined, `${c.name}: extent compressed flag`);
    run('rm', ['-f', ours, theirs]);
  }
});

test('convert -O vmdk -B over a qcow2 chain: unallocated stays unallocated, zeros masked (zeroed grains or zero data)', async (t) => {
  const dir = tempDir(t);
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const mk = (args: string[]): void => assert.equal(qemuImg(args, dir).status, 0, args.join(' '));
  mk(['create', '-q', '-f', 'qcow2', 'base.qcow2', '16M']);
  assert.equal(run('qemu-io', ['-c', 'write -P 7 0 4M', '-c', 'write -P 8 9M 1M', join(dir, 'base.qcow2')]).status, 0);
  mk(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow2']);
  const w = run('qemu-io', ['-c', 'write -P 9 1M 1M', '-c', 'write -z 3M 64k', '-c', 'write -z 9M 128k', '-c', 'write -P 10 12M 4k', join(dir, 'top.qcow2')]);
  assert.equal(w.status, 0, w.stderr);
  mk(['convert', '-O', 'vmdk', 'base.qcow2', 'base.vmdk']);
  const baseCid = (JSON.parse(qemuImg(['info', '--output=json', join(dir, 'base.vmdk')]).stdout) as { 'format-specific': { data: { cid: number } } })['format-specific'].data.cid;

  for (const opts of ['', 'zeroed_grain=on', 'subformat=streamOptimized', 'subformat=streamOptimized,zeroed_grain=on']) {
    const o = opts ? ['-o', opts] : [];
    const label = `-B ${opts || 'monolithicSparse'}`;
    mk(['convert', '-O', 'vmdk', ...o, '-B', 'base.vmdk', '-F', 'vmdk', 'top.qcow2', 'q.vmdk']);
    const r = await vmimg(['convert', '-O', 'vmdk', ...o, '-B', 'base.vmdk', '-F', 'vmdk', join(dir, 'top.qcow2'), join(dir, 'v.vmdk')]);
    assert.equal(r.status, 0, `${label}: ${r.stderr}`);
    const ours = join(dir, 'v.vmdk');
    assertChecks(ours, label);
    const cmp = qemuImg(['compare', join(dir, 'top.qcow2'), ours]);
    assert.equal(cmp.status, 0, `${label}: ${cmp.stdout}${cmp.stderr}`);
    assertSameAsQemu(ours, join(dir, 'q.vmdk'), label, opts.includes('stream'));
    const parsed = JSON.parse(qemuImg(['info', '--output=json', ours]).stdout) as { 'backing-filename': string; 'format-specific': { data: { 'parent-cid': number } } };
    assert.equal(parsed['backing-filename'], 'base.vmdk', label);
    assert.equal(parsed['format-specific'].data['parent-cid'], baseCid, label);
    // The masked zeros at 3M (one grain) and 9M (two grains): GTE 1 with zeroed_grain, else data.
    const gtes = layoutOf(ours).gtes;
    const masked = [48, 144, 145].map((g) => gtes[g]);
    if (opts.includes('zeroed_grain')) assert.deepEqual(masked, [1, 1, 1], label);
    else assert.ok(masked.every((e) => e !== undefined && e > 1), `${label}: ${masked.join(',')}`);
    // Unallocated in the source's top layer: unallocated in the new image (grain 0 lies in the base only).
    assert.equal(gtes[0], 0, label);
    run('rm', ['-f', ours, join(dir, 'q.vmdk')]);
  }
});

interface Measure {
  required: number;
  'fully-allocated': number;
}

async function measure(args: string[]): Promise<Measure> {
  const r = await vmimg(['measure', '--output=json', '-O', 'vmdk', ...args]);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Measure;
}

test('measure -O vmdk: exact for monolithicSparse, an upper bound for streamOptimized', async (t) => {
  const dir = tempDir(t);
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const src = makeSource(dir);
  // Incompressible data too: the streamOptimized bound must hold for grains that grow.
  const noisy = join(dir, 'noisy.raw');
  const fd = openSync(noisy, 'w');
  writeSync(fd, randomBytes(3 << 20), 0, 3 << 20, 0);
  writeSync(fd, randomBytes(70_000), 0, 70_000, 8 << 20); // a hole in between, a short tail
  closeSync(fd);
  for (const source of [src, noisy]) {
    const out = join(dir, 'out.vmdk');
    for (const sub of ['monolithicSparse', 'streamOptimized']) {
      const o = ['-o', `subformat=${sub}`];
      const m = await measure(['-f', 'raw', ...o, source]);
      for (const extra of [[], ['-S', '0']]) {
        const r = await vmimg(['convert', '-f', 'raw', '-O', 'vmdk', ...o, ...extra, source, out]);
        assert.equal(r.status, 0, r.stderr);
        const size = statSync(out).size;
        const label = `${sub} ${extra.join(' ')} ${source}`;
        if (sub === 'monolithicSparse') assert.equal(size, extra.length ? m['fully-allocated'] : m.required, label);
        else assert.ok(size <= (extra.length ? m['fully-allocated'] : m.required), `${label}: ${size} > ${JSON.stringify(m)}`);
        assertChecks(out, label);
      }
      assert.ok(m.required <= m['fully-allocated']);
    }
  }
  // --size: nothing allocated, every grain allocated; 1 GiB = 16384 grains after a 384-sector overhead.
  assert.deepEqual(await measure(['--size', '1G']), { required: 196608, 'fully-allocated': 196608 + 16384 * 65536 });
  const so = await measure(['--size', '1G', '-o', 'subformat=streamOptimized']);
  assert.equal(so.required, 196608);
  assert.equal(so['fully-allocated'], 196608 + 16384 * 129 * 512 + 512);
});

test('a failed vmdk convert leaves nothing behind', async (t) => {
  const dir = tempDir(t);
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const src = makeSource(dir);
  // Refused before any data: a descriptor that does not fit its 20 sectors.
  const long = await vmimg(['convert', '-f', 'raw', '-O', 'vmdk', '-o', `hwversion=${'9'.repeat(10240)}`, src, join(dir, 'long.vmdk')]);
  assert.equal(long.status, 1);
  assert.match(long.stderr, /\[INVALID_OPTION\]/);
  // Failing midway: a streamOptimized source whose grain at 9M + 128K does not inflate.
  const so = join(dir, 'c.vmdk');
  assert.equal(qemuImg(['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', src, so]).status, 0);
  const bad = readFileSync(so);
  const sector = layoutOf(so).gtes[146]!;
  assert.ok(sector > 0);
  bad.fill(0xa5, sector * 512 + 12, sector * 512 + 40);
  writeFileSync(so, bad);
  for (const sub of ['monolithicSparse', 'streamOptimized']) {
    const r = await vmimg(['convert', '-O', 'vmdk', '-o', `subformat=${sub}`, so, join(dir, 'mid.vmdk')]);
    assert.notEqual(r.status, 0, `${sub}: the corrupt source must fail`);
    assert.match(r.stderr, /\[CORRUPT_IMAGE\]/, r.stderr);
  }
  assert.deepEqual(readdirSync(dir).sort(), ['c.vmdk', 'src.raw']);
});

test('SIGINT during a streamOptimized convert leaves neither target nor temporary file', async (t) => {
  const dir = tempDir(t);
  const src = join(dir, 'src.raw');
  writeFileSync(src, randomBytes(64 << 20));
  const out = join(dir, 'out.vmdk');
  const child = spawn(process.execPath, [MAIN, 'convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', src, out], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const temps = (): string[] => readdirSync(dir).filter((n) => n.startsWith('.vmimg-'));
  for (const deadline = Date.now() + 30_000; temps().length === 0; ) {
    if (Date.now() > deadline) throw new Error('no temporary file appeared');
    await new Promise((r) => setTimeout(r, 20));
  }
  child.kill('SIGINT');
  assert.equal(await exited, 130, stderr);
  assert.deepEqual(readdirSync(dir), ['src.raw']);
});
