/**
 * convert --salvage next to qemu-img 7.2 on the same damaged images (salvage-fixtures.ts): the
 * same bytes out (zeros exactly where 512-byte sectors cannot be read), the same "error while
 * reading …" warnings in the same order, the same exit status; targets pass qemu-img check.
 * Without --salvage both fail with exit status 1 naming the same offset, and vmimg leaves no
 * target behind.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { vmimg } from '../helpers/cli.js';
import { oracle, qemuImg, tempDir } from '../helpers/oracle.js';
import { BAD_END, BAD_START, brokenCompressedQcow2, brokenStreamVmdk, misalignedQcow2, sourceRaw } from './salvage-fixtures.js';

/** The "error while reading" lines of a run's stderr, without the program's prefix. */
function readErrors(stderr: string, prefix: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => l.includes('error while reading'))
    .map((l) => l.slice(prefix.length));
}

async function both(dir: string, name: string, args: string[]): Promise<{ q: string; v: string; qErr: string[]; vErr: string[]; vStderr: string }> {
  const q = join(dir, `q-${name}`);
  const v = join(dir, `v-${name}`);
  const theirs = qemuImg(['convert', ...args, q]);
  const ours = await vmimg(['convert', ...args, v]);
  assert.equal(ours.status, theirs.status, `convert ${args.join(' ')}: ${ours.stderr}`);
  return { q, v, qErr: readErrors(theirs.stderr, 'qemu-img: '), vErr: readErrors(ours.stderr, 'vmimg: '), vStderr: ours.stderr };
}

function ready(t: TestContext): string | undefined {
  if (!oracle(t, 'qemu-img')) return undefined;
  return tempDir(t, 'vmimg-salvage-');
}

test('salvage a broken compressed qcow2 cluster: zeros, 128 read warnings, exit 0; without it: error at byte 196608', async (t) => {
  const dir = ready(t);
  if (!dir) return;
  const src = sourceRaw(dir);
  const bad = brokenCompressedQcow2(dir, src);

  const r = await both(dir, 'raw', ['--salvage', '-O', 'raw', bad]);
  assert.deepEqual(readFileSync(r.v), readFileSync(r.q));
  const expected = readFileSync(src);
  expected.fill(0, BAD_START, BAD_END);
  assert.deepEqual(readFileSync(r.v), expected, 'only the bad cluster is zero');
  assert.equal(r.qErr.length, 128);
  assert.deepEqual(r.vErr, r.qErr);
  assert.equal(r.vErr[0], 'warning: error while reading offset 196608: Input/output error');
  // One line says why (qemu-img's qcow2 driver is silent for a cluster that does not inflate).
  assert.match(r.vStderr, /vmimg: warning: .*compressed data does not decode \(qcow2-deflate\).*; further errors of this image are reported by offset only\n/);

  const theirs = qemuImg(['convert', '-O', 'raw', bad, join(dir, 'q-fail.raw')]);
  const ours = await vmimg(['convert', '-O', 'raw', bad, join(dir, 'v-fail.raw')]);
  assert.equal(theirs.status, 1);
  assert.equal(ours.status, 1);
  assert.equal(theirs.stderr, 'qemu-img: error while reading at byte 196608: Input/output error\n');
  assert.match(ours.stderr, /^vmimg: error while reading at byte 196608: .*compressed data does not decode.*\[CORRUPT_IMAGE\]\n$/);
  assert.ok(!existsSync(join(dir, 'v-fail.raw')), 'nothing half-written is left');

  // -c (a compressed qcow2 target), -m 1, and -q (no warnings).
  const c = await both(dir, 'c.qcow2', ['--salvage', '-c', '-m', '1', '-O', 'qcow2', bad]);
  assert.equal(qemuImg(['compare', c.q, c.v]).status, 0);
  assert.equal(qemuImg(['check', c.v]).status, 0);
  assert.deepEqual(c.vErr, c.qErr);
  const quiet = await vmimg(['convert', '--salvage', '-q', '-O', 'raw', bad, join(dir, 'quiet.raw')]);
  assert.equal(quiet.status, 0);
  assert.equal(quiet.stderr, '');
  assert.deepEqual(readFileSync(join(dir, 'quiet.raw')), expected);
});

test('salvage a misaligned qcow2 L2 entry: block-status warnings twice, read warnings, as qemu-img orders them', async (t) => {
  const dir = ready(t);
  if (!dir) return;
  const src = sourceRaw(dir);
  const bad = misalignedQcow2(dir, src);

  const r = await both(dir, 'raw', ['--salvage', '-O', 'raw', bad]);
  assert.deepEqual(readFileSync(r.v), readFileSync(r.q));
  assert.equal(r.qErr.length, 3 * 128, 'status warnings in both passes, read warnings once');
  assert.deepEqual(r.vErr, r.qErr);
  assert.equal(r.vErr[0], 'warning: error while reading block status at offset 196608: Input/output error');
  assert.equal(r.vErr[128], 'warning: error while reading block status at offset 196608: Input/output error');
  assert.equal(r.vErr[129], 'warning: error while reading offset 196608: Input/output error');

  // -c steps a whole target cluster at a time: the status is queried at the cluster start only.
  const c = await both(dir, 'c.qcow2', ['--salvage', '-c', '-O', 'qcow2', bad]);
  assert.equal(c.qErr.length, 2 + 128);
  assert.deepEqual(c.vErr, c.qErr);
  assert.equal(qemuImg(['compare', c.q, c.v]).status, 0);
  assert.equal(qemuImg(['check', c.v]).status, 0);
  // The same with -c into a monolithicSparse vmdk, which stores the grains uncompressed.
  const cv = await both(dir, 'c.vmdk', ['--salvage', '-c', '-O', 'vmdk', bad]);
  assert.deepEqual(cv.vErr, cv.qErr);
  assert.equal(cv.vErr.length, 2 + 128);
  assert.equal(qemuImg(['compare', cv.q, cv.v]).status, 0);
  // A streamOptimized target compresses without -c: qemu-img steps whole grains there too.
  const sv = await both(dir, 's.vmdk', ['--salvage', '-O', 'vmdk', '-o', 'subformat=streamOptimized', bad]);
  assert.equal(sv.qErr.length, 2 + 128);
  assert.deepEqual(sv.vErr, sv.qErr);
  assert.equal(qemuImg(['compare', sv.q, sv.v]).status, 0);

  // Other target formats, and -p.
  for (const [fmt, extra] of [['vmdk', []], ['vpc', ['-p']], ['vhdx', []]] as const) {
    const o = await both(dir, `o.${fmt}`, ['--salvage', ...extra, '-O', fmt, bad]);
    assert.equal(qemuImg(['compare', o.q, o.v]).status, 0, fmt);
    if (fmt !== 'vpc') assert.equal(qemuImg(['check', o.v]).status, 0, fmt); // vpc: check not supported (63)
    assert.deepEqual(o.vErr, o.qErr, fmt);
  }

  // Through a backing chain: the overlay's reads fall through to the bad cluster. With -B the
  // source's top layer alone is asked (qemu-img: bdrv_block_status of the top), so nothing fails.
  const overlay = join(dir, 'overlay.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-b', bad, '-F', 'qcow2', overlay]).status, 0);
  const chained = await both(dir, 'chain.raw', ['--salvage', '-O', 'raw', overlay]);
  assert.deepEqual(readFileSync(chained.v), readFileSync(chained.q));
  assert.deepEqual(chained.vErr, chained.qErr);
  assert.equal(chained.vErr.length, 3 * 128);
  for (const salvage of [['--salvage'], []]) {
    const b = await both(dir, `b${salvage.length}.qcow2`, [...salvage, '-O', 'qcow2', '-B', bad, '-F', 'qcow2', overlay]);
    assert.deepEqual(b.vErr, []);
    assert.deepEqual(b.qErr, []);
  }

  const theirs = qemuImg(['convert', '-O', 'raw', bad, join(dir, 'q-fail.raw')]);
  const ours = await vmimg(['convert', '-O', 'raw', bad, join(dir, 'v-fail.raw')]);
  assert.equal(theirs.status, 1);
  assert.equal(ours.status, 1);
  assert.match(theirs.stderr, /\nqemu-img: error while reading block status at offset 196608: Input\/output error\n$/);
  assert.match(ours.stderr, /^vmimg: error while reading block status at offset 196608: qcow2 image '.*' is corrupt: Cluster allocation offset 0x[0-9a-f]+ unaligned .*\[CORRUPT_IMAGE\]\n$/);
});

test('salvage a streamOptimized vmdk grain that does not inflate: Invalid argument, as QEMU vmdk reports it', async (t) => {
  const dir = ready(t);
  if (!dir) return;
  const src = sourceRaw(dir);
  const bad = brokenStreamVmdk(dir, src);
  const r = await both(dir, 'raw', ['--salvage', '-O', 'raw', bad]);
  assert.deepEqual(readFileSync(r.v), readFileSync(r.q));
  assert.equal(r.qErr.length, 128);
  assert.deepEqual(r.vErr, r.qErr);
  assert.equal(r.vErr[0], 'warning: error while reading offset 196608: Invalid argument');
  const ours = await vmimg(['convert', '-O', 'raw', bad, join(dir, 'v-fail.raw')]);
  assert.equal(ours.status, 1);
  assert.match(ours.stderr, /^vmimg: error while reading at byte 196608: /);
});

test('salvage several sources and into an existing target (-n): offsets per source, same content', async (t) => {
  const dir = ready(t);
  if (!dir) return;
  const src = sourceRaw(dir);
  const compressed = brokenCompressedQcow2(dir, src);
  const misaligned = misalignedQcow2(dir, src);
  const r = await both(dir, 'multi.raw', ['--salvage', '-O', 'raw', misaligned, src, compressed]);
  assert.deepEqual(readFileSync(r.v), readFileSync(r.q));
  assert.equal(r.qErr.length, 3 * 128 + 128);
  assert.deepEqual(r.vErr, r.qErr);

  for (const name of ['q-n.qcow2', 'v-n.qcow2']) {
    assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', join(dir, name), '1M']).status, 0);
  }
  writeFileSync(join(dir, 'ones.raw'), new Uint8Array(1 << 20).fill(1));
  assert.equal(qemuImg(['convert', '-n', '-f', 'raw', '-O', 'qcow2', join(dir, 'ones.raw'), join(dir, 'v-n.qcow2')]).status, 0);
  assert.equal(qemuImg(['convert', '-n', '-f', 'raw', '-O', 'qcow2', join(dir, 'ones.raw'), join(dir, 'q-n.qcow2')]).status, 0);
  assert.equal(qemuImg(['convert', '--salvage', '-n', '-O', 'qcow2', compressed, join(dir, 'q-n.qcow2')]).status, 0);
  const n = await vmimg(['convert', '--salvage', '-n', '-O', 'qcow2', compressed, join(dir, 'v-n.qcow2')]);
  assert.equal(n.status, 0, n.stderr);
  assert.equal(qemuImg(['compare', join(dir, 'q-n.qcow2'), join(dir, 'v-n.qcow2')]).status, 0);
  assert.equal(qemuImg(['check', join(dir, 'v-n.qcow2')]).status, 0);
});

test('--salvage with -C is refused as qemu-img refuses it', async (t) => {
  const dir = ready(t);
  if (!dir) return;
  const src = sourceRaw(dir);
  const theirs = qemuImg(['convert', '--salvage', '-C', '-O', 'raw', src, join(dir, 'q.raw')]);
  const ours = await vmimg(['convert', '--salvage', '-C', '-O', 'raw', src, join(dir, 'v.raw')]);
  assert.equal(theirs.status, 1);
  assert.equal(ours.status, theirs.status);
  assert.match(theirs.stderr, /Cannot use copy offloading in salvaging mode/);
  assert.match(ours.stderr, /^vmimg: Cannot use copy offloading in salvaging mode \[USAGE\]\n$/);
});
