/**
 * VMware's streamOptimized layout (grain directory at the end, footer, GT/GD/footer/EOS
 * markers), synthesised by vmware-stream.ts: qemu-img 7.2 and vmimg must read it identically
 * (and equal to the disk it was made from), report it identically, and vmimg's safety check
 * must accept it — until its end-of-stream marker is damaged in a way QEMU tolerates.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { vmimg } from '../../helpers/cli.js';
import { oracle, tempDir } from '../../helpers/oracle.js';
import { sameAsQemu, sameContentAsQemu, sameReports, sh } from './reader-support.js';
import { vmwareStream } from './vmware-stream.js';

/** 40 MiB: two grain tables, data in both, one explicitly zero grain, a 1 KiB island. */
function disk(): Uint8Array {
  const d = new Uint8Array(40 * 1024 * 1024);
  d.fill(0x11, 0, 64 * 1024);
  for (let i = 1024 * 1024; i < 1024 * 1024 + 96 * 1024; i++) d[i] = (i * 7) & 0xff;
  d.fill(0x22, 33 * 1024 * 1024 + 512, 33 * 1024 * 1024 + 1536);
  d.fill(0x33, 40 * 1024 * 1024 - 64 * 1024);
  return d;
}

test('VMware-layout streamOptimized: identical reads, info, map and check to qemu-img', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t);
  const source = disk();
  writeFileSync(join(dir, 'src.raw'), source);
  const path = join(dir, 'vw.vmdk');
  writeFileSync(path, vmwareStream(source, { name: 'vw.vmdk', cid: 0x1234abcd }));

  sh(dir, 'qemu-img', ['convert', '-f', 'vmdk', '-O', 'raw', path, 'qemu.raw']);
  assert.ok(readFileSync(join(dir, 'qemu.raw')).equals(Buffer.from(source)), 'qemu-img reads the synthesised stream back as its source');
  await sameContentAsQemu(dir, path);
  for (const args of [
    ['info', '--output=json', path],
    ['info', path],
    ['map', '--output=json', path],
    ['check', path],
    ['check', '--output=json', path],
  ]) {
    await sameAsQemu(args);
  }
  const info = JSON.parse((await vmimg(['info', '--output=json', path])).stdout) as { 'format-specific': { data: { 'create-type': string; cid: number } } };
  assert.equal(info['format-specific'].data['create-type'], 'streamOptimized');
  assert.equal(info['format-specific'].data.cid, 0x1234abcd);
  const safe = await vmimg(['info', '--safety-check', path]);
  assert.equal(safe.status, 0, safe.stderr);
});

test('VMware-layout stream: footer damage QEMU tolerates is a safety issue; damage QEMU refuses fails the open', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t);
  const stream = vmwareStream(disk(), { name: 'vw.vmdk', cid: 7 });

  const eos = stream.slice();
  eos[eos.length - 100] = 1; // padding of the end-of-stream marker: QEMU checks only its first 16 bytes
  writeFileSync(join(dir, 'eos.vmdk'), eos);
  await sameReports(join(dir, 'eos.vmdk'));
  await sameContentAsQemu(dir, join(dir, 'eos.vmdk'));
  const safe = await vmimg(['info', '--safety-check', join(dir, 'eos.vmdk')]);
  assert.equal(safe.status, 1);
  assert.match(safe.stderr, /End-of-stream marker is invalid/);

  const footer = stream.slice();
  new DataView(footer.buffer).setUint32(footer.length - 1536 + 12, 2, true); // footer marker type 3 → 2
  writeFileSync(join(dir, 'footer.vmdk'), footer);
  const r = await sameAsQemu(['info', join(dir, 'footer.vmdk')]);
  assert.equal(r.ours.status, 1);
  assert.match(r.qemu.stderr, /Invalid footer/);
  assert.match(r.ours.stderr, /Invalid footer \[CORRUPT_IMAGE\]/);
});
