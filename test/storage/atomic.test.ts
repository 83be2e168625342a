/**
 * Where atomic creation puts its file (src/storage/atomic.ts): through symbolic links, as
 * open(2) and qemu-img do, and never over something that is not a regular file (renaming over a
 * device node would replace it with a file; `vmimg convert -O raw x /dev/null` used to).
 * qemu-img judges the images made through links.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, readdirSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { vmimg } from '../helpers/cli.js';
import { oracle, qemuImg, tempDir } from '../helpers/oracle.js';

test('create and convert write through a symbolic link: the link stays, its target becomes the image', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-atomic-');
  mkdirSync(join(dir, 'links'));
  symlinkSync('../images/disk.qcow2', join(dir, 'links', 'disk.qcow2')); // dangling: images/ is made next
  mkdirSync(join(dir, 'images'));
  const link = join(dir, 'links', 'disk.qcow2');
  const r = await vmimg(['create', '-q', '-f', 'qcow2', link, '1M']);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(lstatSync(link).isSymbolicLink());
  assert.equal(readlinkSync(link), '../images/disk.qcow2');
  assert.equal(JSON.parse(qemuImg(['info', '--output=json', join(dir, 'images', 'disk.qcow2')]).stdout)['virtual-size'], 1 << 20);
  // A chain of two links, replaced content.
  symlinkSync('links/disk.qcow2', join(dir, 'second'));
  assert.equal(qemuImg(['create', '-q', '-f', 'raw', join(dir, 'src.raw'), '3M']).status, 0);
  const c = await vmimg(['convert', '-O', 'qcow2', join(dir, 'src.raw'), join(dir, 'second')]);
  assert.equal(c.status, 0, c.stderr);
  assert.ok(lstatSync(join(dir, 'second')).isSymbolicLink());
  assert.equal(JSON.parse(qemuImg(['info', '--output=json', join(dir, 'images', 'disk.qcow2')]).stdout)['virtual-size'], 3 << 20);
  assert.deepEqual(readdirSync(join(dir, 'images')), ['disk.qcow2'], 'no temporary file left');
});

test('a target that is a FIFO (also through a link), a directory or a link loop is refused and left as it was', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'mkfifo')) return;
  const dir = tempDir(t, 'vmimg-atomic-');
  assert.equal(qemuImg(['create', '-q', '-f', 'raw', join(dir, 'src.raw'), '1M']).status, 0);
  execFileSync('mkfifo', [join(dir, 'fifo')]);
  mkdirSync(join(dir, 'folder'));
  // (A link to a FIFO stands for one to a device node, which a test should not risk replacing.)
  symlinkSync('fifo', join(dir, 'to-fifo'));
  symlinkSync('loop-b', join(dir, 'loop-a'));
  symlinkSync('loop-a', join(dir, 'loop-b'));
  const cases: Array<[string, RegExp]> = [
    ['fifo', /Could not create '.*fifo': it is a FIFO, and vmimg only replaces regular files \[WRITE_FAILED\]/],
    ['folder', /it is a directory/],
    ['to-fifo', /Could not create '.*to-fifo' \(through its links: '.*\/fifo'\): it is a FIFO/],
    ['loop-a', /more than 40 symbolic links to follow/],
  ];
  for (const [name, message] of cases) {
    const target = join(dir, name);
    for (const args of [['create', '-q', '-f', 'qcow2', target, '1M'], ['convert', '-O', 'raw', join(dir, 'src.raw'), target]]) {
      const r = await vmimg(args);
      assert.equal(r.status, 1, `${args[0]} ${name}`);
      assert.match(r.stderr, message, `${args[0]} ${name}`);
    }
  }
  assert.ok(statSync(join(dir, 'fifo')).isFIFO());
  assert.ok(statSync(join(dir, 'folder')).isDirectory());
  assert.deepEqual(readdirSync(dir).sort(), ['fifo', 'folder', 'loop-a', 'loop-b', 'src.raw', 'to-fifo']);
});

test('a file replaced keeps its permissions: a 0600 image does not come back world-readable', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-atomic-');
  const target = join(dir, 'secret.qcow2');
  writeFileSync(target, 'old');
  chmodSync(target, 0o600);
  assert.equal(qemuImg(['create', '-q', '-f', 'raw', join(dir, 'src.raw'), '1M']).status, 0);
  const r = await vmimg(['convert', '-O', 'qcow2', join(dir, 'src.raw'), target]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(statSync(target).mode & 0o7777, 0o600);
  assert.equal(JSON.parse(qemuImg(['info', '--output=json', target]).stdout).format, 'qcow2');
  const c = await vmimg(['create', '-q', '-f', 'raw', target, '2M']);
  assert.equal(c.status, 0, c.stderr);
  assert.equal(statSync(target).mode & 0o7777, 0o600);
  assert.equal(statSync(target).size, 2 << 20);
});
