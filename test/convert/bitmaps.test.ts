/**
 * convert --bitmaps next to qemu-img 7.2's: for every target layout (cluster sizes 512 B to
 * 2 MiB, extended L2, compressed, with a backing file) vmimg's target lists the same bitmaps
 * (name, granularity, flags) as qemu-img's target of the same source, passes qemu-img check,
 * holds the same data, fits in measure's required + bitmaps size, and — read by QEMU through
 * qemu-nbd, bitmap by bitmap — has the same dirty areas. Inconsistent (in_use) bitmaps: the same
 * refusal, or with --skip-broken-bitmaps the same warnings and the rest copied.
 */
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { vmimg } from '../helpers/cli.js';
import { writeRange } from '../helpers/images.js';
import { dirtyRanges } from '../helpers/nbd.js';
import { oracle, qemuImg, qemuInfo, run, tempDir } from '../helpers/oracle.js';
import { directoryEntryOf, setInUse } from '../helpers/qcow2-bitmaps.js';

/** 10 MiB + 512: a multiple of no granularity above 512 bytes. */
const SIZE = 10 * 1024 * 1024 + 512;

function ok(r: { status: number; stderr: string }, what: string): void {
  assert.equal(r.status, 0, `${what}: ${r.stderr}`);
}

function qemuIo(image: string, commands: string[]): void {
  ok(run('qemu-io', ['-f', 'qcow2', ...commands.flatMap((c) => ['-c', c]), image]), `qemu-io ${commands.join('; ')}`);
}

/**
 * A source whose bitmaps cover the cases: several granularities (QEMU's minimum 512 B, 64 KiB,
 * 4 MiB), one that was dirtied and then disabled, one disabled before any write (empty), one
 * added after the writes (empty, enabled), and 'all' whose bits are set only for [2M, 6M) and
 * 7M + 64k: whole clusters of ones in a 512-byte-cluster target.
 */
function makeSource(dir: string): { path: string; names: string[] } {
  const path = join(dir, 'src.qcow2');
  ok(qemuImg(['create', '-q', '-f', 'qcow2', path, String(SIZE)]), 'create');
  const add = (name: string, ...opts: string[]): void => ok(qemuImg(['bitmap', '--add', ...opts, '-f', 'qcow2', path, name]), `bitmap --add ${name}`);
  add('b64k');
  add('fine', '-g', '512');
  add('coarse', '-g', '4M');
  add('frozen', '-g', '128k');
  add('off', '--disable');
  qemuIo(path, ['write -P 1 0 64k', 'write -P 2 5M 1k', 'write -P 3 10M 512']);
  ok(qemuImg(['bitmap', '--disable', '-f', 'qcow2', path, 'frozen']), 'bitmap --disable frozen');
  add('all', '-g', '512');
  qemuIo(path, ['write -P 4 2M 4M', 'write -z 7M 64k']);
  add('empty', '-g', '1M');
  return { path, names: ['b64k', 'fine', 'coarse', 'frozen', 'off', 'all', 'empty'] };
}

/** qemu-img info without the fields that name the file or measure it. */
function infoWithout(path: string): Record<string, unknown> {
  const { filename: _f, ['actual-size']: _a, ...rest } = qemuInfo(path);
  return rest;
}

function bitmapsOf(path: string): unknown {
  return ((qemuInfo(path)['format-specific'] as { data: Record<string, unknown> }).data)['bitmaps'];
}

test('convert --bitmaps: same bitmaps and same dirty areas as qemu-img, for every target layout', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io') || !oracle(t, 'qemu-nbd')) return;
  const dir = tempDir(t);
  const { path: src, names } = makeSource(dir);
  const srcRanges = dirtyRanges(t, src, names);
  // The source is what the cases need: these have content, these are empty.
  for (const n of ['b64k', 'fine', 'coarse', 'frozen', 'all']) assert.ok(srcRanges.get(n)!.length > 0, `source bitmap ${n} has dirty areas`);
  for (const n of ['off', 'empty']) assert.deepEqual(srcRanges.get(n), [], `source bitmap ${n} is empty`);
  const base = join(dir, 'base.qcow2');
  ok(qemuImg(['create', '-q', '-f', 'qcow2', base, String(SIZE)]), 'create base');

  const layouts: Array<{ name: string; args: string[]; measure?: string[]; existing?: string[] }> = [
    { name: 'default', args: [], measure: [] },
    { name: 'cluster 512', args: ['-o', 'cluster_size=512'], measure: ['-o', 'cluster_size=512'] },
    { name: 'cluster 4k', args: ['-o', 'cluster_size=4k'], measure: ['-o', 'cluster_size=4k'] },
    { name: 'cluster 2M', args: ['-o', 'cluster_size=2M'], measure: ['-o', 'cluster_size=2M'] },
    { name: 'extended L2', args: ['-o', 'extended_l2=on'], measure: ['-o', 'extended_l2=on'] },
    { name: 'compressed', args: ['-c'] },
    { name: 'backing', args: ['-B', base, '-F', 'qcow2'] },
    // -n: into existing images (made by qemu-img create) that have no bitmaps.
    { name: 'existing', args: ['-n'], existing: [] },
    { name: 'existing 512 backing', args: ['-n'], existing: ['-o', 'cluster_size=512', '-b', base, '-F', 'qcow2'] },
  ];
  for (const l of layouts) {
    const theirs = join(dir, `q-${l.name.replace(/ /g, '-')}.qcow2`);
    const ours = join(dir, `v-${l.name.replace(/ /g, '-')}.qcow2`);
    if (l.existing) for (const f of [theirs, ours]) ok(qemuImg(['create', '-q', '-f', 'qcow2', ...l.existing, f, String(SIZE)]), `create ${f}`);
    ok(qemuImg(['convert', '--bitmaps', '-O', 'qcow2', ...l.args, src, theirs]), `qemu-img convert ${l.name}`);
    const r = await vmimg(['convert', '--bitmaps', '-O', 'qcow2', ...l.args, src, ours]);
    ok(r, `vmimg convert ${l.name}`);
    assert.equal(r.stderr, '', l.name);
    assert.deepEqual(bitmapsOf(ours), bitmapsOf(theirs), `${l.name}: info bitmaps`);
    if (l.existing) assert.deepEqual(infoWithout(ours), infoWithout(theirs), `${l.name}: info (backing file kept)`);
    const check = qemuImg(['check', '--output=json', ours]);
    ok(check, `${l.name}: check`);
    const c = JSON.parse(check.stdout) as Record<string, unknown>;
    assert.equal(c['leaks'] ?? 0, 0, `${l.name}: leaks`);
    assert.equal(c['corruptions'] ?? 0, 0, `${l.name}: corruptions`);
    ok(qemuImg(['compare', '-f', 'qcow2', '-F', 'qcow2', src, ours]), `${l.name}: compare`);
    assert.deepEqual(dirtyRanges(t, ours, names), dirtyRanges(t, theirs, names), `${l.name}: dirty areas`);
    assert.deepEqual(dirtyRanges(t, ours, names), srcRanges, `${l.name}: dirty areas equal the source's`);
    if (l.measure) {
      const m = qemuImg(['measure', '--output=json', '-O', 'qcow2', ...l.measure, src]);
      ok(m, `${l.name}: measure`);
      const { required, bitmaps } = JSON.parse(m.stdout) as { required: number; bitmaps: number };
      assert.ok(bitmaps > 0, `${l.name}: measure counts the bitmaps`);
      assert.ok(statSync(ours).size <= required + bitmaps, `${l.name}: ${statSync(ours).size} <= ${required} + ${bitmaps}`);
    }
  }
});

test('convert -n --bitmaps: the targets qemu-img refuses (qcow2 v2; another size), with its messages', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const { path: src } = makeSource(dir);
  for (const [name, create, size] of [
    ['v2', ['-o', 'compat=0.10'], SIZE],
    ['larger', [], 2 * SIZE],
  ] as const) {
    const theirs = join(dir, `q-${name}.qcow2`);
    const ours = join(dir, `v-${name}.qcow2`);
    for (const f of [theirs, ours]) ok(qemuImg(['create', '-q', '-f', 'qcow2', ...create, f, String(size)]), `create ${f}`);
    const q = qemuImg(['convert', '-n', '--bitmaps', '-O', 'qcow2', src, theirs]);
    const v = await vmimg(['convert', '-n', '--bitmaps', '-O', 'qcow2', src, ours]);
    assert.equal(q.status, 1, name);
    assert.equal(v.status, 1, name);
    assert.equal(v.stderr.replace(/^vmimg: (.*) \[\w+\]$/gm, '$1'), q.stderr.replace(/^qemu-img: /gm, ''), name);
    // v2: nothing copied; larger: the data copied, no bitmap (as qemu-img leaves it).
    ok(qemuImg(['compare', theirs, ours]), `${name}: compare`);
    ok(qemuImg(['check', ours]), `${name}: check`);
    assert.equal(bitmapsOf(ours), undefined, name);
  }
});

test('convert --bitmaps: an inconsistent bitmap is refused as qemu-img refuses it; --skip-broken-bitmaps skips it with the same warnings', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io') || !oracle(t, 'qemu-nbd')) return;
  const dir = tempDir(t);
  const { path: src, names } = makeSource(dir);
  for (const n of ['fine', 'frozen']) setInUse(src, n);
  const out = join(dir, 'out.qcow2');
  const theirs = qemuImg(['convert', '--bitmaps', '-O', 'qcow2', src, out]);
  const ours = await vmimg(['convert', '--bitmaps', '-O', 'qcow2', src, out]);
  assert.equal(theirs.status, 1);
  assert.equal(ours.status, 1);
  // QEMU walks the bitmaps last-loaded first: the error names 'frozen'.
  assert.match(theirs.stderr, /^qemu-img: Cannot copy inconsistent bitmap 'frozen'\n/);
  assert.match(ours.stderr, /^vmimg: Cannot copy inconsistent bitmap 'frozen' \(try --skip-broken-bitmaps.*\[INCONSISTENT_BITMAP\]\n$/);
  assert.equal(existsSync(out), false);
  for (const args of [['--skip-broken-bitmaps'], ['--skip-broken-bitmaps', '--bitmaps', '-O', 'raw']]) {
    const v = await vmimg(['convert', ...args, src, out]);
    assert.equal(existsSync(out), false, args.join(' '));
    // qemu-img finds out that raw has no bitmaps after creating the target, and leaves it.
    const q = qemuImg(['convert', ...args, src, out]);
    assert.equal(v.status, q.status, args.join(' '));
    assert.equal(v.stderr.replace(/^vmimg: (.*) \[\w+\]$/gm, '$1'), q.stderr.replace(/^qemu-img: /gm, ''), args.join(' '));
    run('rm', ['-f', out]);
  }

  const q = join(dir, 'q.qcow2');
  const v = join(dir, 'v.qcow2');
  const theirSkip = qemuImg(['convert', '--bitmaps', '--skip-broken-bitmaps', '-O', 'qcow2', src, q]);
  const ourSkip = await vmimg(['convert', '--bitmaps', '--skip-broken-bitmaps', '-O', 'qcow2', src, v]);
  ok(theirSkip, 'qemu-img --skip-broken-bitmaps');
  ok(ourSkip, 'vmimg --skip-broken-bitmaps');
  assert.equal(ourSkip.stderr.replace(/^vmimg: /gm, ''), theirSkip.stderr.replace(/^qemu-img: /gm, ''));
  assert.equal(ourSkip.stderr, "vmimg: warning: Skipping inconsistent bitmap 'frozen'\nvmimg: warning: Skipping inconsistent bitmap 'fine'\n");
  assert.deepEqual(bitmapsOf(v), bitmapsOf(q));
  const kept = names.filter((n) => n !== 'fine' && n !== 'frozen');
  assert.deepEqual(dirtyRanges(t, v, kept), dirtyRanges(t, q, kept));
  ok(qemuImg(['check', v]), 'check');

  // Every bitmap inconsistent: convert -n into an existing image skips them all, with the warnings.
  for (const n of kept) setInUse(src, n);
  const [qn, vn] = [join(dir, 'qn.qcow2'), join(dir, 'vn.qcow2')];
  for (const f of [qn, vn]) ok(qemuImg(['create', '-q', '-f', 'qcow2', f, String(SIZE)]), 'create');
  const theirN = qemuImg(['convert', '-n', '--bitmaps', '--skip-broken-bitmaps', '-O', 'qcow2', src, qn]);
  const ourN = await vmimg(['convert', '-n', '--bitmaps', '--skip-broken-bitmaps', '-O', 'qcow2', src, vn]);
  ok(theirN, 'qemu-img -n');
  ok(ourN, 'vmimg -n');
  assert.equal(ourN.stderr.replace(/^vmimg: /gm, ''), theirN.stderr.replace(/^qemu-img: /gm, ''));
  assert.equal(ourN.stderr.split('\n').length, names.length + 1);
  ok(qemuImg(['compare', qn, vn]), 'compare -n targets');
});

test('convert --bitmaps: a source table entry "all ones" (no data cluster) is read as QEMU reads it', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io') || !oracle(t, 'qemu-nbd')) return;
  const dir = tempDir(t);
  const src = join(dir, 'src.qcow2');
  ok(qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', src, String(SIZE)]), 'create');
  ok(qemuImg(['bitmap', '--add', '-g', '512', '-f', 'qcow2', src, 'ones']), 'bitmap --add');
  qemuIo(src, ['write -P 1 1M 4k']);
  // 512-byte clusters: bitmap bytes 0..511 (the first 2 MiB) are table entry 0 → "all ones".
  const { tableOffset } = directoryEntryOf(src, 'ones');
  writeRange(src, tableOffset, Buffer.from([0, 0, 0, 0, 0, 0, 0, 1]));
  const q = join(dir, 'q.qcow2');
  const v = join(dir, 'v.qcow2');
  ok(qemuImg(['convert', '--bitmaps', '-O', 'qcow2', src, q]), 'qemu-img convert');
  ok(await vmimg(['convert', '--bitmaps', '-O', 'qcow2', src, v]), 'vmimg convert');
  const theirs = dirtyRanges(t, q, ['ones']);
  assert.deepEqual(theirs.get('ones'), [[0, 2 * 1024 * 1024]]);
  assert.deepEqual(dirtyRanges(t, v, ['ones']), theirs);
  ok(qemuImg(['check', v]), 'check');
});

test('convert --bitmaps: a full source with full bitmaps fits where qemu-img says (required + bitmaps), or needs no more than qemu-img', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  // 2949120 bytes with 512-byte clusters: the bitmap clusters need one more refcount block than
  // measure counts (it counts none for them), for qemu-img's target as for vmimg's.
  for (const size of [4 * 1024 * 1024, 2949120]) {
    const src = join(dir, `full-${size}.qcow2`);
    ok(qemuImg(['create', '-q', '-f', 'qcow2', src, String(size)]), 'create');
    for (const n of ['a', 'b', 'c', 'd']) ok(qemuImg(['bitmap', '--add', '-g', '512', '-f', 'qcow2', src, n]), `bitmap --add ${n}`);
    qemuIo(src, [`write -P 1 0 ${size}`]);
    for (const cs of [512, 4096, 65536]) {
      const o = ['-o', `cluster_size=${cs}`];
      const q = join(dir, `q-${size}-${cs}.qcow2`);
      const v = join(dir, `v-${size}-${cs}.qcow2`);
      ok(qemuImg(['convert', '--bitmaps', '-O', 'qcow2', ...o, src, q]), 'qemu-img convert');
      ok(await vmimg(['convert', '--bitmaps', '-O', 'qcow2', ...o, src, v]), 'vmimg convert');
      const { required, bitmaps } = JSON.parse(qemuImg(['measure', '--output=json', '-O', 'qcow2', ...o, src]).stdout) as { required: number; bitmaps: number };
      const theirs = Math.ceil(statSync(q).size / cs) * cs;
      const ours = statSync(v).size;
      assert.ok(ours <= Math.max(required + bitmaps, theirs), `${size}, ${cs}: ${ours} <= max(${required} + ${bitmaps}, ${theirs})`);
      if (size === 4 * 1024 * 1024) assert.ok(ours <= required + bitmaps, `${size}, ${cs}: ${ours} <= ${required} + ${bitmaps}`);
      assert.deepEqual(bitmapsOf(v), bitmapsOf(q));
      ok(qemuImg(['check', v]), 'check');
    }
  }
});
