/**
 * qcow2 images from strangers: references outside the allowed directories are never opened
 * (an external data file is reported by `info` but reading it is REFERENCE_DENIED), encrypted
 * images and virtual sizes past 2^53 are refused with UNSUPPORTED_IMAGE, corrupted tables give
 * CORRUPT_IMAGE with QEMU's wording, unknown or unsafe features show up in --safety-check, and
 * seeded mutations of real images through check -r all only ever raise VmimgError.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openChain, openImage, openImageFromStorage } from '../../../src/chain/open.js';
import { DENY_ALL, defaultPolicy, type ChainPolicy } from '../../../src/chain/policy.js';
import { ChainReader } from '../../../src/chain/read.js';
import { MemoryStorage } from '../../../src/storage/memory.js';
import { isVmimgError, VmimgError } from '../../../src/util/errors.js';
import { vmimg } from '../../helpers/cli.js';
import { qemuImg } from '../../helpers/oracle.js';
import { mutate, Rng } from '../../fuzz/harness.js';
import { be32, be64, create, io, layout, messages, poke, sameInfo, sh, workDir } from './read-support.js';

async function rejects(p: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isVmimgError(e), `not a VmimgError: ${String(e)}`);
    assert.equal(e.code, code, e.fullMessage());
    if (message) assert.match(e.fullMessage(), message);
    return true;
  });
}

async function readAll(name: string, policy: ChainPolicy): Promise<Uint8Array> {
  const chain = await openChain(name, { policy });
  try {
    return await new ChainReader(chain.layers).read(0, chain.top.virtualSize);
  } finally {
    await chain.close();
  }
}

test('an external data file outside the image directory: info reports it, reads are REFERENCE_DENIED', async (t) => {
  const dir = workDir(t);
  if (!dir) return;
  mkdirSync('images');
  mkdirSync('elsewhere');
  // qemu-img create makes (and would truncate) the data file: always a new file here.
  create('images/evil.qcow2', '1M', `data_file=${join(dir, 'elsewhere', 'secret.data')},data_file_raw=on`);
  writeFileSync(join(dir, 'elsewhere', 'secret.data'), Buffer.from('TOP-SECRET-HOST-FILE-CONTENT'.padEnd(1 << 20, '.')));
  // qemu-img reads the host file through the image...
  sh('qemu-img', ['convert', '-O', 'raw', 'images/evil.qcow2', 'leak.raw']);
  assert.match(readFileSync('leak.raw').subarray(0, 28).toString(), /TOP-SECRET/);
  // ...vmimg describes the image exactly like qemu-img without opening the data file...
  await sameInfo('images/evil.qcow2');
  // ...and refuses to read through it unless the directory is allowed.
  await rejects(readAll('images/evil.qcow2', defaultPolicy('images/evil.qcow2')), 'REFERENCE_DENIED', /external data file/);
  await rejects(readAll('images/evil.qcow2', DENY_ALL), 'REFERENCE_DENIED');
  const map = await vmimg(['map', 'images/evil.qcow2']);
  assert.equal(map.status, 1);
  assert.match(map.stderr, /REFERENCE_DENIED/);
  const allowed = await readAll('images/evil.qcow2', defaultPolicy('images/evil.qcow2', [join(dir, 'elsewhere')]));
  assert.match(Buffer.from(allowed.subarray(0, 28)).toString(), /TOP-SECRET/);
  const safety = await vmimg(['info', '--safety-check', 'images/evil.qcow2']);
  assert.notEqual(safety.status, 0);
  assert.match(safety.stderr, /data_file/);
  // check never needs the data file.
  const check = await vmimg(['check', 'images/evil.qcow2']);
  assert.equal(check.status, 0, check.stderr);
});

test('encrypted images and virtual sizes past 2^53 are refused; QEMU opens them', async (t) => {
  if (!workDir(t)) return;
  // qemu-img's PBKDF2 calibration fails now and then with "Unable to get accurate CPU usage" (it
  // measured 0 ms of thread CPU time on a fast or busy machine): retry a few times.
  const luks = ['create', '-q', '-f', 'qcow2', '--object', 'secret,id=sec0,data=abc', '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10', 'luks.qcow2', '1M'];
  let made = qemuImg(luks);
  for (let attempt = 1; made.status !== 0 && /accurate CPU usage/.test(made.stderr) && attempt < 8; attempt++) made = qemuImg(luks);
  assert.equal(made.status, 0, made.stderr);
  create('aes.qcow2', '1M');
  poke('aes.qcow2', 32, be32(1));
  for (const name of ['luks.qcow2', 'aes.qcow2']) {
    assert.equal(qemuImg(['info', name]).status, 0);
    await rejects(openImage(name, { policy: DENY_ALL }), 'UNSUPPORTED_IMAGE', /encrypted images are not supported/);
  }
  // 1 EiB: 2 MiB clusters, an L1 table of 2^21 entries (16 MiB).
  create('eib.qcow2', '1G', 'cluster_size=2M');
  poke('eib.qcow2', 24, be64(1n << 60n));
  poke('eib.qcow2', 36, be32(1 << 21));
  assert.match(qemuImg(['info', 'eib.qcow2']).stdout, /1 EiB/);
  await rejects(openImage('eib.qcow2', { policy: DENY_ALL }), 'UNSUPPORTED_IMAGE', /2\^53/);
});

test('corrupt tables and extensions: QEMU messages, stable codes, no escapes', async (t) => {
  if (!workDir(t)) return;
  create('d.qcow2', '4M');
  io('d.qcow2', ['write -P 1 0 128k']);
  const l = layout('d.qcow2');
  const cases: Array<{ name: string; edit: () => void; code: string; qemu: string }> = [
    { name: 'l1-unaligned', edit: () => poke('l1-unaligned.qcow2', l.l1Offset, be64(BigInt(l.l2 + 0x200) | (1n << 63n))), code: 'CORRUPT_IMAGE', qemu: `L2 table offset 0x${(l.l2 + 0x200).toString(16)} unaligned (L1 index: 0)` },
    { name: 'l2-unaligned', edit: () => poke('l2-unaligned.qcow2', l.l2, be64((1n << 63n) | 0x50200n)), code: 'CORRUPT_IMAGE', qemu: 'Cluster allocation offset 0x50200 unaligned (L2 offset: 0x40000, L2 index: 0)' },
    { name: 'v2-zero', edit: () => { poke('v2-zero.qcow2', 4, be32(2)); poke('v2-zero.qcow2', l.l2, be64(1n)); }, code: 'CORRUPT_IMAGE', qemu: 'Zero cluster entry found in pre-v3 image (L2 offset: 0x40000, L2 index: 0)' },
  ];
  for (const c of cases) {
    sh('cp', ['d.qcow2', `${c.name}.qcow2`]);
    c.edit();
    const theirs = qemuImg(['map', '--output=json', `${c.name}.qcow2`]);
    assert.notEqual(theirs.status, 0);
    assert.ok(theirs.stderr.includes(c.qemu), `${c.name}: qemu says ${theirs.stderr}`);
    const ours = await vmimg(['map', '--output=json', `${c.name}.qcow2`]);
    assert.equal(ours.status, 1);
    assert.ok(ours.stderr.includes(c.qemu) && ours.stderr.includes(c.code), `${c.name}: ${ours.stderr}`);
    // img_map prints '[' before the first block-status call; the failing entry is never printed.
    assert.equal(ours.stdout, theirs.stdout, c.name);
  }
  // Compressed data that does not decode: a read error, not a crash.
  sh('qemu-img', ['convert', '-c', '-O', 'qcow2', 'd.qcow2', 'c.qcow2']);
  const cl = layout('c.qcow2');
  const entry = readFileSync('c.qcow2').readBigUInt64BE(cl.l2);
  const coffset = Number(entry & ((1n << 54n) - 1n));
  poke('c.qcow2', coffset, new Uint8Array(64).fill(0xff));
  assert.notEqual(qemuImg(['convert', '-O', 'raw', 'c.qcow2', 'c.raw']).status, 0);
  await rejects(readAll('c.qcow2', DENY_ALL), 'CORRUPT_IMAGE', /does not decode/);

  // Open-time refusals with QEMU's messages.
  create('s.qcow2', '4M');
  sh('qemu-img', ['snapshot', '-c', 'a', 's.qcow2']);
  const snapshots = Number(readFileSync('s.qcow2').readBigUInt64BE(64));
  poke('s.qcow2', snapshots + 36, be32(2000));
  sh('qemu-img', ['bitmap', '--add', 'd.qcow2', 'bm']);
  const raw = readFileSync('d.qcow2');
  let ext = 112;
  while (raw.readUInt32BE(ext) !== 0x23852875) ext += 8 + Math.ceil(raw.readUInt32BE(ext + 4) / 8) * 8;
  poke('d.qcow2', ext + 8, be32(0));
  for (const [name, code] of [['s.qcow2', 'UNSUPPORTED_IMAGE'], ['d.qcow2', 'CORRUPT_IMAGE']] as const) {
    const theirs = messages(qemuImg(['info', name]).stderr)[0]!.replace(`Could not open '${name}': `, '');
    const ours = await vmimg(['info', name]);
    assert.equal(ours.status, 1);
    assert.equal(messages(ours.stderr)[0], `qcow2 image '${name}': ${theirs}`);
    assert.match(ours.stderr, new RegExp(code));
  }
  // check reports the broken snapshot table like qemu-img check (and fails).
  const check = await vmimg(['check', 's.qcow2']);
  const qcheck = qemuImg(['check', 's.qcow2']);
  assert.equal(check.status, qcheck.status);
  assert.equal(messages(check.stderr)[0], messages(qcheck.stderr)[0]);
});

test('safety findings: unknown compatible/autoclear features, corrupt bit, unused data file names', async (t) => {
  if (!workDir(t)) return;
  create('f.qcow2', '1M');
  poke('f.qcow2', 80, be64(0x8n)); // compatible
  poke('f.qcow2', 88, be64(0x100n)); // autoclear
  poke('f.qcow2', 72, be64(0x2n)); // corrupt
  await sameInfo('f.qcow2');
  const { image } = await openImage('f.qcow2', { policy: DENY_ALL });
  try {
    assert.deepEqual(image.safetyIssues!(), [
      'Unknown QCOW2 compatible features found (0x8)',
      'Unknown QCOW2 autoclear features found (0x100)',
      'Image is marked corrupt',
    ]);
  } finally {
    await image.close();
  }
  const r = await vmimg(['info', '--safety-check', 'f.qcow2']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /compatible features/);
  create('plain.qcow2', '1M');
  assert.equal((await vmimg(['info', '--safety-check', 'plain.qcow2'])).status, 0);
});

test('seeded mutations of real images through check -r all, map and reads raise only VmimgError', async (t) => {
  if (!workDir(t)) return;
  const seeds: Uint8Array[] = [];
  for (const [name, opts] of [
    ['a.qcow2', 'cluster_size=4k'],
    ['b.qcow2', 'extended_l2=on,cluster_size=16k'],
    ['c.qcow2', 'cluster_size=512,refcount_bits=4'],
  ] as const) {
    create(name, '1M', opts);
    io(name, ['write -P 1 0 64k', 'write -z 128k 16k', 'write -P 2 300k 5k']);
    seeds.push(readFileSync(name));
  }
  sh('qemu-img', ['snapshot', '-c', 's', 'a.qcow2']);
  seeds.push(readFileSync('a.qcow2'));
  const rng = new Rng(0x51ce);
  let repaired = 0;
  for (let i = 0; i < 300; i++) {
    const bytes = mutate(seeds[i % seeds.length]!, rng);
    const storage = new MemoryStorage(bytes, { writable: true, name: 'm.qcow2' });
    let image;
    try {
      image = (await openImageFromStorage(storage, 'm.qcow2', { format: 'qcow2', policy: DENY_ALL, writable: true, check: true })).image;
    } catch (e) {
      assert.ok(e instanceof VmimgError, String((e as Error).stack));
      continue;
    }
    try {
      await image.check!({ leaks: true, errors: true }, () => undefined);
      await image.check!({ leaks: false, errors: false }, () => undefined);
      repaired++;
      await image.map(0, image.virtualSize);
      await new ChainReader([image]).read(0, Math.min(image.virtualSize, 1 << 20));
    } catch (e) {
      assert.ok(e instanceof VmimgError, `case ${i}: ${String((e as Error).stack)}`);
    } finally {
      await image.close();
    }
  }
  assert.ok(repaired > 0);
});
