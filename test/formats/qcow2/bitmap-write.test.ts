/**
 * Writing into qcow2 images that hold persistent dirty bitmaps, judged by QEMU 7.2: the same
 * writes and write-zeroes applied by vmimg's write path and by qemu-io to copies of one image
 * leave the same bitmaps (qemu-img info: names, granularities, flags), the same dirty areas as
 * QEMU reads them (qemu-nbd, helpers/nbd.ts), the same data, and a clean qemu-img check (the old
 * bitmap clusters freed). Cases: cluster sizes 512 B to 2 MiB and extended L2; granularities
 * 512 B to 4 MiB; enabled, disabled-with-content and empty disabled bitmaps; seeded random
 * unaligned requests; guest writes through the virtio-blk device model on an overlay with a
 * backing file; a bitmap already in use; a process killed before close (qemu-io's abort); a
 * crash after every single write of a session (open, requests, store at close).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { openChain, openImageFromStorage } from '../../../src/chain/open.js';
import { FileStorage } from '../../../src/storage/file.js';
import { defaultPolicy } from '../../../src/chain/policy.js';
import { sectors } from '../../../src/util/units.js';
import { imageBackend } from '../../../src/virtio/device/backend.js';
import { dirtyRanges } from '../../helpers/nbd.js';
import { setInUse } from '../../helpers/qcow2-bitmaps.js';
import { rig } from '../../virtio/helpers.js';
import { oracle, qemuImg, qemuInfo, run, tempDir } from '../../helpers/oracle.js';
import { CrashingStorage } from '../../helpers/crashing-storage.js';

/** 10 MiB + 1536: a multiple of no granularity above 512 bytes. */
const SIZE = 10 * 1024 * 1024 + 1536;

function ok(r: { status: number; stderr: string }, what: string): void {
  assert.equal(r.status, 0, `${what}: ${r.stderr}`);
}

type Op = { kind: 'write'; offset: number; length: number; fill: number } | { kind: 'zero'; offset: number; length: number };

function qemuIoCommand(op: Op): string {
  return op.kind === 'write' ? `write -P ${op.fill} ${op.offset} ${op.length}` : `write -z ${op.offset} ${op.length}`;
}

function qemuIo(image: string, commands: string[]): void {
  ok(run('qemu-io', ['-f', 'qcow2', ...commands.flatMap((c) => ['-c', c]), image]), `qemu-io ${commands.slice(0, 3).join('; ')}…`);
}

/** The same requests through vmimg: one writable open, the requests, close. */
async function vmimgApply(image: string, ops: readonly Op[]): Promise<void> {
  const chain = await openChain(image, { format: 'qcow2', policy: defaultPolicy(image), writable: true });
  try {
    for (const op of ops) {
      if (op.kind === 'write') await chain.top.write!(op.offset, new Uint8Array(op.length).fill(op.fill));
      else await chain.top.writeZeroes!(op.offset, op.length);
    }
  } finally {
    await chain.top.close();
  }
}

/** xorshift32, so every run makes the same requests. */
function rng(seed: number): (n: number) => number {
  let x = seed || 1;
  return (n) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}

/** `count` requests of any alignment: short ones, ones spanning a few clusters, and long ones. */
function randomOps(seed: number, count: number, clusterSize: number): Op[] {
  const r = rng(seed);
  const ops: Op[] = [];
  for (let i = 0; i < count; i++) {
    const offset = r(SIZE);
    const cap = SIZE - offset;
    const length = 1 + Math.min(cap - 1, [r(4096), r(3 * clusterSize + 1000), r(1024 * 1024)][r(3)]!);
    ops.push(r(10) < 7 ? { kind: 'write', offset, length, fill: 1 + r(255) } : { kind: 'zero', offset, length });
  }
  return ops;
}

function bitmapsOf(path: string): unknown {
  return (qemuInfo(path)['format-specific'] as { data: Record<string, unknown> }).data['bitmaps'];
}

function checkClean(path: string, what: string): void {
  const r = qemuImg(['check', '--output=json', path]);
  ok(r, `${what}: check`);
  const c = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.equal(c['leaks'] ?? 0, 0, `${what}: leaks`);
  assert.equal(c['corruptions'] ?? 0, 0, `${what}: corruptions`);
}

/**
 * An image with bitmaps of every kind: 'fine' (512 B), 'b64k', 'coarse' (4 MiB) enabled;
 * 'frozen' (128 KiB) dirtied then disabled; 'off' (1 MiB) disabled and empty.
 */
const NAMES = ['fine', 'b64k', 'coarse', 'frozen', 'off'];
function makeImage(path: string, create: string[]): void {
  ok(qemuImg(['create', '-q', '-f', 'qcow2', ...create, path, String(SIZE)]), 'create');
  const add = (name: string, ...opts: string[]): void => ok(qemuImg(['bitmap', '--add', ...opts, '-f', 'qcow2', path, name]), `bitmap --add ${name}`);
  add('fine', '-g', '512');
  add('b64k', '-g', '64k');
  add('coarse', '-g', '4M');
  add('frozen', '-g', '128k');
  add('off', '-g', '1M', '--disable');
  qemuIo(path, ['write -P 1 0 64k', 'write -P 2 5M 1k', 'write -z 9M 3000']);
  ok(qemuImg(['bitmap', '--disable', '-f', 'qcow2', path, 'frozen']), 'bitmap --disable frozen');
}

function sameAsQemu(t: Parameters<typeof dirtyRanges>[0], ours: string, theirs: string, names: readonly string[], what: string): void {
  assert.deepEqual(bitmapsOf(ours), bitmapsOf(theirs), `${what}: info bitmaps`);
  const { filename: _f, ['actual-size']: _a, ...info } = qemuInfo(ours);
  const { filename: _g, ['actual-size']: _b, ...qemu } = qemuInfo(theirs);
  assert.deepEqual(info, qemu, `${what}: info`);
  checkClean(ours, what);
  ok(qemuImg(['compare', '-f', 'qcow2', '-F', 'qcow2', theirs, ours]), `${what}: compare`);
  assert.deepEqual(dirtyRanges(t, ours, names), dirtyRanges(t, theirs, names), `${what}: dirty areas`);
}

test('writes into an image with bitmaps dirty them as QEMU does, for cluster sizes 512 B to 2 MiB', { timeout: 600_000 }, async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io') || !oracle(t, 'qemu-nbd')) return;
  const dir = tempDir(t);
  const cases: Array<{ name: string; create: string[]; cs: number }> = [
    { name: '512', create: ['-o', 'cluster_size=512'], cs: 512 },
    { name: '4k', create: ['-o', 'cluster_size=4k'], cs: 4096 },
    { name: '64k', create: [], cs: 65536 },
    { name: '64k-extl2', create: ['-o', 'extended_l2=on'], cs: 65536 },
    { name: '2M', create: ['-o', 'cluster_size=2M'], cs: 2 * 1024 * 1024 },
  ];
  for (const [i, c] of cases.entries()) {
    const theirs = join(dir, `q-${c.name}.qcow2`);
    const ours = join(dir, `v-${c.name}.qcow2`);
    makeImage(theirs, c.create);
    copyFileSync(theirs, ours);
    const ops = randomOps(0x9e3779b9 + i, 60, c.cs);
    qemuIo(theirs, ops.map(qemuIoCommand));
    await vmimgApply(ours, ops);
    sameAsQemu(t, ours, theirs, NAMES, c.name);
    // A second session on the stored bitmaps (their clusters were moved once already).
    const more = randomOps(0x51ed27 + i, 15, c.cs);
    qemuIo(theirs, more.map(qemuIoCommand));
    await vmimgApply(ours, more);
    sameAsQemu(t, ours, theirs, NAMES, `${c.name}, second session`);
  }
});

test('guest writes through the virtio-blk device model dirty the bitmaps of a qcow2 overlay as QEMU does', { timeout: 300_000 }, async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io') || !oracle(t, 'qemu-nbd')) return;
  const dir = tempDir(t);
  const base = join(dir, 'base.qcow2');
  ok(qemuImg(['create', '-q', '-f', 'qcow2', base, String(SIZE)]), 'create base');
  qemuIo(base, ['write -P 0x33 0 10M']);
  const theirs = join(dir, 'q.qcow2');
  const ours = join(dir, 'v.qcow2');
  makeImage(theirs, ['-o', 'cluster_size=16k', '-b', base, '-F', 'qcow2']);
  copyFileSync(theirs, ours);
  // Sector-aligned requests (the device's unit), up to 128 KiB each (the driver's limit).
  const r = rng(2024);
  const ops: Op[] = [];
  for (let i = 0; i < 25; i++) {
    const first = r(SIZE / 512);
    const count = 1 + r(Math.min(256, SIZE / 512 - first));
    ops.push({ kind: 'write', offset: first * 512, length: count * 512, fill: 1 + r(255) });
  }
  qemuIo(theirs, ops.map(qemuIoCommand));
  const chain = await openChain(ours, { policy: defaultPolicy(ours), writable: true });
  try {
    const { driver, blk } = rig(imageBackend(chain.layers), { driver: { mode: 'rw' } });
    for (const op of ops) {
      if (op.kind === 'write') await driver.write(sectors(op.offset / 512), new Uint8Array(op.length).fill(op.fill));
    }
    await driver.flush();
    assert.equal(blk.stats.failedRequests, 0, blk.stats.log.join('\n'));
  } finally {
    await chain.close();
  }
  sameAsQemu(t, ours, theirs, NAMES, 'virtio');
});

test('a bitmap already in use stays in use, with its clusters; the others are kept up to date', { timeout: 300_000 }, async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io') || !oracle(t, 'qemu-nbd')) return;
  const dir = tempDir(t);
  const theirs = join(dir, 'q.qcow2');
  const ours = join(dir, 'v.qcow2');
  makeImage(theirs, ['-o', 'cluster_size=4k']);
  setInUse(theirs, 'b64k');
  setInUse(theirs, 'frozen');
  copyFileSync(theirs, ours);
  const ops = randomOps(7, 30, 4096);
  qemuIo(theirs, ops.map(qemuIoCommand));
  await vmimgApply(ours, ops);
  const consistent = ['fine', 'coarse', 'off'];
  sameAsQemu(t, ours, theirs, consistent, 'in use');
  const flags = (bitmapsOf(ours) as Array<{ name: string; flags: string[] }>).map((b) => [b.name, b.flags]);
  assert.deepEqual(flags, [
    ['fine', ['auto']],
    ['b64k', ['in-use', 'auto']],
    ['coarse', ['auto']],
    ['frozen', ['in-use']],
    ['off', []],
  ]);
});

const openModule = fileURLToPath(new URL('../../../src/chain/open.js', import.meta.url));
const policyModule = fileURLToPath(new URL('../../../src/chain/policy.js', import.meta.url));

test('a process killed before close leaves the bitmaps in use, as a crashed QEMU does', { timeout: 300_000 }, async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io') || !oracle(t, 'qemu-nbd')) return;
  const dir = tempDir(t);
  const theirs = join(dir, 'q.qcow2');
  const ours = join(dir, 'v.qcow2');
  makeImage(theirs, []);
  setInUse(theirs, 'frozen');
  copyFileSync(theirs, ours);
  // qemu-io's abort command: abort(3) with the image open.
  const q = run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 9 1M 4k', '-c', 'abort', theirs]);
  assert.notEqual(q.status, 0, 'qemu-io abort');
  const script = `
    import { openChain } from ${JSON.stringify(openModule)};
    import { defaultPolicy } from ${JSON.stringify(policyModule)};
    const p = ${JSON.stringify(ours)};
    const chain = await openChain(p, { format: 'qcow2', policy: defaultPolicy(p), writable: true });
    await chain.top.write(1024 * 1024, new Uint8Array(4096).fill(9));
    process.kill(process.pid, 'SIGKILL');`;
  const v = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(v.signal, 'SIGKILL', v.stderr);
  const after = bitmapsOf(ours);
  assert.deepEqual(after, bitmapsOf(theirs), 'killed: info bitmaps');
  assert.ok((after as Array<{ flags: string[] }>).every((b) => b.flags.includes('in-use')), 'every bitmap in use');
  checkClean(ours, 'killed');
  const r = qemuImg(['check', '--output=json', theirs]);
  assert.equal((JSON.parse(r.stdout) as Record<string, unknown>)['corruptions'] ?? 0, 0, 'QEMU after abort: no corruptions');
  // The next session keeps them in use (inconsistent bitmaps are never stored again).
  const ops = randomOps(11, 10, 65536);
  qemuIo(theirs, ops.map(qemuIoCommand));
  await vmimgApply(ours, ops);
  assert.deepEqual(bitmapsOf(ours), bitmapsOf(theirs), 'next session: info bitmaps');
  checkClean(ours, 'next session');
});


test('a crash after any write of a session: no corruption; each bitmap is in use or holds the full result', { timeout: 600_000 }, async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io') || !oracle(t, 'qemu-nbd')) return;
  const dir = tempDir(t);
  const pristine = join(dir, 'pristine.qcow2');
  makeImage(pristine, ['-o', 'cluster_size=4k']);
  const ops = randomOps(99, 6, 4096);
  const session = async (path: string, budget: number): Promise<number> => {
    const storage = new CrashingStorage(await FileStorage.open(path, { writable: true }), budget);
    try {
      const { image } = await openImageFromStorage(storage, path, { policy: defaultPolicy(path), writable: true, writeBarriers: false });
      try {
        for (const op of ops) {
          if (op.kind === 'write') await image.write!(op.offset, new Uint8Array(op.length).fill(op.fill));
          else await image.writeZeroes!(op.offset, op.length);
        }
      } finally {
        await image.close();
      }
    } catch (e) {
      assert.match(String(e), /simulated crash/);
      await storage.close().catch(() => undefined);
    }
    return storage.writes;
  };
  const full = join(dir, 'full.qcow2');
  copyFileSync(pristine, full);
  const total = await session(full, Infinity);
  const complete = dirtyRanges(t, full, NAMES);
  const before = dirtyRanges(t, pristine, NAMES);
  t.diagnostic(`${total} writes in the session`);
  let consistentSeen = 0;
  for (let budget = 0; budget < total; budget++) {
    const path = join(dir, `crash-${budget}.qcow2`);
    copyFileSync(pristine, path);
    await session(path, budget);
    const check = qemuImg(['check', '--output=json', path]);
    const r = JSON.parse(check.stdout) as Record<string, number>;
    assert.equal(r['corruptions'] ?? 0, 0, `budget ${budget}: ${check.stdout}`);
    assert.equal(r['check-errors'] ?? 0, 0, `budget ${budget}: ${check.stdout}`);
    const info = qemuImg(['info', '--output=json', path]);
    ok(info, `budget ${budget}: info`);
    const bitmaps = ((JSON.parse(info.stdout) as { 'format-specific': { data: { bitmaps?: Array<{ name: string; flags: string[] }> } } })['format-specific'].data.bitmaps ?? []);
    const consistent = bitmaps.filter((b) => !b.flags.includes('in-use')).map((b) => b.name);
    if (consistent.length === 0) continue;
    // Not in use: the crash came before the open marked them (nothing written: the old bits
    // still describe the data) or after the store switched the header (the full result).
    const got = dirtyRanges(t, path, consistent);
    const unchanged = consistent.every((n) => JSON.stringify(got.get(n)) === JSON.stringify(before.get(n)));
    if (unchanged && qemuImg(['compare', pristine, path]).status === 0) continue;
    consistentSeen++;
    for (const n of consistent) assert.deepEqual(got.get(n), complete.get(n), `budget ${budget}: bitmap ${n}`);
    ok(qemuImg(['compare', full, path]), `budget ${budget}: data of a stored session`);
  }
  // Crashes late in the store (after the header switch) leave the stored bitmaps.
  assert.ok(consistentSeen > 0, `some of ${total} crash points leave stored bitmaps`);
});

test('bitmaps needing more than 512 MiB of memory: the writable open is refused from the directory alone, the image untouched', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-bitmap-mem-');
  const path = join(dir, 'big.qcow2');
  // Two bitmaps of 1 KiB granularity over 4 TiB: 512 MiB each, 1 GiB together.
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', path, '4T']).status, 0);
  for (const name of ['a', 'b']) assert.equal(qemuImg(['bitmap', '--add', '-g', '1024', path, name]).status, 0);
  const before = readFileSync(path);
  await assert.rejects(openChain(path, { policy: defaultPolicy(path), writable: true }), { code: 'UNSUPPORTED_IMAGE', message: /more than 536870912 bytes/ });
  assert.ok(readFileSync(path).equals(before), 'nothing written');
  assert.equal(qemuImg(['check', path]).status, 0);
});
