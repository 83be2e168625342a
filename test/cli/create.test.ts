import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { vmimg } from '../helpers/cli.js';
import { oracle, qemuImg, qemuInfo, tempDir } from '../helpers/oracle.js';

test('create -f raw: Formatting line, rounding to 512, file length and allocated first block match qemu-img', async (t) => {
  const dir = tempDir(t);
  if (!oracle(t, 'qemu-img')) return;
  for (const size of ['0', '1000', '1k', '1.5M', '1G', '0x1000', '4095', '5000']) {
    const ours = await vmimg(['create', '-f', 'raw', join(dir, 'v.raw'), size]);
    const theirs = qemuImg(['create', '-f', 'raw', 'q.raw', size], dir);
    assert.equal(ours.status, 0, ours.stderr);
    assert.equal(ours.stdout.replace(join(dir, 'v.raw'), 'q.raw'), theirs.stdout, size);
    assert.equal(statSync(join(dir, 'v.raw')).size, statSync(join(dir, 'q.raw')).size, size);
    assert.equal(qemuInfo(join(dir, 'v.raw'), 'raw')['virtual-size'], qemuInfo(join(dir, 'q.raw'), 'raw')['virtual-size']);
    // QEMU's create writes the file's first block (4096 bytes, 512 below 4096): map and measure see data there.
    for (const cmd of [['map', '--output=json', '-f', 'raw'], ['measure', '--output=json', '-O', 'qcow2', '-f', 'raw']]) {
      assert.equal(qemuImg([...cmd, join(dir, 'v.raw')]).stdout, qemuImg([...cmd, 'q.raw'], dir).stdout, `${cmd[0]} ${size}`);
    }
  }
});

test('create -f raw -o preallocation=full allocates every block; falloc too', async (t) => {
  const dir = tempDir(t);
  for (const mode of ['full', 'falloc']) {
    const path = join(dir, `${mode}.raw`);
    const r = await vmimg(['create', '-q', '-f', 'raw', '-o', `preallocation=${mode}`, path, '1M']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, '');
    assert.ok(statSync(path).blocks * 512 >= 1024 * 1024, `${mode} allocated ${statSync(path).blocks * 512}`);
  }
  // falloc: QEMU writes the first block after the fallocate, so it (and only it) maps as data.
  if (oracle(t, 'qemu-img')) {
    assert.equal(qemuImg(['create', '-q', '-f', 'raw', '-o', 'preallocation=falloc', 'q-falloc.raw', '1M'], dir).status, 0);
    const map = (name: string): string => qemuImg(['map', '--output=json', '-f', 'raw', name], dir).stdout;
    assert.equal(map('falloc.raw'), map('q-falloc.raw'));
  }
  const sparse = join(dir, 'off.raw');
  assert.equal((await vmimg(['create', '-q', '-f', 'raw', sparse, '1M'])).status, 0);
  assert.ok(statSync(sparse).blocks * 512 < 1024 * 1024);
});

test('create --output=json reports file, format, sizes', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'j.raw');
  const r = await vmimg(['create', '--output=json', '-f', 'raw', path, '1000']);
  assert.equal(r.status, 0, r.stderr);
  const json = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.deepEqual(
    { filename: json['filename'], format: json['format'], vs: json['virtual-size'], len: json['file-length'] },
    { filename: path, format: 'raw', vs: 1024, len: 1024 },
  );
  assert.equal(typeof json['actual-size'], 'number');
});

test('create -o help lists options like qemu-img', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const ours = await vmimg(['create', '-f', 'raw', '-o', 'help']);
  const theirs = qemuImg(['create', '-f', 'raw', '-o', 'help']);
  assert.equal(ours.status, 0);
  // qemu-img's raw help without a file name lists only size; with one it adds protocol options.
  assert.match(ours.stdout, /^Supported raw options:\n {2}preallocation=<str> {4}- Preallocation mode \(allowed values: off, falloc, full\)\n {2}size=<size> {12}- Virtual disk size\n$/);
  assert.ok(theirs.stdout.includes('  size=<size>            - Virtual disk size'));
});

const ERRORS: Array<{ args: string[]; code: string; mentions: string }> = [
  { args: ['-f', 'bogus', 'x', '1G'], code: 'UNKNOWN_FORMAT', mentions: 'bogus' },
  { args: ['-f', 'raw', 'x', '1.5'], code: 'INVALID_SIZE', mentions: '1.5' },
  { args: ['-f', 'raw', 'x', '1kB'], code: 'INVALID_SIZE', mentions: '1kB' },
  { args: ['-f', 'raw', 'x', '8E'], code: 'SIZE_OUT_OF_RANGE', mentions: '8E' },
  { args: ['-f', 'raw', '-o', 'bogus=1', 'x', '1G'], code: 'UNKNOWN_OPTION', mentions: 'bogus' },
  { args: ['-f', 'raw', '-o', 'preallocation=metadata', 'x', '1G'], code: 'INVALID_OPTION', mentions: 'metadata' },
  { args: ['-f', 'raw', '-o', 'size=abc', 'x'], code: 'INVALID_OPTION', mentions: 'abc' },
  { args: ['-f', 'raw', '-o', 'size=1k', 'x', '2k'], code: 'USAGE', mentions: 'only once' },
  { args: ['-f', 'raw', 'x'], code: 'USAGE', mentions: 'size' },
  { args: ['-f', 'raw', '-b', 'base.img', '-F', 'raw', 'x', '1G'], code: 'UNSUPPORTED_OPTION', mentions: 'raw' },
];

test('create errors carry stable codes and name the offending value; nothing is left behind', async (t) => {
  const dir = tempDir(t);
  for (const { args, code, mentions } of ERRORS) {
    const fixed = args.map((a) => (a === 'x' ? join(dir, 'x') : a));
    const r = await vmimg(['create', ...fixed]);
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`\\[${code}\\]\\n$`), args.join(' '));
    assert.ok(r.stderr.includes(mentions), `${args.join(' ')}: ${r.stderr}`);
    assert.deepEqual(readdirSync(dir), [], `leftovers after ${args.join(' ')}`);
  }
});

test('a failed create does not destroy an existing file at the target path', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'keep.img');
  writeFileSync(path, 'precious');
  const r = await vmimg(['create', '-f', 'raw', '-o', 'preallocation=bogus', path, '1M']);
  assert.equal(r.status, 1);
  assert.equal(readFileSync(path, 'utf8'), 'precious');
  assert.deepEqual(readdirSync(dir), ['keep.img']);
  // A successful create replaces it, like qemu-img.
  assert.equal((await vmimg(['create', '-q', '-f', 'raw', path, '4k'])).status, 0);
  assert.equal(statSync(path).size, 4096);
});

test('create into a missing directory fails cleanly with WRITE_FAILED', async (t) => {
  const dir = tempDir(t);
  const r = await vmimg(['create', '-f', 'raw', join(dir, 'no', 'such', 'dir.img'), '1M']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /\[WRITE_FAILED\]/);
  assert.equal(existsSync(join(dir, 'no')), false);
});
