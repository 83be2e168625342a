/**
 * vmdk reading against qemu-img 7.2 on every subformat qemu-img writes: images made at test
 * time by qemu-img create/convert with data written by qemu-io, then `info` (JSON and human),
 * `map` (JSON and human), `check` (human and JSON) must print exactly what qemu-img prints,
 * and the whole disk read through ChainReader must equal `qemu-img convert -O raw`.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { oracle, tempDir } from '../../helpers/oracle.js';
import { qemuIo, sameAsQemu, sameContentAsQemu, sameReports, sh } from './reader-support.js';

/** Data at known places: whole grains, a run across grains, unaligned bits, the disk's last sector. */
const PATTERNS = ['write -P 0x11 0 64k', 'write -P 0x22 1M 96k', 'write -P 0x33 3145984 4k', 'write -P 0x44 5M 512'];
/** 5 MiB + 3 sectors: the last grain is partial. */
const SIZE = '5244416';

function tools(t: import('node:test').TestContext): boolean {
  return oracle(t, 'qemu-img') !== undefined && oracle(t, 'qemu-io') !== undefined;
}

test('monolithicSparse: data at known offsets, partial last grain', async (t) => {
  if (!tools(t)) return;
  const dir = tempDir(t);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vmdk', 'm.vmdk', SIZE]);
  qemuIo(dir, 'm.vmdk', PATTERNS);
  await sameReports(join(dir, 'm.vmdk'));
  await sameContentAsQemu(dir, join(dir, 'm.vmdk'));
});

test('monolithicSparse with zeroed_grain: write -z makes zeroed grains (partial ones allocate)', async (t) => {
  if (!tools(t)) return;
  const dir = tempDir(t);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'zeroed_grain=on', 'z.vmdk', '4M']);
  qemuIo(dir, 'z.vmdk', ['write -P 0x11 0 192k', 'write -z 64k 64k', 'write -z 1M 256k', 'write -z 2M 1k', 'write -P 0x22 3M 64k']);
  const map = await sameAsQemu(['map', '--output=json', join(dir, 'z.vmdk')]);
  assert.match(map.ours.stdout, /"present": true, "zero": true, "data": false\}/, 'zeroed grains map as allocated zeros');
  await sameReports(join(dir, 'z.vmdk'));
  await sameContentAsQemu(dir, join(dir, 'z.vmdk'));
});

test('streamOptimized from qemu-img convert (QEMU layout: tables at the front, grain markers, partial last grain)', async (t) => {
  if (!tools(t)) return;
  const dir = tempDir(t);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'raw', 'src.raw', SIZE]);
  sh(dir, 'qemu-io', ['-f', 'raw', ...PATTERNS.flatMap((c) => ['-c', c]), 'src.raw']);
  sh(dir, 'qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', 'src.raw', 's.vmdk']);
  const path = join(dir, 's.vmdk');
  // Human map refuses compressed grains in both tools (status 1, the header on stdout).
  const human = await sameAsQemu(['map', path]);
  assert.equal(human.ours.status, 1);
  assert.match(human.ours.stderr, /compressed clusters/);
  await sameAsQemu(['info', '--output=json', path]);
  await sameAsQemu(['info', path]);
  await sameAsQemu(['map', '--output=json', path]);
  await sameAsQemu(['check', path]);
  await sameAsQemu(['check', '--output=json', path]);
  await sameContentAsQemu(dir, path);
});

test('streamOptimized and monolithicSparse made empty by qemu-img create', async (t) => {
  if (!tools(t)) return;
  const dir = tempDir(t);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=streamOptimized', 'e.vmdk', '1G']);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'adapter_type=lsilogic,hwversion=6', 'l.vmdk', '100M']);
  for (const name of ['e.vmdk', 'l.vmdk']) {
    await sameReports(join(dir, name));
    await sameContentAsQemu(dir, join(dir, name));
  }
});

test('monolithicFlat: a descriptor file and a flat extent whose holes map as data and zero', async (t) => {
  if (!tools(t)) return;
  const dir = tempDir(t);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=monolithicFlat', 'f.vmdk', '4M']);
  qemuIo(dir, 'f.vmdk', ['write -P 0x11 64k 64k', 'write -P 0x22 1M 512', 'write -P 0x33 4092k 4k']);
  const map = await sameAsQemu(['map', '--output=json', join(dir, 'f.vmdk')]);
  assert.match(map.ours.stdout, /"zero": true, "data": true, "offset": /);
  await sameReports(join(dir, 'f.vmdk'));
  await sameContentAsQemu(dir, join(dir, 'f.vmdk'));
});

test('twoGbMaxExtentSparse: three sparse extent files, data across an extent boundary', async (t) => {
  if (!tools(t)) return;
  const dir = tempDir(t);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', 'ts.vmdk', '4160M']);
  qemuIo(dir, 'ts.vmdk', ['write -P 0x11 0 64k', 'write -P 0x22 2047M 2M', 'write -P 0x33 4G 4k', 'write -P 0x44 4159M 1M']);
  await sameReports(join(dir, 'ts.vmdk'));
  await sameContentAsQemu(dir, join(dir, 'ts.vmdk'));
});

test('twoGbMaxExtentFlat: two flat extent files, data across the boundary', async (t) => {
  if (!tools(t)) return;
  const dir = tempDir(t);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentFlat', 'tf.vmdk', '2112M']);
  qemuIo(dir, 'tf.vmdk', ['write -P 0x11 0 64k', 'write -P 0x22 2047M 2M', 'write -P 0x33 2111M 1M']);
  await sameReports(join(dir, 'tf.vmdk'));
  await sameContentAsQemu(dir, join(dir, 'tf.vmdk'));
});

test('hand-written descriptor mixing a FLAT and a SPARSE extent: no cluster-size and no dirty-flag, as qemu-img', async (t) => {
  if (!tools(t)) return;
  const dir = tempDir(t);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=monolithicFlat', 'f.vmdk', '1M']);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vmdk', 's.vmdk', '2M']);
  qemuIo(dir, 'f.vmdk', ['write -P 0x11 0 4k']);
  qemuIo(dir, 's.vmdk', ['write -P 0x22 64k 64k']);
  const desc = '# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\n# Extent description\nRW 2048 FLAT "f-flat.vmdk" 0\n# the sparse extent\'s own header gives its size, not this line\nRW 1 SPARSE "s.vmdk"\nRW 1024 VMFS "f-flat.vmdk"\n';
  writeFileSync(join(dir, 'mixed.vmdk'), desc);
  const info = JSON.parse((await sameAsQemu(['info', '--output=json', join(dir, 'mixed.vmdk')])).ours.stdout) as Record<string, unknown>;
  assert.equal(info['dirty-flag'], undefined);
  assert.equal(info['cluster-size'], undefined);
  assert.equal(info['virtual-size'], (2048 + 4096 + 1024) * 512);
  await sameReports(join(dir, 'mixed.vmdk'));
  await sameContentAsQemu(dir, join(dir, 'mixed.vmdk'));
});
