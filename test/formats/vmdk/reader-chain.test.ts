/**
 * vmdk backing chains against qemu-img 7.2: a child names its parent in parentFileNameHint and
 * the parent's format is vmdk. Unallocated grains show the parent through; zeroed grains hide
 * it. Each image is written before its child is created, because QEMU gives an image a new CID
 * on its first write and refuses to read through a child whose parentCID no longer matches.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { oracle, tempDir } from '../../helpers/oracle.js';
import { qemuIo, sameAsQemu, sameContentAsQemu, sameReports, sh } from './reader-support.js';

test('three-level chain: sparse base, zeroed_grain middle hiding base data, sparse top', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vmdk', 'base.vmdk', '8M']);
  qemuIo(dir, 'base.vmdk', ['write -P 0x11 0 1M', 'write -P 0x12 4M 2M', 'write -P 0x13 8128k 64k']);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'zeroed_grain=on', '-b', 'base.vmdk', '-F', 'vmdk', 'mid.vmdk']);
  qemuIo(dir, 'mid.vmdk', ['write -z 128k 256k', 'write -P 0x21 4160k 4k', 'write -z 5M 64k']);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vmdk', '-b', 'mid.vmdk', '-F', 'vmdk', 'top.vmdk']);
  qemuIo(dir, 'top.vmdk', ['write -P 0x31 64k 64k', 'write -P 0x32 6M 100k']);
  const top = join(dir, 'top.vmdk');

  const info = JSON.parse((await sameAsQemu(['info', '--output=json', top])).ours.stdout) as Record<string, unknown>;
  assert.equal(info['backing-filename'], 'mid.vmdk');
  assert.equal(info['backing-filename-format'], 'vmdk');
  await sameReports(top);
  await sameAsQemu(['info', '--backing-chain', '--output=json', top]);
  await sameAsQemu(['info', '--backing-chain', top]);
  const map = await sameAsQemu(['map', '--output=json', top]);
  for (const depth of [0, 1, 2]) assert.match(map.ours.stdout, new RegExp(`"depth": ${depth}`), `map reaches depth ${depth}`);
  await sameContentAsQemu(dir, top);
  await sameContentAsQemu(dir, join(dir, 'mid.vmdk'));
});

test('a child over a streamOptimized parent reads its compressed grains through', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'raw', 'src.raw', '3M']);
  sh(dir, 'qemu-io', ['-f', 'raw', '-c', 'write -P 0x41 0 1M', '-c', 'write -P 0x42 2M 640k', 'src.raw']);
  sh(dir, 'qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', 'src.raw', 'so.vmdk']);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vmdk', '-b', 'so.vmdk', '-F', 'vmdk', 'child.vmdk']);
  qemuIo(dir, 'child.vmdk', ['write -P 0x51 512k 4k', 'write -P 0x52 2112k 64k']);
  const child = join(dir, 'child.vmdk');
  await sameAsQemu(['info', '--output=json', child]);
  await sameAsQemu(['map', '--output=json', child]);
  await sameAsQemu(['info', '--backing-chain', '--output=json', child]);
  await sameContentAsQemu(dir, child);
});
