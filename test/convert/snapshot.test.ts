/**
 * -l SNAPSHOT for convert and measure, next to qemu-img 7.2: an image with two internal
 * snapshots (made by `qemu-img snapshot -c` between qemu-io writes) is read through each
 * snapshot by id, by name and by snapshot.id=/snapshot.name= options; the output and measure's
 * numbers equal qemu-img's, and the refusals carry qemu-img's messages.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { vmimg } from '../helpers/cli.js';
import { oracle, qemuImg, run, tempDir } from '../helpers/oracle.js';

function snapshotImage(dir: string): string {
  const img = join(dir, 's.qcow2');
  const io = (...cmds: string[]): void => {
    const r = run('qemu-io', [...cmds.flatMap((c) => ['-c', c]), img]);
    assert.equal(r.status, 0, r.stderr);
  };
  assert.equal(qemuImg(['create', '-f', 'qcow2', img, '64M']).status, 0);
  io('write -P 0x11 0 4M', 'write -P 0x22 8M 1M');
  assert.equal(qemuImg(['snapshot', '-c', 'first', img]).status, 0);
  io('write -P 0x33 0 1M', 'write -z 8M 1M', 'write -P 0x44 20M 3M');
  assert.equal(qemuImg(['snapshot', '-c', 'second', img]).status, 0);
  io('write -P 0x55 30M 1M', 'discard 20M 1M');
  return img;
}

test('convert -l and measure -l read a snapshot exactly as qemu-img does', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const img = snapshotImage(dir);
  const params = ['first', '1', '2', 'second', 'snapshot.id=1', 'snapshot.name=second', 'snapshot.id=2,snapshot.name=second'];
  for (const l of params) {
    for (const fmt of ['raw', 'qcow2']) {
      const theirs = join(dir, `q-${l}.${fmt}`);
      const ours = join(dir, `v-${l}.${fmt}`);
      assert.equal(qemuImg(['convert', '-l', l, '-O', fmt, img, theirs]).status, 0);
      const r = await vmimg(['convert', '-l', l, '-O', fmt, img, ours]);
      assert.equal(r.status, 0, r.stderr);
      const cmp = qemuImg(['compare', '-f', fmt, '-F', fmt, theirs, ours]);
      assert.equal(cmp.status, 0, `-l ${l} -O ${fmt}: ${cmp.stdout}`);
      if (fmt === 'qcow2') assert.equal(qemuImg(['check', ours]).status, 0, `qemu-img check of -l ${l} -O qcow2`);
    }
    for (const args of [['-O', 'qcow2'], ['-O', 'raw'], ['--output=json', '-O', 'qcow2', '-o', 'cluster_size=4k']]) {
      const q = qemuImg(['measure', ...args, '-l', l, img]);
      const v = await vmimg(['measure', ...args, '-l', l, img]);
      assert.equal(v.status, q.status);
      assert.equal(v.stdout, q.stdout, `measure ${args.join(' ')} -l ${l}`);
    }
  }
  // The snapshots differ from each other and from the active image.
  const active = join(dir, 'active.raw');
  assert.equal((await vmimg(['convert', '-O', 'raw', img, active])).status, 0);
  const first = readFileSync(join(dir, 'v-first.raw'));
  const second = readFileSync(join(dir, 'v-second.raw'));
  assert.equal(first[0], 0x11);
  assert.equal(second[0], 0x33);
  assert.equal(second[20 * 1024 * 1024], 0x44);
  assert.equal(readFileSync(active)[20 * 1024 * 1024], 0, 'discarded in the active image only');
  assert.equal(first[8 * 1024 * 1024], 0x22);
  assert.equal(second[8 * 1024 * 1024], 0);
});

test('-l refusals carry qemu-img messages', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const img = snapshotImage(dir);
  const raw = join(dir, 'r.raw');
  assert.equal(qemuImg(['create', '-f', 'raw', raw, '1M']).status, 0);
  const cases: string[][] = [
    ['convert', '-l', 'nope', '-O', 'raw', img, join(dir, 'o1.raw')],
    ['convert', '-l', 'snapshot.id=1,snapshot.name=second', '-O', 'raw', img, join(dir, 'o2.raw')],
    ['convert', '-l', 'first', '-O', 'raw', img, img, join(dir, 'o3.raw')],
    ['measure', '-O', 'qcow2', '-l', 'nope', img],
    ['measure', '-O', 'qcow2', '-l', 'x', '-f', 'raw', raw],
  ];
  for (const args of cases) {
    const q = qemuImg(args);
    const v = await vmimg(args);
    assert.equal(v.status, q.status, args.join(' '));
    const theirs = q.stderr.trim().split('\n')[0]!.replace(/^qemu-img: /, '');
    assert.ok(theirs.length > 0);
    assert.ok(v.stderr.includes(theirs.replace(/used by node '[^']*'/, "used by device ''")), `${args.join(' ')}\nqemu-img: ${q.stderr}\nvmimg: ${v.stderr}`);
  }
});
