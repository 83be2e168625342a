/**
 * convert -n into a qcow2 target that already has persistent bitmaps, next to qemu-img 7.2: the
 * copy's writes (and, without --target-is-zero, its zero writes) dirty the target's enabled
 * bitmaps, disabled ones stay; with --bitmaps the source's bitmaps are added after the target's,
 * and a name that exists fails ("Bitmap already exists", exit 1) after the data is copied, the
 * bitmaps created before it (qemu-img walks the source's last first) kept. Judged by qemu-img
 * info, check, compare and the dirty areas QEMU reads through qemu-nbd.
 */
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { vmimg } from '../helpers/cli.js';
import { dirtyRanges } from '../helpers/nbd.js';
import { setInUse } from '../helpers/qcow2-bitmaps.js';
import { oracle, qemuImg, qemuInfo, run, tempDir } from '../helpers/oracle.js';

const SIZE = 6 * 1024 * 1024 + 512;

function ok(r: { status: number; stderr: string }, what: string): void {
  assert.equal(r.status, 0, `${what}: ${r.stderr}`);
}

function qemuIo(image: string, commands: string[]): void {
  ok(run('qemu-io', ['-f', 'qcow2', ...commands.flatMap((c) => ['-c', c]), image]), `qemu-io ${commands.join('; ')}`);
}

function addBitmap(path: string, name: string, ...opts: string[]): void {
  ok(qemuImg(['bitmap', '--add', ...opts, '-f', 'qcow2', path, name]), `bitmap --add ${name}`);
}

function bitmapNames(path: string): string[] {
  const b = (qemuInfo(path)['format-specific'] as { data: Record<string, unknown> }).data['bitmaps'] as Array<{ name: string }> | undefined;
  return (b ?? []).map((x) => x.name);
}

function bitmapsOf(path: string): unknown {
  return (qemuInfo(path)['format-specific'] as { data: Record<string, unknown> }).data['bitmaps'];
}

test('convert -n into a target with bitmaps: the same bitmaps, flags and dirty areas as qemu-img', { timeout: 300_000 }, async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io') || !oracle(t, 'qemu-nbd')) return;
  const dir = tempDir(t);
  const src = join(dir, 'src.qcow2');
  ok(qemuImg(['create', '-q', '-f', 'qcow2', src, String(SIZE)]), 'create source');
  addBitmap(src, 's1', '-g', '512');
  addBitmap(src, 's2', '-g', '64k');
  addBitmap(src, 'dup', '-g', '1M');
  qemuIo(src, ['write -P 1 1M 4k', 'write -P 2 3000000 70000', 'write -z 4M 64k']);
  const target = join(dir, 'target.qcow2');
  ok(qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', target, String(SIZE)]), 'create target');
  addBitmap(target, 'dup', '-g', '128k');
  addBitmap(target, 'frozen', '-g', '1M');
  qemuIo(target, ['write -P 3 5M 1']);
  ok(qemuImg(['bitmap', '--disable', '-f', 'qcow2', target, 'frozen']), 'disable frozen');
  const noDup = join(dir, 'target-nodup.qcow2');
  copyFileSync(target, noDup);
  ok(qemuImg(['bitmap', '--remove', '-f', 'qcow2', noDup, 'dup']), 'remove dup');
  // A target whose only bitmap is in use (inconsistent): kept as it is, the new ones added.
  const inUse = join(dir, 'target-in-use.qcow2');
  copyFileSync(noDup, inUse);
  setInUse(inUse, 'frozen');

  const cases: Array<{ name: string; base: string; args: string[]; status: number }> = [
    { name: 'plain', base: target, args: [], status: 0 },
    { name: 'target-is-zero', base: target, args: ['--target-is-zero'], status: 0 },
    { name: 'bitmaps', base: noDup, args: ['--bitmaps'], status: 0 },
    { name: 'bitmaps, target in use', base: inUse, args: ['--bitmaps'], status: 0 },
    // 'dup' is walked first (the source's last bitmap): nothing is added.
    { name: 'bitmaps, name exists', base: target, args: ['--bitmaps'], status: 1 },
  ];
  for (const c of cases) {
    const theirs = join(dir, `q-${c.name.replace(/\W+/g, '-')}.qcow2`);
    const ours = join(dir, `v-${c.name.replace(/\W+/g, '-')}.qcow2`);
    copyFileSync(c.base, theirs);
    copyFileSync(c.base, ours);
    const q = qemuImg(['convert', '-n', ...c.args, '-O', 'qcow2', src, theirs]);
    const v = await vmimg(['convert', '-n', ...c.args, '-O', 'qcow2', src, ours]);
    assert.equal(q.status, c.status, `${c.name}: qemu-img ${q.stderr}`);
    assert.equal(v.status, c.status, `${c.name}: vmimg ${v.stderr}`);
    assert.equal(v.stderr.replace(/^vmimg: (.*) \[\w+\]$/gm, '$1'), q.stderr.replace(/^qemu-img: /gm, ''), c.name);
    assert.deepEqual(bitmapsOf(ours), bitmapsOf(theirs), `${c.name}: info bitmaps`);
    const check = JSON.parse(qemuImg(['check', '--output=json', ours]).stdout) as Record<string, unknown>;
    assert.equal(check['leaks'] ?? 0, 0, `${c.name}: leaks`);
    assert.equal(check['corruptions'] ?? 0, 0, `${c.name}: corruptions`);
    ok(qemuImg(['compare', theirs, ours]), `${c.name}: compare`);
    const names = bitmapNames(theirs).filter((n) => !(c.base === inUse && n === 'frozen'));
    assert.deepEqual(dirtyRanges(t, ours, names), dirtyRanges(t, theirs, names), `${c.name}: dirty areas`);
  }
});

test('convert -n --bitmaps: a name that exists further on keeps the bitmaps qemu-img created before it', { timeout: 300_000 }, async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io') || !oracle(t, 'qemu-nbd')) return;
  const dir = tempDir(t);
  const src = join(dir, 'src.qcow2');
  ok(qemuImg(['create', '-q', '-f', 'qcow2', src, String(SIZE)]), 'create source');
  for (const n of ['a', 'b', 'c', 'd']) addBitmap(src, n, '-g', '64k');
  qemuIo(src, ['write -P 1 2M 100k']);
  const theirs = join(dir, 'q.qcow2');
  const ours = join(dir, 'v.qcow2');
  ok(qemuImg(['create', '-q', '-f', 'qcow2', theirs, String(SIZE)]), 'create target');
  addBitmap(theirs, 'b', '-g', '512', '--disable');
  copyFileSync(theirs, ours);
  const q = qemuImg(['convert', '-n', '--bitmaps', '--target-is-zero', '-O', 'qcow2', src, theirs]);
  const v = await vmimg(['convert', '-n', '--bitmaps', '--target-is-zero', '-O', 'qcow2', src, ours]);
  assert.equal(q.status, 1);
  assert.equal(v.status, 1);
  assert.equal(v.stderr.replace(/^vmimg: (.*) \[\w+\]$/gm, '$1'), q.stderr.replace(/^qemu-img: /gm, ''));
  assert.deepEqual(bitmapNames(theirs), ['b', 'c', 'd']);
  assert.deepEqual(bitmapsOf(ours), bitmapsOf(theirs));
  ok(qemuImg(['check', ours]), 'check');
  assert.deepEqual(dirtyRanges(t, ours, ['b', 'c', 'd']), dirtyRanges(t, theirs, ['b', 'c', 'd']));
});
