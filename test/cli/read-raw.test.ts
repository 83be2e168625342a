import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { vmimg } from '../helpers/cli.js';
import { oracle, qemuImg, run, tempDir } from '../helpers/oracle.js';

/** A sparse raw file with data at a few places, written by qemu-io. */
function sparseRaw(dir: string): string {
  const path = join(dir, 'sp.raw');
  writeFileSync(path, '');
  run('truncate', ['-s', '3000000', path]);
  const r = run('qemu-io', ['-f', 'raw', '-c', 'write -P 1 64k 4k', '-c', 'write -P 2 1M 1M', path]);
  assert.equal(r.status, 0, r.stderr);
  return path;
}

test('info on raw images equals qemu-img info (JSON and human)', async (t) => {
  const dir = tempDir(t);
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const path = sparseRaw(dir);
  for (const args of [['--output=json'], []]) {
    const ours = await vmimg(['info', ...args, path]);
    const theirs = qemuImg(['info', ...args, path]);
    assert.equal(ours.status, 0, ours.stderr);
    assert.equal(ours.stdout, theirs.stdout);
  }
});

test('map on a sparse raw image equals qemu-img map (holes via SEEK_HOLE)', async (t) => {
  const dir = tempDir(t);
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const path = sparseRaw(dir);
  for (const args of [['--output=json'], []]) {
    const ours = await vmimg(['map', '-f', 'raw', ...args, path]);
    const theirs = qemuImg(['map', '-f', 'raw', ...args, path]);
    assert.equal(ours.status, 0, ours.stderr);
    assert.equal(ours.stdout, theirs.stdout, args.join(' '));
  }
  const window = await vmimg(['map', '-f', 'raw', '--output=json', '--start-offset', '1M', '--max-length', '512k', path]);
  const theirs = qemuImg(['map', '-f', 'raw', '--output=json', '--start-offset', '1M', '--max-length', '512k', path]);
  assert.equal(window.stdout, theirs.stdout);
});

test('check on raw exits 63 like qemu-img', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'x.raw');
  writeFileSync(path, Buffer.alloc(4096));
  const r = await vmimg(['check', path]);
  assert.equal(r.status, 63);
  assert.match(r.stderr, /does not support checks/);
  if (!oracle(t, 'qemu-img')) return;
  assert.equal(qemuImg(['check', path]).status, 63);
});

test('info on a missing file fails with FILE_NOT_FOUND naming it', async (t) => {
  const dir = tempDir(t);
  const r = await vmimg(['info', join(dir, 'nope.img')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /nope\.img.*\[FILE_NOT_FOUND\]/);
});
