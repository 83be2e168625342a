/**
 * A block device as an image (a loop device over a file): its length comes from lseek(SEEK_END)
 * (its stat size is 0), so `info` reports it as qemu-img does and `convert -n` writes into it as
 * qemu-img convert -n does; creating over it is refused (atomic.ts). Needs root and a free loop
 * device (skipped otherwise: a machine capability, not an outside tool).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { vmimg } from '../helpers/cli.js';
import { oracle, qemuImg, run, tempDir } from '../helpers/oracle.js';

test('a loop device: info sizes it as qemu-img does, convert -n writes into it, create over it is refused', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io') || !oracle(t, 'losetup')) return;
  if (process.getuid?.() !== 0) return t.skip('needs root to attach a loop device');
  const dir = tempDir(t, 'vmimg-blockdev-');
  const backing = join(dir, 'disk');
  writeFileSync(backing, '');
  truncateSync(backing, 8 << 20);
  const attach = spawnSync('losetup', ['-f', '--show', backing], { encoding: 'utf8' });
  if (attach.status !== 0) return t.skip(`no loop device here: ${attach.stderr.trim()}`);
  const loop = attach.stdout.trim();
  t.after(() => void spawnSync('losetup', ['-d', loop]));
  assert.ok(statSync(loop).isBlockDevice());

  const info = await vmimg(['info', '--output=json', '-f', 'raw', loop]);
  assert.equal(info.status, 0, info.stderr);
  const q = JSON.parse(qemuImg(['info', '--output=json', '-f', 'raw', loop]).stdout) as Record<string, unknown>;
  assert.equal((JSON.parse(info.stdout) as Record<string, unknown>)['virtual-size'], q['virtual-size']);
  assert.equal(q['virtual-size'], 8 << 20);

  // Old bytes everywhere, then the source written over them: data, written zeros, a hole.
  assert.equal(run('dd', ['if=/dev/urandom', `of=${loop}`, 'bs=1M', 'count=8', 'conv=fsync']).status, 0);
  const src = join(dir, 'src.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', src, '8M']).status, 0);
  assert.equal(run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 1M 2M', '-c', 'write -z 4M 1M', src]).status, 0);
  const n = await vmimg(['convert', '-n', '-f', 'qcow2', '-O', 'raw', src, loop]);
  assert.equal(n.status, 0, n.stderr);
  assert.equal(qemuImg(['compare', '-f', 'qcow2', '-F', 'raw', src, loop]).status, 0, 'the device now reads as the source');
  assert.ok(readFileSync(backing).subarray(0, 1 << 20).every((b) => b === 0), 'the hole before the data was zeroed');

  const c = await vmimg(['create', '-f', 'raw', loop, '1M']);
  assert.equal(c.status, 1);
  assert.match(c.stderr, /it is a block device, and vmimg only replaces regular files \(convert -n writes into an existing block device\) \[WRITE_FAILED\]/);
  assert.ok(statSync(loop).isBlockDevice());
});
