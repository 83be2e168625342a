/**
 * convert and compare on the command line next to qemu-img 7.2: compare's messages and exit
 * statuses, several sources concatenated, and -S deciding what becomes unallocated exactly as
 * qemu-img decides it (the map of vmimg's output equals the map of qemu-img's, offsets aside).
 */
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { vmimg } from '../helpers/cli.js';
import { rawWithWrites } from '../helpers/images.js';
import { oracle, qemuImg, qemuInfo, run, tempDir } from '../helpers/oracle.js';

test('compare: messages and exit statuses equal qemu-img compare', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const a = rawWithWrites(join(dir, 'a.raw'), '1M', ['write -P 1 0 64k', 'write -P 2 200k 4k']);
  const b = rawWithWrites(join(dir, 'b.raw'), '2M', ['write -P 3 1M 8k']);
  const c = rawWithWrites(join(dir, 'c.raw'), '2M', ['write -P 1 0 64k', 'write -P 2 200k 4k']);
  const d = rawWithWrites(join(dir, 'd.raw'), '2M', ['write -P 1 0 64k', 'write -P 2 200k 4k', 'write -P 9 1536k 512']);
  const e = rawWithWrites(join(dir, 'e.raw'), '1M', ['write -P 1 0 64k', 'write -P 2 200k 4k', 'write -P 7 204811 1']);
  const q = join(dir, 'a.qcow2');
  assert.equal(qemuImg(['convert', '-O', 'qcow2', a, q]).status, 0);
  // -s compares the whole block-status word, BDRV_BLOCK_EOF included: a run reaching the end
  // of one image but not of the other is a mismatch where the run starts (f: data to the end;
  // g: f's first 64 KiB, then a hole; h: qcow2 with 512-byte clusters, whose runs stop at each L2 table).
  const f = rawWithWrites(join(dir, 'f.raw'), '1M', ['write -P 1 0 1M']);
  const g = rawWithWrites(join(dir, 'g.raw'), '1M', ['write -P 1 0 64k']);
  const h = join(dir, 'h.qcow2');
  assert.equal(qemuImg(['convert', '-O', 'qcow2', '-o', 'cluster_size=512', f, h]).status, 0);
  const cases = [[a, a], [a, q], [a, b], ['-s', a, b], [a, c], ['-s', a, c], [a, d], [a, e], ['-f', 'raw', '-F', 'qcow2', a, q], [a, join(dir, 'missing.raw')]];
  cases.push(['-s', a, f], ['-s', f, g], ['-s', g, f], ['-s', f, h], ['-s', h, f], ['-s', f, f], ['-s', q, a]);
  for (const args of cases) {
    const theirs = qemuImg(['compare', ...args]);
    const ours = await vmimg(['compare', ...args]);
    assert.equal(ours.status, theirs.status, `compare ${args.join(' ')}: ${ours.stderr}`);
    assert.equal(ours.stdout, theirs.stdout, `compare ${args.join(' ')}`);
  }
});

test('several sources are concatenated like qemu-img convert does', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const a = rawWithWrites(join(dir, 'a.raw'), '1M', ['write -P 1 0 64k', 'write -P 2 1020k 4k']);
  const b = rawWithWrites(join(dir, 'b.raw'), '3M', ['write -P 3 1M 8k']);
  const c = join(dir, 'c.qcow2');
  assert.equal(qemuImg(['convert', '-O', 'qcow2', a, c]).status, 0);
  const theirs = join(dir, 'theirs.qcow2');
  const ours = join(dir, 'ours.qcow2');
  assert.equal(qemuImg(['convert', '-O', 'qcow2', a, b, c, theirs]).status, 0);
  const r = await vmimg(['convert', '-O', 'qcow2', a, b, c, ours]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(qemuImg(['check', ours]).status, 0);
  const info = JSON.parse(qemuImg(['info', '--output=json', ours]).stdout) as { 'virtual-size': number };
  assert.equal(info['virtual-size'], 5 * 1024 * 1024);
  assert.equal(qemuImg(['compare', '-s', theirs, ours]).status, 0);
});

test('-S decides holes like qemu-img: the output maps equal qemu-img output maps', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  // Zero runs of 2k, 4k, 8k, 64k and 1M between data, some unaligned.
  const src = rawWithWrites(join(dir, 'src.raw'), '4M', ['write -P 1 0 10k', 'write -P 2 12k 4k', 'write -P 3 20k 6k', 'write -P 4 34k 30k', 'write -P 5 128k 64k', 'write -P 6 1280k 4k', 'write -z 2M 1M', 'write -P 7 3584k 512']);
  // Host offsets differ by design (qemu-img interleaves L2 tables with data, vmimg appends
  // them), and so does where qemu-img splits entries at non-contiguous offsets: compare the
  // flags per guest range, adjacent equal ranges merged.
  type Entry = { start: number; length: number; depth: number; present: boolean; zero: boolean; data: boolean };
  const strip = (json: string): Entry[] => {
    const out: Entry[] = [];
    for (const { start, length, depth, present, zero, data } of JSON.parse(json) as Entry[]) {
      const prev = out[out.length - 1];
      if (prev && prev.depth === depth && prev.present === present && prev.zero === zero && prev.data === data) prev.length += length;
      else out.push({ start, length, depth, present, zero, data });
    }
    return out;
  };
  // A source whose runs start off 4 KiB boundaries (512-byte clusters over a 64 KiB-cluster
  // base, zeros written inside data): zero blocks are found at absolute offsets, not per run.
  const base = join(dir, 'base.qcow2');
  const overlay = join(dir, 'ov.qcow2');
  assert.equal(qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', src, base]).status, 0);
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', '-b', base, '-F', 'qcow2', overlay]).status, 0);
  const io = ['write -P 0x33 1536 3k', 'write -z 9728 5k', 'write -P 0 20480 4608', 'write -P 0x44 30208 512', 'write -P 0 1282560 6k'];
  assert.equal(run('qemu-io', ['-f', 'qcow2', ...io.flatMap((c) => ['-c', c]), overlay]).status, 0);
  // extended_l2: a run inside a new cluster allocates only the subclusters it covers.
  for (const [fmt, opts, source] of [
    ['raw', [], src],
    ['qcow2', [], src],
    ['qcow2', ['-o', 'cluster_size=4k'], src],
    ['qcow2', ['-o', 'extended_l2=on'], src],
    ['qcow2', ['-o', 'extended_l2=on,cluster_size=16k'], src],
    ['raw', [], overlay],
    ['qcow2', ['-o', 'cluster_size=4k'], overlay],
  ] as const) {
    // (-S above the target's granularity over the overlay differs: see docs/convert.md.)
    for (const sparse of source === src ? [undefined, '0', '8k', '64k'] : [undefined, '0', '8k']) {
      const s = sparse === undefined ? [] : ['-S', sparse];
      const theirs = join(dir, `t.${fmt}`);
      const ours = join(dir, `o.${fmt}`);
      assert.equal(qemuImg(['convert', '-O', fmt, ...opts, ...s, source, theirs]).status, 0);
      const r = await vmimg(['convert', '-O', fmt, ...opts, ...s, source, ours]);
      assert.equal(r.status, 0, r.stderr);
      const label = `${source === src ? 'raw' : 'overlay'} → ${fmt} ${opts.join(' ')} -S ${sparse ?? 'default'}`;
      assert.equal(qemuImg(['compare', source, ours]).status, 0, label);
      const mt = qemuImg(['map', '--output=json', '-f', fmt, theirs]).stdout;
      const mo = qemuImg(['map', '--output=json', '-f', fmt, ours]).stdout;
      assert.deepEqual(strip(mo), strip(mt), label);
    }
  }
});

test('-p draws a progress bar on stderr that ends at 100% (the real executable, whose stderr cli-progress writes)', async (t) => {
  const dir = tempDir(t);
  const { writeFileSync } = await import('node:fs');
  const { spawnSync } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const exe = fileURLToPath(new URL('../../src/cli/vmimg.cjs', import.meta.url));
  writeFileSync(join(dir, 'src.raw'), Buffer.alloc(3 << 20, 5));
  const convert = (extra: string[], out: string) =>
    spawnSync(process.execPath, [exe, 'convert', ...extra, '-f', 'raw', '-O', 'qcow2', join(dir, 'src.raw'), join(dir, out)], { encoding: 'utf8' });
  const r = convert(['-p'], 'out.qcow2');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /\(100\/100%\) \[[^\]]+\] 3\/3 MiB/);
  const quiet = convert([], 'out2.qcow2');
  assert.equal(quiet.status, 0, quiet.stderr);
  assert.equal(quiet.stderr, '');
});

test('convert -O raw writes the first block as qemu-img\'s target creation does: the output maps are the same', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  // Holes at the start (after the 4 KiB qemu-img create wrote), data at 64k, a short image.
  const big = rawWithWrites(join(dir, 'big.raw'), '1M', ['write -z 0 64k', 'write -P 5 64k 4k']);
  const small = rawWithWrites(join(dir, 'small.raw'), '3000', []);
  for (const src of [big, small]) {
    const q = join(dir, 'q.qcow2');
    assert.equal(qemuImg(['convert', '-O', 'qcow2', src, q]).status, 0);
    for (const from of [src, q]) {
      const theirs = join(dir, 't.raw');
      const ours = join(dir, 'o.raw');
      assert.equal(qemuImg(['convert', '-O', 'raw', from, theirs]).status, 0);
      const r = await vmimg(['convert', '-O', 'raw', from, ours]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(qemuImg(['map', '--output=json', '-f', 'raw', ours]).stdout, qemuImg(['map', '--output=json', '-f', 'raw', theirs]).stdout, from);
    }
  }
});

test('convert -B / -o backing_file: the output maps like qemu-img\'s for sources with and without a backing file, v2 and v3', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const src = rawWithWrites(join(dir, 'src.raw'), '4M', ['write -P 1 0 64k', 'write -P 2 1M 4k', 'write -z 2M 64k', 'write -P 3 3M 1M']);
  const base = join(dir, 'base.qcow2');
  assert.equal(qemuImg(['convert', '-O', 'qcow2', src, base]).status, 0);
  const top = join(dir, 'top.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top]).status, 0);
  assert.equal(run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 7 512k 1M', '-c', 'write -z 0 64k', top]).status, 0);
  const map = (path: string): string => qemuImg(['map', '--output=json', path]).stdout.replace(/, "offset": \d+/g, '');
  // base.qcow2 as its own source: its unallocated clusters read as zeros (no backing file), so
  // they are masked over the new backing file, not left to it.
  for (const source of [src, top, base]) {
    for (const backing of [['-B', base, '-F', 'qcow2'], ['-o', `backing_file=${base},backing_fmt=qcow2`]]) {
      for (const compat of ['1.1', '0.10']) {
        const args = ['convert', '-O', 'qcow2', '-o', `compat=${compat}`, ...backing, source];
        const theirs = join(dir, 't.qcow2');
        const ours = join(dir, 'o.qcow2');
        assert.equal(qemuImg([...args, theirs]).status, 0);
        const r = await vmimg([...args, ours]);
        const label = args.join(' ');
        assert.equal(r.status, 0, `${label}: ${r.stderr}`);
        assert.equal(qemuImg(['compare', source, ours]).status, 0, label);
        assert.equal(map(ours), map(theirs), label);
      }
    }
  }
  // Refusals and acceptances qemu-img has.
  const multi = await vmimg(['convert', '-O', 'qcow2', '-B', base, '-F', 'qcow2', src, top, join(dir, 'm.qcow2')]);
  assert.equal(multi.status, 1);
  assert.match(multi.stderr, /Having a backing file for the target makes no sense when concatenating multiple input images/);
  const noFmt = await vmimg(['convert', '-O', 'qcow2', '-o', `backing_file=${base}`, src, join(dir, 'm.qcow2')]);
  assert.equal(noFmt.status, 1);
  assert.match(noFmt.stderr, /Use of backing file requires explicit backing format/);
  // -o size is overridden by the source's size; -r (rate limit) is accepted.
  const sized = await vmimg(['convert', '-O', 'qcow2', '-o', 'size=1M', '-r', '10M', src, join(dir, 's.qcow2')]);
  assert.equal(sized.status, 0, sized.stderr);
  assert.equal(qemuInfo(join(dir, 's.qcow2'))['virtual-size'], 4 * 1024 * 1024);
});

test('convert refuses a target that the sources read (a source, a backing file), as qemu-img\'s write lock does; the file is left as it was', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const base = join(dir, 'base.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', base, '1M']).status, 0);
  const top = join(dir, 'top.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top]).status, 0);
  assert.equal(run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 9 0 64k', top]).status, 0);
  const before = readFileSync(base);
  for (const args of [['-O', 'qcow2', top, base], ['-O', 'qcow2', top, top], ['-n', '-O', 'qcow2', top, base]]) {
    const theirs = qemuImg(['convert', ...args]);
    const ours = await vmimg(['convert', ...args]);
    assert.equal(theirs.status, 1, args.join(' '));
    assert.equal(ours.status, 1, args.join(' '));
    assert.match(ours.stderr, /Failed to get "write" lock/);
    assert.ok(readFileSync(base).equals(before), args.join(' '));
  }
  assert.equal(qemuImg(['check', top]).status, 0);
});

test('flags qemu-img 7.2 accepts (-T, -C, -r, -o help without files): same exit status, same stdout', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const src = rawWithWrites(join(dir, 'src.raw'), '1M', ['write -P 1 0 64k']);
  const out = join(dir, 'o.img');
  const v3 = join(dir, 'v3.qcow2');
  const v2 = join(dir, 'v2.qcow2');
  assert.equal(qemuImg(['convert', '-O', 'qcow2', src, v3]).status, 0);
  assert.equal(qemuImg(['convert', '-O', 'qcow2', '-o', 'compat=0.10', src, v2]).status, 0);
  const cases = [
    // --bitmaps: qemu-img's checks; with no bitmap to copy it succeeds.
    ['convert', '--bitmaps', '-O', 'qcow2', v3, out],
    ['convert', '--bitmaps', '-O', 'qcow2', v2, out],
    ['convert', '--bitmaps', '-O', 'qcow2', src, out],
    ['convert', '--bitmaps', '-O', 'qcow2', v3, v3, out],
    ['convert', '--bitmaps', '-O', 'vmdk', v3, out],
    ['convert', '--bitmaps', '-O', 'qcow2', '-o', 'compat=0.10', v3, out],
    ['check', '-T', 'none', '-f', 'raw', src],
    ['check', '-T', 'bogus', src],
    ['compare', '-T', 'writeback', src, src],
    ['compare', '-T', 'bogus', src, src],
    ['convert', '-C', '-O', 'raw', src, out],
    ['convert', '-C', '-c', '-O', 'qcow2', src, out],
    ['convert', '-C', '-S', '0', '-O', 'raw', src, out],
    ['convert', '-T', 'bogus', '-O', 'raw', src, out],
    ['convert', '-r', '1M', '-O', 'raw', src, out],
    ['convert', '-O', 'raw', '-o', 'help'],
    ['convert', '-O', 'raw', '-o', 'help', src, out],
  ];
  for (const args of cases) {
    const theirs = qemuImg(args);
    const ours = await vmimg(args);
    assert.equal(ours.status, theirs.status, `${args.join(' ')}: ${ours.stderr}`);
    // -o help: vmimg lists the options it implements (create -o help does the same).
    if (!args.includes('help')) assert.equal(ours.stdout, theirs.stdout, args.join(' '));
    else assert.match(ours.stdout, /^Supported raw options:\n/);
    run('rm', ['-f', out]);
  }
  // A source that has bitmaps: both copy them (test/convert/bitmaps.test.ts compares the
  // content). Into an existing image (-n) that already has them both copy the data and then fail
  // on the name that exists ("Bitmap already exists"), leaving the same bitmaps
  // (test/convert/bitmaps-existing.test.ts compares more).
  assert.equal(qemuImg(['bitmap', '--add', v3, 'b0']).status, 0);
  const r = await vmimg(['convert', '--bitmaps', '-O', 'qcow2', v3, out]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual((qemuInfo(out)['format-specific'] as { data: Record<string, unknown> }).data['bitmaps'], [{ flags: ['auto'], name: 'b0', granularity: 65536 }]);
  const again = join(dir, 'again.qcow2');
  copyFileSync(out, again);
  const n = await vmimg(['convert', '-n', '--bitmaps', '-O', 'qcow2', v3, out]);
  assert.equal(n.status, 1);
  const q = qemuImg(['convert', '-n', '--bitmaps', '-O', 'qcow2', v3, again]);
  assert.equal(q.status, 1);
  assert.equal(q.stderr, 'qemu-img: Failed to create bitmap b0: Bitmap already exists: b0\n');
  assert.equal(n.stderr, 'vmimg: Failed to create bitmap b0: Bitmap already exists: b0 [INVALID_OPTION]\n');
  const bitmaps = (p: string): unknown => (qemuInfo(p)['format-specific'] as { data: Record<string, unknown> }).data['bitmaps'];
  assert.deepEqual(bitmaps(out), bitmaps(again));
  assert.equal(qemuImg(['check', out]).status, 0);
});
