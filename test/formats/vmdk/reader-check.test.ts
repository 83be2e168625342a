/**
 * `check` on vmdk against qemu-img 7.2: clean images are compared in reader-oracle.test.ts;
 * here the failures QEMU detects (a grain or flat extent starting at or past the end of its
 * file: "ERROR: cluster offset for sector N points after EOF", "Check failed", status 1,
 * nothing on stdout), the repair refusal (status 63), and vmimg's own checks where qemu-img
 * says "No errors were found": table bounds and overlaps, counted as corruptions (status 2).
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { vmimg } from '../../helpers/cli.js';
import { oracle, qemuImg, tempDir } from '../../helpers/oracle.js';
import { qemuIo, sameAsQemu, sh } from './reader-support.js';

/** Patches GD entry `gdIndex` or, with `gtIndex`, entry gtIndex of the grain table it names. */
function patch(path: string, edit: { gdIndex: number; gtIndex?: number; value: number }): void {
  const b = readFileSync(path);
  const gd = Number(b.readBigUInt64LE(56)) * 512;
  if (edit.gtIndex === undefined) {
    b.writeUInt32LE(edit.value, gd + edit.gdIndex * 4);
  } else {
    const gt = b.readUInt32LE(gd + edit.gdIndex * 4) * 512;
    b.writeUInt32LE(edit.value, gt + edit.gtIndex * 4);
  }
  writeFileSync(path, b);
}

/** Both tools fail the check the same way: same first stderr line, status 1, empty stdout. */
async function sameFailure(path: string, errorLine: string): Promise<void> {
  for (const output of ['human', 'json']) {
    const r = await sameAsQemu(['check', `--output=${output}`, path]);
    assert.equal(r.ours.status, 1);
    assert.equal(r.ours.stdout, '');
    assert.equal(r.qemu.stderr.split('\n')[0], errorLine);
    assert.equal(r.ours.stderr.split('\n')[0], errorLine);
    assert.match(r.qemu.stderr, /Check failed: Invalid argument/);
    assert.match(r.ours.stderr, /Check failed: Invalid argument \[CORRUPT_IMAGE\]/);
  }
}

test('a grain table entry past the end of the file: the same ERROR line and status as qemu-img', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vmdk', 'g.vmdk', '4M']);
  qemuIo(dir, 'g.vmdk', ['write -P 0x11 64k 64k', 'write -P 0x22 2M 64k']);
  patch(join(dir, 'g.vmdk'), { gdIndex: 0, gtIndex: 32, value: 100000 }); // grain 32 = sector 4096
  await sameFailure(join(dir, 'g.vmdk'), 'ERROR: cluster offset for sector 4096 points after EOF');

  sh(dir, 'qemu-img', ['create', '-q', '-f', 'raw', 'src.raw', '2M']);
  sh(dir, 'qemu-io', ['-f', 'raw', '-c', 'write -P 0x33 0 1M', 'src.raw']);
  sh(dir, 'qemu-img', ['convert', '-O', 'vmdk', '-o', 'subformat=streamOptimized', 'src.raw', 's.vmdk']);
  patch(join(dir, 's.vmdk'), { gdIndex: 0, gtIndex: 3, value: 0x7fffffff });
  await sameFailure(join(dir, 's.vmdk'), 'ERROR: cluster offset for sector 384 points after EOF');
});

test('extent files: a flat extent offset and a sparse extent grain past EOF, reported at guest sectors', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentFlat', 'tf.vmdk', '2112M']);
  const desc = join(dir, 'tf.vmdk');
  writeFileSync(desc, readFileSync(desc, 'latin1').replace('"tf-f002.vmdk" 0', '"tf-f002.vmdk" 9999999'), 'latin1');
  await sameFailure(desc, 'ERROR: cluster offset for sector 4194304 points after EOF');

  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', 'ts.vmdk', '2112M']);
  qemuIo(dir, 'ts.vmdk', ['write -P 0x44 2049M 64k']);
  patch(join(dir, 'ts-s002.vmdk'), { gdIndex: 0, gtIndex: 16, value: 0x00ffffff });
  await sameFailure(join(dir, 'ts.vmdk'), 'ERROR: cluster offset for sector 4196352 points after EOF');
});

test('a grain directory whose 32-bit size wrapped: "could not get cluster_offset", Operation not permitted', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vmdk', 'w.vmdk', '1M']);
  const path = join(dir, 'w.vmdk');
  const b = readFileSync(path);
  b.writeBigUInt64LE((1n << 32n) + 5n, 12); // capacity: GD entries = capacity / 1 sector, kept in 32 bits = 5
  b.writeBigUInt64LE(1n, 20); // grain: 1 sector
  b.writeUInt32LE(1, 44); // 1 GTE per GT
  b.writeUInt32LE(1, 8); // no redundant GD
  writeFileSync(path, b);
  const r = await sameAsQemu(['check', path]);
  assert.equal(r.ours.status, 1);
  assert.equal(r.qemu.stderr.split('\n')[0], 'ERROR: could not get cluster_offset for sector 5');
  assert.equal(r.ours.stderr.split('\n')[0], 'ERROR: could not get cluster_offset for sector 5');
  assert.match(r.qemu.stderr, /Check failed: Operation not permitted/);
  assert.match(r.ours.stderr, /Check failed: Operation not permitted/);
});

test('repair is refused like qemu-img (status 63)', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vmdk', 'r.vmdk', '1M']);
  for (const mode of ['leaks', 'all']) {
    const r = await sameAsQemu(['check', '-r', mode, join(dir, 'r.vmdk')]);
    assert.equal(r.ours.status, 63);
    assert.match(r.ours.stderr, /This image format does not support checks/);
  }
});

test('vmimg-only: overlapping grains and tables, tables past the end — corruptions where qemu-img finds none', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vmdk', 'base.vmdk', '4M']);
  qemuIo(dir, 'base.vmdk', ['write -P 0x11 64k 64k', 'write -P 0x22 1M 64k']);
  const clean = readFileSync(join(dir, 'base.vmdk'));
  const gd = Number(clean.readBigUInt64LE(56));
  const gt = clean.readUInt32LE(gd * 512);
  const grain1 = clean.readUInt32LE(gt * 512 + 4);
  const cases: Array<[string, { gdIndex: number; gtIndex?: number; value: number }, RegExp]> = [
    ['twice.vmdk', { gdIndex: 0, gtIndex: 16, value: grain1 }, new RegExp(`ERROR: the grain at byte ${grain1 * 512} overlaps the grain at byte ${grain1 * 512}`)],
    ['on-gd.vmdk', { gdIndex: 0, gtIndex: 16, value: gd }, /ERROR: the grain directory overlaps the grain at byte|ERROR: the grain at byte \d+ overlaps the grain directory/],
    ['on-descriptor.vmdk', { gdIndex: 0, gtIndex: 40, value: 1 }, /ERROR: the grain at byte 512 overlaps the embedded descriptor/],
    ['gt-away.vmdk', { gdIndex: 0, value: 0x00ffffff }, /ERROR: the grain table at byte 8589934080 extends past the end of the file/],
  ];
  for (const [name, edit, message] of cases) {
    const path = join(dir, name);
    writeFileSync(path, clean);
    patch(path, edit);
    const q = qemuImg(['check', path]);
    assert.equal(q.status, 0, `${name}: qemu-img is silent`);
    assert.equal(q.stdout, 'No errors were found on the image.\n');
    const r = await vmimg(['check', path]);
    assert.equal(r.status, 2, `${name}: ${r.stderr}`);
    assert.match(r.stderr, message, name);
    assert.match(r.stdout, /^\n\d+ errors were found on the image\.\nData may be corrupted/);
    const j = JSON.parse((await vmimg(['check', '--output=json', path])).stdout) as Record<string, unknown>;
    assert.ok(Number(j['corruptions']) >= 1, name);
  }
});
