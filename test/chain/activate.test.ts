/**
 * A writable open that is refused leaves the image file as it was (Image.activate, run by
 * openChain once the chain is open): a qcow2 with persistent bitmaps used to have them marked in
 * use and stored again (the file rewritten) before its backing chain was found missing or its
 * data file found to be a file of that chain. qemu-img refuses both without touching the image.
 * convert -n's own refusals after the open (a target smaller than the source) leave it untouched
 * too: it activates the target only after them.
 */
import assert from 'node:assert/strict';
import { linkSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { vmimg } from '../helpers/cli.js';
import { oracle, qemuImg, qemuInfo, tempDir } from '../helpers/oracle.js';

function ok(r: { status: number; stderr: string }, what: string): void {
  assert.equal(r.status, 0, `${what}: ${r.stderr}`);
}

test('convert -n into a qcow2 with bitmaps whose backing file is missing fails and leaves it byte-identical', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-activate-');
  const base = join(dir, 'base.qcow2');
  const top = join(dir, 't.qcow2');
  const src = join(dir, 's.raw');
  ok(qemuImg(['create', '-f', 'qcow2', base, '8M']), 'create base');
  ok(qemuImg(['create', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top, '8M']), 'create top');
  ok(qemuImg(['bitmap', '--add', '-f', 'qcow2', top, 'b0']), 'bitmap --add');
  ok(qemuImg(['create', '-f', 'raw', src, '8M']), 'create source');
  unlinkSync(base);
  const before = readFileSync(top);
  const r = await vmimg(['convert', '-n', '-f', 'raw', '-O', 'qcow2', src, top]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /BACKING_NOT_FOUND/);
  assert.ok(readFileSync(top).equals(before), 'the image changed');
  // With its backing file back, QEMU still finds the bitmap consistent and the image clean.
  ok(qemuImg(['create', '-f', 'qcow2', base, '8M']), 'recreate base');
  ok(qemuImg(['check', top]), 'check');
  const bitmaps = (qemuInfo(top)['format-specific'] as { data: { bitmaps: Array<{ name: string; flags: string[] }> } }).data.bitmaps;
  assert.deepEqual(bitmaps.map((b) => [b.name, b.flags]), [['b0', ['auto']]]);
});

test('convert -n into a qcow2 with bitmaps whose data file is its own backing file is refused and leaves both files byte-identical', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-activate-');
  const data = join(dir, 'd.raw');
  const backing = join(dir, 'b.raw');
  const top = join(dir, 't.qcow2');
  const src = join(dir, 's.raw');
  ok(qemuImg(['create', '-f', 'raw', data, '4M']), 'create data file');
  linkSync(data, backing); // one inode under two names: the data file is the backing file
  ok(qemuImg(['create', '-f', 'qcow2', '-o', `data_file=${data}`, '-b', backing, '-F', 'raw', top, '4M']), 'create top');
  ok(qemuImg(['bitmap', '--add', '-f', 'qcow2', top, 'b0']), 'bitmap --add');
  ok(qemuImg(['create', '-f', 'raw', src, '4M']), 'create source');
  const before = readFileSync(top);
  const dataBefore = readFileSync(data);
  const r = await vmimg(['convert', '-n', '-f', 'raw', '-O', 'qcow2', src, top]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /REFERENCE_DENIED/);
  assert.ok(readFileSync(top).equals(before), 'the image changed');
  assert.ok(readFileSync(data).equals(dataBefore), 'the data file changed');
});

test('convert -n into a qcow2 with bitmaps that is smaller than the source is refused and leaves it byte-identical', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-activate-');
  const top = join(dir, 't.qcow2');
  const src = join(dir, 's.raw');
  ok(qemuImg(['create', '-f', 'qcow2', top, '4M']), 'create target');
  ok(qemuImg(['bitmap', '--add', '-f', 'qcow2', top, 'b0']), 'bitmap --add');
  ok(qemuImg(['create', '-f', 'raw', src, '8M']), 'create source');
  const before = readFileSync(top);
  const r = await vmimg(['convert', '-n', '-f', 'raw', '-O', 'qcow2', src, top]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /output image is smaller than input .*\[SIZE_OUT_OF_RANGE\]/);
  assert.ok(readFileSync(top).equals(before), 'the image changed');
});
