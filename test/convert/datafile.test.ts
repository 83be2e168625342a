/**
 * convert -O qcow2 -o data_file=…[,data_file_raw=on] next to qemu-img 7.2: the image reads
 * back identical (qemu-img compare), checks clean, and its map (data/zero/allocation and the
 * data-file offsets, which are the guest offsets) equals the map of qemu-img's own output;
 * -c with a data file is refused up front, leaving nothing behind.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { vmimg } from '../helpers/cli.js';
import { oracle, qemuImg, run, tempDir } from '../helpers/oracle.js';
import { inDir } from '../helpers/cwd.js';

const CASES: string[][] = [
  ['-o', 'data_file=d.raw'],
  ['-o', 'data_file=d.raw,data_file_raw=on'],
  ['-S', '0', '-o', 'data_file=d.raw'],
  ['-o', 'data_file=d.raw,preallocation=metadata'],
  ['-o', 'data_file=d.raw,preallocation=full'],
  ['-o', 'data_file=d.raw,extended_l2=on'],
  ['-o', 'data_file=d.raw,data_file_raw=on,extended_l2=on'],
  ['-B', '../src.qcow2', '-F', 'qcow2', '-o', 'data_file=d.raw'],
];

test('convert -o data_file: identical content, clean check, the same map as qemu-img convert', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const src = join(dir, 'src.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', src, '8M']).status, 0);
  const writes = ['write -P 0xaa 0 64k', 'write -P 0xbb 1M 8k', 'write -z 2M 192k', 'write -P 0 3M 64k', 'write -P 0xcc 5M 100k', 'write -P 0xdd 8323072 64k'];
  assert.equal(run('qemu-io', [...writes.flatMap((w) => ['-c', w]), src]).status, 0);
  for (const args of CASES) {
    const what = args.join(' ');
    const q = join(dir, 'q');
    const v = join(dir, 'v');
    for (const d of [q, v]) {
      rmSync(d, { recursive: true, force: true });
      mkdirSync(d);
    }
    const theirs = qemuImg(['convert', '-O', 'qcow2', ...args, '../src.qcow2', 't.qcow2'], q);
    assert.equal(theirs.status, 0, theirs.stderr);
    const ours = await inDir(v, () => vmimg(['convert', '-O', 'qcow2', ...args, '../src.qcow2', 't.qcow2']));
    assert.equal(ours.status, 0, `${what}: ${ours.stderr}`);
    assert.equal(qemuImg(['compare', '../src.qcow2', 't.qcow2'], v).stdout, 'Images are identical.\n', what);
    const check = qemuImg(['check', 't.qcow2'], v);
    assert.equal(check.status, 0, `${what}: ${check.stdout}${check.stderr}`);
    const map = (d: string) => qemuImg(['map', '--output=json', 't.qcow2'], d).stdout;
    assert.equal(map(v), map(q), what);
    const info = (d: string) => qemuImg(['info', '--output=json', 't.qcow2'], d).stdout.replace(/"actual-size": \d+/, '');
    assert.equal(info(v), info(q), what);
    assert.equal(statSync(join(v, 'd.raw')).size, statSync(join(q, 'd.raw')).size, what);
  }
});

test('convert -c -o data_file is refused before anything is written', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t);
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', 'src.qcow2', '1M'], dir).status, 0);
  const r = await inDir(dir, () => vmimg(['convert', '-c', '-O', 'qcow2', '-o', 'data_file=d.raw', 'src.qcow2', 't.qcow2']));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /Compression is not supported with an external data file.*\[UNSUPPORTED_OPTION\]/);
  assert.deepEqual(readdirSync(dir), ['src.qcow2']);
  const same = await inDir(dir, () => vmimg(['convert', '-O', 'qcow2', '-o', 'data_file=src.qcow2', 'src.qcow2', 't.qcow2']));
  assert.equal(same.status, 1);
  assert.match(same.stderr, /write" lock/);
  assert.deepEqual(readdirSync(dir), ['src.qcow2']);
});

test('convert -n into existing images with a data file (raw and not): identical, clean, the raw data file stays the guest disk', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const src = join(dir, 'src.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', src, '8M']).status, 0);
  const writes = ['write -P 0xaa 0 64k', 'write -P 0xbb 1M 8k', 'write -z 2M 192k', 'write -P 0xcc 5M 100k'];
  assert.equal(run('qemu-io', [...writes.flatMap((w) => ['-c', w]), src]).status, 0);
  for (const options of ['data_file=d.raw', 'data_file=d.raw,data_file_raw=on', 'data_file=d.raw,extended_l2=on']) {
    const maps: string[] = [];
    for (const who of ['qemu-img', 'vmimg']) {
      const d = join(dir, who);
      rmSync(d, { recursive: true, force: true });
      mkdirSync(d);
      assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-o', options, 'x.qcow2', '8M'], d).status, 0);
      assert.equal(run('qemu-io', ['-c', 'write -P 0x55 0 4M', 'x.qcow2'], { cwd: d }).status, 0);
      if (who === 'qemu-img') assert.equal(qemuImg(['convert', '-n', '-O', 'qcow2', '../src.qcow2', 'x.qcow2'], d).status, 0);
      else {
        const r = await inDir(d, () => vmimg(['convert', '-n', '-O', 'qcow2', '../src.qcow2', 'x.qcow2']));
        assert.equal(r.status, 0, `${options}: ${r.stderr}`);
      }
      assert.equal(qemuImg(['compare', '../src.qcow2', 'x.qcow2'], d).stdout, 'Images are identical.\n', `${who} ${options}`);
      const check = qemuImg(['check', 'x.qcow2'], d);
      assert.equal(check.status, 0, `${who} ${options}: ${check.stdout}${check.stderr}`);
      if (options.includes('data_file_raw=on')) {
        assert.equal(qemuImg(['compare', '-f', 'raw', '-F', 'qcow2', 'd.raw', '../src.qcow2'], d).stdout, 'Images are identical.\n', `${who}: raw data file`);
      }
      maps.push(qemuImg(['map', '--output=json', 'x.qcow2'], d).stdout);
    }
    // With data_file_raw every cluster stays mapped 1:1, so the maps agree exactly; without it
    // vmimg leaves unallocated clusters unallocated where qemu-img sets their zero flag (both read zeros).
    if (options.includes('data_file_raw=on')) assert.equal(maps[1], maps[0], options);
  }
});

test('convert -n into an image whose data file is one of the sources is refused; source and target untouched', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  await inDir(dir, async () => {
    assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', 's.qcow2', '4M']).status, 0);
    assert.equal(run('qemu-io', ['-c', 'write -P 0x77 0 3M', 's.qcow2']).status, 0);
    // A target created with a data file of another name, then made to name the source (same length).
    assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'data_file=x.qcow2', 'd.qcow2', '4M']).status, 0);
    const image = readFileSync('d.qcow2');
    image.write('s.qcow2', image.indexOf('x.qcow2'), 'latin1');
    writeFileSync('d.qcow2', image);
    const before = [readFileSync('s.qcow2'), readFileSync('d.qcow2')];
    // qemu-img: Failed to get "write" lock.
    assert.notEqual(qemuImg(['convert', '-n', '-O', 'qcow2', 's.qcow2', 'd.qcow2']).status, 0);
    const r = await vmimg(['convert', '-n', '-O', 'qcow2', 's.qcow2', 'd.qcow2']);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /Failed to get "write" lock/);
    assert.deepEqual([readFileSync('s.qcow2'), readFileSync('d.qcow2')], before);
    assert.equal(qemuImg(['check', 's.qcow2']).status, 0);
  });
});
