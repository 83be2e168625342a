/**
 * Writing VHDX images in place (src/formats/vhdx/write.ts), judged by qemu-img 7.2: images that
 * qemu-img created (dynamic with ZERO and with NOT_PRESENT entries, fixed with ZERO entries and
 * fixed in place, several block sizes, a short last block), some with data qemu-io wrote, take
 * seeded writes, zero writes and unmapping zero writes through vmimg while a raw mirror takes the
 * same bytes. Afterwards `qemu-img check` is clean, `qemu-img compare` finds the image equal to
 * the mirror, `qemu-img info` is sane, the log GUID is zero and the headers carry new GUIDs.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openChain } from '../../../src/chain/open.js';
import { defaultPolicy } from '../../../src/chain/policy.js';
import type { Image } from '../../../src/formats/image.js';
import { guidEquals, isZeroGuid } from '../../../src/formats/vhdx/guid.js';
import { readVhdxFacts, type VhdxFacts } from '../../../src/formats/vhdx/header.js';
import { payloadBatIndex } from '../../../src/formats/vhdx/params.js';
import { decodeHeader, encodeBatEntry, encodeHeader, HEADER1_OFFSET, HEADER2_OFFSET, HEADER_SIZE, PAYLOAD_BLOCK_FULLY_PRESENT } from '../../../src/formats/vhdx/structs.js';
import { FileStorage } from '../../../src/storage/file.js';
import { VmimgError } from '../../../src/util/errors.js';
import { sectors } from '../../../src/util/units.js';
import { imageBackend } from '../../../src/virtio/device/backend.js';
import { vmimg } from '../../helpers/cli.js';
import { oracle, qemuImg, qemuInfo, run, tempDir } from '../../helpers/oracle.js';
import { seededRandom } from '../../helpers/random.js';
import { rig } from '../../virtio/helpers.js';

const MiB = 1024 * 1024;

async function factsOf(path: string): Promise<VhdxFacts> {
  const s = await FileStorage.open(path);
  try {
    return await readVhdxFacts(s);
  } finally {
    await s.close();
  }
}

async function withWritable(image: string, fn: (top: Image) => Promise<void>): Promise<void> {
  const chain = await openChain(image, { format: 'vhdx', policy: defaultPolicy(image), writable: true });
  try {
    assert.ok(chain.top.writable && chain.top.write && chain.top.writeZeroes);
    await fn(chain.top);
    await chain.top.flush?.();
  } finally {
    await chain.close();
  }
}

const sha = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

async function randomWrites(image: string, mirror: string, seed: number, size: number, blockSize: number): Promise<void> {
  const rnd = seededRandom(seed);
  const num = (n: number): number => {
    const b = rnd(4);
    return ((b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0) % n;
  };
  const m = await FileStorage.open(mirror, { writable: true });
  try {
    await withWritable(image, async (top) => {
      for (let i = 0; i < 60; i++) {
        let length = 1 + num(i % 5 === 0 ? 3 * MiB : 70000);
        let offset = num(size - length + 1);
        if (i % 10 === 9) {
          // a whole block (the last one may be short), unmapped
          const block = num(Math.ceil(size / blockSize));
          offset = block * blockSize;
          length = Math.min(blockSize, size - offset);
        }
        if (i % 4 === 3 || i % 10 === 9) {
          await top.writeZeroes!(offset, length, { mayUnmap: i % 2 === 1 });
          await m.write(offset, new Uint8Array(length));
        } else {
          const data = i % 7 === 0 ? new Uint8Array(length) : rnd(length);
          await top.write!(offset, data);
          await m.write(offset, data);
        }
      }
      // the last byte of the disk
      await top.write!(size - 1, Uint8Array.of(0x5a));
      await m.write(size - 1, Uint8Array.of(0x5a));
      await assert.rejects(top.write!(size - 10, new Uint8Array(20)), (e: unknown) => e instanceof VmimgError && e.code === 'OUT_OF_BOUNDS');
    });
  } finally {
    await m.close();
  }
}

function judge(image: string, mirror: string, size: number, blockSize: number, label: string): void {
  const check = qemuImg(['check', '-f', 'vhdx', image]);
  assert.equal(check.status, 0, `${label}: ${check.stdout}${check.stderr}`);
  assert.match(check.stdout, /No errors were found on the image/, label);
  assert.equal(check.stderr, '', label);
  const cmp = qemuImg(['compare', '-f', 'raw', '-F', 'vhdx', mirror, image]);
  assert.equal(cmp.status, 0, `${label}: ${cmp.stdout}${cmp.stderr}`);
  const info = qemuInfo(image, 'vhdx');
  assert.equal(info['format'], 'vhdx', label);
  assert.equal(info['virtual-size'], size, label);
  assert.equal(info['cluster-size'], blockSize, label);
  assert.equal(info['dirty-flag'], false, label);
}

test('vhdx images written in place pass qemu-img check and compare equal to their raw mirror', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const cases: Array<{ name: string; size: string; opts: string; blockSize: number; writes: string[] }> = [
    { name: 'dynamic-zero.vhdx', size: '40M', opts: '', blockSize: 8 * MiB, writes: ['write -P 0x11 0 3M', 'write -P 0x22 17M 64k'] },
    { name: 'dynamic-1m.vhdx', size: '13M', opts: 'block_size=1M,block_state_zero=off', blockSize: MiB, writes: [] },
    { name: 'dynamic-4m-short.vhdx', size: '13M', opts: 'block_size=4M,log_size=2M', blockSize: 4 * MiB, writes: ['write -P 0x33 11M 2M'] },
    { name: 'fixed-zero.vhdx', size: '24M', opts: 'subformat=fixed', blockSize: 8 * MiB, writes: ['write -P 0x44 9M 1M'] },
    { name: 'fixed-inplace.vhdx', size: '10M', opts: 'subformat=fixed,block_state_zero=off,block_size=2M', blockSize: 2 * MiB, writes: ['write -P 0x55 1M 2M'] },
  ];
  for (const [i, c] of cases.entries()) {
    const image = join(dir, c.name);
    const opts = c.opts ? ['-o', c.opts] : [];
    const created = qemuImg(['create', '-q', '-f', 'vhdx', ...opts, image, c.size]);
    assert.equal(created.status, 0, created.stderr);
    if (c.writes.length) {
      const r = run('qemu-io', ['-f', 'vhdx', ...c.writes.flatMap((w) => ['-c', w]), image]);
      assert.equal(r.status, 0, r.stderr);
    }
    const mirror = join(dir, `${c.name}.raw`);
    assert.equal(qemuImg(['convert', '-f', 'vhdx', '-O', 'raw', image, mirror]).status, 0);
    const size = statSync(mirror).size;
    const before = await factsOf(image);
    const fixedLength = statSync(image).size;
    await randomWrites(image, mirror, 200 + i, size, c.blockSize);
    judge(image, mirror, size, c.blockSize, c.name);
    const vcheck = await vmimg(['check', '-f', 'vhdx', image]);
    assert.equal(vcheck.status, 0, `${c.name}: ${vcheck.stdout}${vcheck.stderr}`);
    const after = await factsOf(image);
    assert.ok(isZeroGuid(after.header.logGuid), `${c.name}: log GUID`);
    assert.equal(after.header.sequenceNumber, before.header.sequenceNumber + 2n, `${c.name}: sequence number`);
    assert.ok(!guidEquals(after.header.dataWriteGuid, before.header.dataWriteGuid), `${c.name}: data write GUID unchanged`);
    assert.ok(!guidEquals(after.header.fileWriteGuid, before.header.fileWriteGuid), `${c.name}: file write GUID unchanged`);
    if (c.name === 'fixed-inplace.vhdx') assert.equal(statSync(image).size, fixedLength, 'a fixed disk written in place keeps its length');
    // both headers were rewritten (the non-current one first)
    const bytes = readFileSync(image);
    const h1 = decodeHeader(bytes.subarray(HEADER1_OFFSET, HEADER1_OFFSET + HEADER_SIZE));
    const h2 = decodeHeader(bytes.subarray(HEADER2_OFFSET, HEADER2_OFFSET + HEADER_SIZE));
    const seq = before.header.sequenceNumber;
    assert.deepEqual([h1.sequenceNumber, h2.sequenceNumber], before.headerIndex === 0 ? [seq + 2n, seq + 1n] : [seq + 1n, seq + 2n], c.name);
    // QEMU opens the result read-write and keeps writing into it
    const more = `write -P 0x66 ${Math.floor(size / 3)} 64k`;
    assert.equal(run('qemu-io', ['-f', 'vhdx', '-c', more, image]).status, 0, c.name);
    assert.equal(run('qemu-io', ['-f', 'raw', '-c', more, mirror]).status, 0, c.name);
    judge(image, mirror, size, c.blockSize, `${c.name} after qemu-io`);
  }
});

test('vhdx zero writes to unallocated blocks change nothing; unmapping zero writes make blocks ZERO', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const image = join(dir, 'z.vhdx');
  assert.equal(qemuImg(['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M', image, '8M']).status, 0);
  const before = sha(image);
  await withWritable(image, async (top) => {
    await top.write!(0, new Uint8Array(3 * MiB));
    await top.writeZeroes!(MiB, 4 * MiB, { mayUnmap: true });
    await top.writeZeroes!(100, 5000);
  });
  assert.equal(sha(image), before, 'nothing was written');

  const length = statSync(image).size;
  await withWritable(image, async (top) => {
    await top.write!(2 * MiB + 100, new Uint8Array(10).fill(7));
    assert.deepEqual((await top.map(2 * MiB, MiB)).map((e) => e.kind), ['data']);
    // not the whole block: stays allocated, zeros written
    await top.writeZeroes!(2 * MiB, MiB - 512, { mayUnmap: true });
    assert.deepEqual((await top.map(2 * MiB, MiB)).map((e) => e.kind), ['data']);
    await top.write!(2 * MiB + 100, new Uint8Array(10).fill(8));
    // the whole block without mayUnmap: zeros written
    await top.writeZeroes!(2 * MiB, MiB);
    assert.deepEqual((await top.map(2 * MiB, MiB)).map((e) => e.kind), ['data']);
    await top.write!(2 * MiB + 100, new Uint8Array(10).fill(9));
    // the whole block with mayUnmap: ZERO
    await top.writeZeroes!(2 * MiB, MiB, { mayUnmap: true });
    assert.deepEqual((await top.map(2 * MiB, MiB)).map((e) => e.kind), ['zero']);
  });
  // one block allocated at the first MiB boundary at or after create's end
  assert.equal(statSync(image).size, Math.ceil(length / MiB) * MiB + MiB);
  const mirror = join(dir, 'z.raw');
  writeFileSync(mirror, new Uint8Array(8 * MiB));
  judge(image, mirror, 8 * MiB, MiB, 'z.vhdx');

  // A fixed disk (LeaveBlockAllocated) keeps its blocks: zeros are written instead.
  const fixed = join(dir, 'f.vhdx');
  assert.equal(qemuImg(['create', '-q', '-f', 'vhdx', '-o', 'subformat=fixed,block_state_zero=off,block_size=1M', fixed, '4M']).status, 0);
  await withWritable(fixed, async (top) => {
    await top.write!(MiB, new Uint8Array(MiB).fill(3));
    await top.writeZeroes!(MiB, MiB, { mayUnmap: true });
    assert.deepEqual((await top.map(MiB, MiB)).map((e) => e.kind), ['data']);
  });
  const fmirror = join(dir, 'f.raw');
  writeFileSync(fmirror, new Uint8Array(4 * MiB));
  judge(fixed, fmirror, 4 * MiB, MiB, 'f.vhdx');
});

test('vhdx images are refused for writing when their header names a log; read-only opens refuse writes', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t);
  const image = join(dir, 'log.vhdx');
  assert.equal(qemuImg(['create', '-q', '-f', 'vhdx', image, '8M']).status, 0);

  const ro = await openChain(image, { format: 'vhdx', policy: defaultPolicy(image) });
  try {
    assert.equal(ro.top.writable, false);
    await assert.rejects(ro.top.write!(0, new Uint8Array(512)), (e: unknown) => e instanceof VmimgError && e.code === 'WRITE_FAILED');
  } finally {
    await ro.close();
  }

  const pokeLog = (logLength: number | undefined): void => {
    const bytes = readFileSync(image);
    for (const at of [HEADER1_OFFSET, HEADER2_OFFSET]) {
      const h = decodeHeader(bytes.subarray(at, at + HEADER_SIZE));
      h.logGuid = Uint8Array.from({ length: 16 }, (_v, k) => k + 1);
      if (logLength !== undefined) h.logLength = logLength;
      bytes.set(encodeHeader(h), at);
    }
    writeFileSync(image, bytes);
  };
  const refused = async (pattern: RegExp): Promise<void> => {
    await assert.rejects(openChain(image, { format: 'vhdx', policy: defaultPolicy(image), writable: true }), (e: unknown) => {
      return e instanceof VmimgError && e.code === 'UNSUPPORTED_IMAGE' && pattern.test(e.message);
    });
  };
  // a log GUID with a log: the log may need replaying (refused for reading too)
  pokeLog(undefined);
  const before = sha(image);
  await refused(/log/);
  // a log GUID without a log: still refused for writing
  pokeLog(0);
  await refused(/cannot be opened for writing.*log GUID/);
  assert.notEqual(sha(image), before);
});

test('convert -n writes into an existing vhdx image', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const src = join(dir, 'src.raw');
  assert.equal(qemuImg(['create', '-q', '-f', 'raw', src, '20M']).status, 0);
  assert.equal(run('qemu-io', ['-f', 'raw', '-c', 'write -P 5 0 1M', '-c', 'write -P 6 9M 100k', '-c', 'write -P 7 19M 1M', src]).status, 0);
  for (const opts of ['block_size=1M', 'subformat=fixed,block_state_zero=off,block_size=2M', 'subformat=fixed']) {
    const target = join(dir, 't.vhdx');
    assert.equal(qemuImg(['create', '-q', '-f', 'vhdx', '-o', opts, target, '20M']).status, 0);
    // old data the convert must overwrite, in blocks the source has data in and blocks it has none
    assert.equal(run('qemu-io', ['-f', 'vhdx', '-c', 'write -P 9 0 512k', '-c', 'write -P 9 4M 6M', target]).status, 0);
    const r = await vmimg(['convert', '-n', '-O', 'vhdx', src, target]);
    assert.equal(r.status, 0, `${opts}: ${r.stderr}`);
    judge(target, src, 20 * MiB, opts.includes('2M') ? 2 * MiB : opts.includes('1M') ? MiB : 8 * MiB, opts);
  }
});

test('virtio-blk serves a vhdx read-write through its write path: qemu-img check and qemu-io agree', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const image = join(dir, 'v.vhdx');
  assert.equal(qemuImg(['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M', image, '4M']).status, 0);
  const chain = await openChain(image, { format: 'vhdx', policy: defaultPolicy(image), writable: true });
  try {
    const backend = imageBackend(chain.layers);
    assert.equal(backend.readOnly, false);
    const { driver, blk } = rig(backend, { version: 2, driver: { mode: 'rw' } });
    await driver.write(sectors(3), new Uint8Array(1024).fill(0x41));
    await driver.write(sectors(2048 + 2047), new Uint8Array(1024).fill(0x42)); // across blocks 1 and 2
    await driver.flush();
    const back = await driver.read(sectors(0), sectors(8));
    assert.equal(back[3 * 512], 0x41);
    assert.equal(back[0], 0);
    assert.equal(blk.stats.failedRequests, 0, blk.stats.log.join('\n'));
  } finally {
    await chain.close();
  }
  assert.equal(qemuImg(['check', '-f', 'vhdx', image]).status, 0);
  const reads = ['read -P 0 0 1536', 'read -P 0x41 1536 1024', 'read -P 0 2560 2094080', 'read -P 0x42 2096640 1024', 'read -P 0 2097664 2096640'];
  const r = run('qemu-io', ['-f', 'vhdx', ...reads.flatMap((c) => ['-c', c]), image]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.doesNotMatch(r.stdout, /Pattern verification failed/, r.stdout);
});

test('a present block that escapes the open-time region check is never written over metadata', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t);
  const image = join(dir, 'h.vhdx');
  // 256 MiB blocks: chunk ratio 16, so QEMU's open-time check skips the 17th present block
  assert.equal(qemuImg(['create', '-q', '-f', 'vhdx', '-o', 'block_size=256M', image, '5G']).status, 0);
  const block = 256 * MiB;
  await withWritable(image, async (top) => {
    for (let b = 0; b < 17; b++) await top.write!(b * block, Uint8Array.of(b + 1));
  });
  const facts = await factsOf(image);
  const s = await FileStorage.open(image, { writable: true });
  try {
    const entry = new Uint8Array(8);
    new DataView(entry.buffer).setBigUint64(0, encodeBatEntry(PAYLOAD_BLOCK_FULLY_PRESENT, facts.metadataRegion.fileOffset), true);
    await s.write(Number(facts.batRegion.fileOffset) + payloadBatIndex(facts.geometry, 16) * 8, entry);
  } finally {
    await s.close();
  }
  const metadataBytes = async (): Promise<Uint8Array> => {
    const r = await FileStorage.open(image);
    try {
      return await r.read(Number(facts.metadataRegion.fileOffset), facts.metadataRegion.length);
    } finally {
      await r.close();
    }
  };
  const metadata = await metadataBytes();
  await withWritable(image, async (top) => {
    await top.write!(3 * block, Uint8Array.of(0x77));
    await assert.rejects(top.write!(16 * block + 10, Uint8Array.of(1)), (e: unknown) => e instanceof VmimgError && e.code === 'CORRUPT_IMAGE' && /overlaps the region/.test(e.message));
    await assert.rejects(top.writeZeroes!(16 * block, block, { mayUnmap: true }), (e: unknown) => e instanceof VmimgError && e.code === 'CORRUPT_IMAGE');
  });
  assert.deepEqual(await metadataBytes(), metadata);
  assert.equal((await factsOf(image)).virtualSize, facts.virtualSize);
});
