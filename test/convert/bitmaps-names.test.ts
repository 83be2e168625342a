/**
 * convert --bitmaps keeps bitmap names byte for byte, as qemu-img does, also when they are not
 * UTF-8 (qcow2 does not require it; QEMU handles names as C strings). Two such names that decode
 * to the same string ("x\xff\xfey" and "x\xfe\xffy" both read as "x\uFFFD\uFFFDy") stay two
 * bitmaps, each with its own bits. Checked against qemu-img's target of the same source: the same
 * directory (name bytes, flags, granularity) and, read by QEMU over NBD after both targets' names
 * are patched back to ASCII, the same dirty areas.
 */
import assert from 'node:assert/strict';
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { vmimg } from '../helpers/cli.js';
import { dirtyRanges } from '../helpers/nbd.js';
import { oracle, qemuImg, run, tempDir } from '../helpers/oracle.js';
import { bitmapDirectory } from '../helpers/qcow2-bitmaps.js';

function ok(r: { status: number; stderr: string }, what: string): void {
  assert.equal(r.status, 0, `${what}: ${r.stderr}`);
}

/** The bitmap directory of `path` with names as hex (they need not be UTF-8). */
function directory(path: string): Array<{ at: number; name: string; flags: number; granularityBits: number }> {
  return bitmapDirectory(path).map((e) => ({ at: e.at, name: e.nameBytes.toString('hex'), flags: e.flags, granularityBits: e.granularityBits }));
}

/** Overwrites the name bytes `from` of a bitmap of `path` with `to` (same length). */
function rename(path: string, from: Buffer, to: Buffer): void {
  const entry = directory(path).find((e) => e.name === from.toString('hex'));
  assert.ok(entry, `no bitmap ${from.toString('hex')} in ${path}`);
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, to, 0, to.length, entry.at + 24);
  } finally {
    closeSync(fd);
  }
}

test('convert --bitmaps: names that are not UTF-8 are copied byte for byte, and two that decode alike stay apart', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io') || !oracle(t, 'qemu-nbd')) return;
  const dir = tempDir(t, 'vmimg-bitmap-names-');
  const src = join(dir, 'src.qcow2');
  ok(qemuImg(['create', '-q', '-f', 'qcow2', src, '4M']), 'create');
  const io = (cmd: string): void => ok(run('qemu-io', ['-f', 'qcow2', '-c', cmd, src]), cmd);
  ok(qemuImg(['bitmap', '--add', '-f', 'qcow2', src, 'xAAy']), 'add xAAy');
  io('write 0 64k');
  ok(qemuImg(['bitmap', '--disable', '-f', 'qcow2', src, 'xAAy']), 'disable xAAy');
  ok(qemuImg(['bitmap', '--add', '-g', '4096', '-f', 'qcow2', src, 'xBBy']), 'add xBBy');
  io('write 1M 8k');
  const first = Buffer.from([0x78, 0xff, 0xfe, 0x79]);
  const second = Buffer.from([0x78, 0xfe, 0xff, 0x79]);
  rename(src, Buffer.from('xAAy'), first);
  rename(src, Buffer.from('xBBy'), second);

  const q = join(dir, 'q.qcow2');
  const v = join(dir, 'v.qcow2');
  ok(qemuImg(['convert', '--bitmaps', '-O', 'qcow2', src, q]), 'qemu-img convert');
  const ours = await vmimg(['convert', '--bitmaps', '-O', 'qcow2', src, v]);
  assert.equal(ours.status, 0, ours.stderr);
  assert.ok(qemuImg(['check', v]).status === 0, 'check');

  const wanted = [
    { name: first.toString('hex'), flags: 0, granularityBits: 16 },
    { name: second.toString('hex'), flags: 2, granularityBits: 12 },
  ];
  const summary = (path: string) => directory(path).map(({ name, flags, granularityBits }) => ({ name, flags, granularityBits }));
  assert.deepEqual(summary(q), wanted);
  assert.deepEqual(summary(v), wanted);

  for (const image of [q, v]) {
    rename(image, first, Buffer.from('xAAy'));
    rename(image, second, Buffer.from('xBBy'));
  }
  const theirs = dirtyRanges(t, q, ['xAAy', 'xBBy']);
  assert.deepEqual(theirs.get('xAAy'), [[0, 65536]]);
  assert.deepEqual(theirs.get('xBBy'), [[1048576, 8192]]);
  assert.deepEqual(dirtyRanges(t, v, ['xAAy', 'xBBy']), theirs);
});

test('convert -n --bitmaps into a target that has bitmaps keeps non-UTF-8 source names byte for byte, as qemu-img does', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t, 'vmimg-bitmap-names-');
  const src = join(dir, 'src.qcow2');
  ok(qemuImg(['create', '-q', '-f', 'qcow2', src, '4M']), 'create');
  ok(qemuImg(['bitmap', '--add', '-f', 'qcow2', src, 'xAAy']), 'add xAAy');
  ok(run('qemu-io', ['-f', 'qcow2', '-c', 'write 0 64k', src]), 'write');
  const name = Buffer.from([0x78, 0xff, 0xfe, 0x79]);
  rename(src, Buffer.from('xAAy'), name);
  const targets = [join(dir, 'q.qcow2'), join(dir, 'v.qcow2')];
  for (const target of targets) {
    ok(qemuImg(['create', '-q', '-f', 'qcow2', target, '4M']), 'create target');
    ok(qemuImg(['bitmap', '--add', '-f', 'qcow2', target, 'tgt']), 'add tgt');
  }
  ok(qemuImg(['convert', '-n', '--bitmaps', '-O', 'qcow2', src, targets[0]!]), 'qemu-img convert -n');
  const ours = await vmimg(['convert', '-n', '--bitmaps', '-O', 'qcow2', src, targets[1]!]);
  assert.equal(ours.status, 0, ours.stderr);
  const names = (path: string) => directory(path).map((e) => e.name);
  assert.deepEqual(names(targets[0]!), [Buffer.from('tgt').toString('hex'), name.toString('hex')]);
  assert.deepEqual(names(targets[1]!), names(targets[0]!));
  assert.equal(qemuImg(['check', targets[1]!]).status, 0);
});

test('measure: the bitmaps size counts a name that is not UTF-8 by its stored bytes, as qemu-img measure does', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-bitmap-names-');
  const src = join(dir, 'src.qcow2');
  ok(qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', src, '4M']), 'create');
  const ascii = Buffer.alloc(600, 'A');
  ok(qemuImg(['bitmap', '--add', '-f', 'qcow2', src, ascii.toString()]), 'add');
  // 600 bytes 0xff: 1800 bytes once decoded (U+FFFD each) and encoded again.
  rename(src, ascii, Buffer.alloc(600, 0xff));
  const args = ['measure', '--output=json', '-O', 'qcow2', '-o', 'cluster_size=512', src];
  const theirs = qemuImg(args);
  ok(theirs, 'qemu-img measure');
  const ours = await vmimg(args);
  assert.equal(ours.status, 0, ours.stderr);
  assert.equal(JSON.parse(theirs.stdout).bitmaps, 2048);
  assert.deepEqual(JSON.parse(ours.stdout), JSON.parse(theirs.stdout));
});
