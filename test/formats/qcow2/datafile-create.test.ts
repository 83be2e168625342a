/**
 * `create -f qcow2 -o data_file=…[,data_file_raw=…]` against qemu-img 7.2: both files
 * byte-identical (image and data file), the same data-file allocation (qemu-img map of the raw
 * file), `qemu-img check` clean, and qemu-img's refusals with nothing left behind.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { vmimg } from '../../helpers/cli.js';
import { oracle, qemuImg, qemuInfo, tempDir } from '../../helpers/oracle.js';
import { inDir } from '../../helpers/cwd.js';

const CASES: Array<[string, string]> = [
  ['16M', 'data_file=d.raw'],
  ['16M', 'data_file=d.raw,data_file_raw=on'],
  ['16M', 'data_file=d.raw,data_file_raw=off'],
  ['16M', 'data_file=d.raw,preallocation=falloc'],
  ['1000000', 'data_file=d.raw'],
  ['1000000', 'data_file=d.raw,data_file_raw=on'],
  ['1000000', 'data_file=d.raw,preallocation=full'],
  ['1000000', 'data_file=d.raw,extended_l2=on,preallocation=metadata'],
  ['1000000', 'data_file=d.raw,data_file_raw=on,cluster_size=4096'],
  ['1G', 'data_file=d.raw,data_file_raw=on,lazy_refcounts=on,refcount_bits=1,compression_type=zstd'],
  ['0', 'data_file=d.raw,data_file_raw=on'],
  ['1M', 'data_file=d.raw,backing_file=b.qcow2,backing_fmt=qcow2'],
  ['1M', 'data_file=d.raw,backing_file=b.qcow2,backing_fmt=qcow2,extended_l2=on,preallocation=metadata'],
];

test('create -o data_file: image and data file match qemu-img byte for byte; check is clean', async (t) => {
  const dir = tempDir(t);
  if (!oracle(t, 'qemu-img')) return;
  for (const [size, options] of CASES) {
    const q = join(dir, 'q');
    const v = join(dir, 'v');
    for (const d of [q, v]) {
      rmSync(d, { recursive: true, force: true });
      mkdirSync(d);
      assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', 'b.qcow2', '1M'], d).status, 0);
    }
    const theirs = qemuImg(['create', '-f', 'qcow2', '-o', options, 'x.qcow2', size], q);
    assert.equal(theirs.status, 0, theirs.stderr);
    const ours = await inDir(v, () => vmimg(['create', '-f', 'qcow2', '-o', options, 'x.qcow2', size]));
    assert.equal(ours.status, 0, ours.stderr);
    const what = `${size} ${options}`;
    assert.equal(ours.stdout, theirs.stdout, what);
    assert.deepEqual(readFileSync(join(v, 'x.qcow2')), readFileSync(join(q, 'x.qcow2')), what);
    assert.deepEqual(readFileSync(join(v, 'd.raw')), readFileSync(join(q, 'd.raw')), what);
    const map = (d: string) => qemuImg(['map', '--output=json', '-f', 'raw', 'd.raw'], d).stdout;
    assert.equal(map(v), map(q), `data file allocation, ${what}`);
    const check = qemuImg(['check', 'x.qcow2'], v);
    assert.equal(check.status, 0, check.stdout + check.stderr);
    const info = (d: string) => {
      const i = qemuInfo(join(d, 'x.qcow2'));
      delete i['filename'];
      delete i['actual-size'];
      delete i['full-backing-filename'];
      return i;
    };
    assert.deepEqual(info(v), info(q), what);
  }
});

test('create -o data_file: refusals as qemu-img words them, nothing left behind; an existing data file is replaced', async (t) => {
  const dir = tempDir(t);
  const refusals: Array<[string, string, RegExp]> = [
    ['data_file_raw=on', 'INVALID_OPTION', /^vmimg: data-file-raw requires data-file \[/],
    ['data_file=d.raw,compat=0.10', 'INVALID_OPTION', /External data files are only supported with compatibility level 1\.1 and above \(use version=v3 or greater\)/],
    ['data_file=d.raw,data_file_raw=on,backing_file=b.qcow2,backing_fmt=qcow2', 'INVALID_OPTION', /Backing file and data-file-raw cannot be used at the same time/],
    ['data_file=', 'FILE_NOT_FOUND', /Could not create '': No such file or directory/],
    ['data_file=x.qcow2', 'INVALID_OPTION', /is the image file/],
  ];
  await inDir(dir, async () => {
    assert.equal((await vmimg(['create', '-q', '-f', 'qcow2', 'b.qcow2', '1M'])).status, 0);
    for (const [options, code, message] of refusals) {
      const r = await vmimg(['create', '-f', 'qcow2', '-o', options, 'x.qcow2', '1M']);
      assert.equal(r.status, 1, options);
      assert.match(r.stderr, message, options);
      assert.match(r.stderr, new RegExp(`\\[${code}\\]`), options);
      assert.deepEqual(readdirSync('.').sort(), ['b.qcow2'], options);
    }
    // qemu-img truncates an existing data file and reuses it: its old bytes are gone.
    writeFileSync('old.raw', 'previous content that must not show through');
    const r = await vmimg(['create', '-q', '-f', 'qcow2', '-o', 'data_file=old.raw', 'x.qcow2', '1M']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(statSync('old.raw').size, 1024 * 1024);
    assert.ok(readFileSync('old.raw').every((b) => b === 0));
    // Created where qemu-img creates it (relative to the working directory), with a warning that
    // vmimg opens it relative to the image's directory.
    mkdirSync('sub');
    const sub = await vmimg(['create', '-q', '-f', 'qcow2', '-o', 'data_file=sub/d.raw', 'sub/x.qcow2', '1M']);
    assert.equal(sub.status, 0, sub.stderr);
    assert.match(sub.stderr, /warning: data file 'sub\/d\.raw' is created relative to the working directory.*'sub\/sub\/d\.raw'/);
    assert.deepEqual(readdirSync('sub').sort(), ['d.raw', 'x.qcow2']);
  });
});

test('create -o data_file: a name that lands on the image only through links (dangling link, directory link) is refused, nothing created', async (t) => {
  const dir = tempDir(t);
  await inDir(dir, async () => {
    symlinkSync('x.qcow2', 'link.raw'); // dangling: the image does not exist yet
    symlinkSync('.', 'here');
    for (const options of ['data_file=link.raw', 'data_file=here/x.qcow2']) {
      // (qemu-img fails here too: its image and data file opens conflict on the image locks)
      const r = await vmimg(['create', '-f', 'qcow2', '-o', options, 'x.qcow2', '1M']);
      assert.equal(r.status, 1, `${options}: ${r.stderr}`);
      assert.match(r.stderr, /is the image file .* itself \[INVALID_OPTION\]/, options);
      assert.deepEqual(readdirSync('.').sort(), ['here', 'link.raw'], options);
    }
  });
});
