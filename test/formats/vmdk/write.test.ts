/**
 * Writing vmdk images in place (src/formats/vmdk/write.ts), judged by qemu-img: images qemu-img
 * made (monolithicSparse empty and with data, zeroed_grain, monolithicFlat, the two split
 * subformats over several extents, an overlay on a backing file) take seeded random writes and
 * zero writes through our Image, mirrored on a raw file; afterwards `qemu-img compare` finds the
 * image equal to the mirror and `qemu-img check` finds no errors. streamOptimized images take
 * writes to unallocated grains and refuse rewrites, as QEMU does. The virtio-blk device model
 * serves a writable vmdk overlay through the same write path.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openChain, openImageFromStorage } from '../../../src/chain/open.js';
import { ChainReader } from '../../../src/chain/read.js';
import { defaultPolicy } from '../../../src/chain/policy.js';
import { FileStorage } from '../../../src/storage/file.js';
import type { Storage } from '../../../src/storage/types.js';
import { VmimgError } from '../../../src/util/errors.js';
import { vmimg } from '../../helpers/cli.js';
import { oracle, qemuImg, qemuInfo, run, tempDir } from '../../helpers/oracle.js';
import { seededRandom } from '../../helpers/random.js';
import { vmwareStream } from './vmware-stream.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

function isCode(code: string): (e: unknown) => boolean {
  return (e: unknown) => e instanceof VmimgError && e.code === code;
}

/** Seeded writes and zero writes through the image (opened with its chain), mirrored on `mirror`. */
async function randomWrites(image: string, mirror: string, seed: number, size: number, count: number): Promise<void> {
  const rnd = seededRandom(seed);
  const num = (n: number): number => {
    const b = rnd(6);
    const v = b[0]! + b[1]! * 2 ** 8 + b[2]! * 2 ** 16 + b[3]! * 2 ** 24 + b[4]! * 2 ** 32 + b[5]! * 2 ** 40;
    return v % n;
  };
  const chain = await openChain(image, { format: 'vmdk', policy: defaultPolicy(image), writable: true });
  const m = await FileStorage.open(mirror, { writable: true });
  try {
    const top = chain.top;
    assert.ok(top.writable && top.write && top.writeZeroes);
    for (let i = 0; i < count; i++) {
      const length = 1 + num(i % 5 === 0 ? 600 * KiB : 70000);
      // Half the writes land near the start, so later ones hit grains allocated before.
      const offset = i % 2 === 0 ? num(Math.min(size, 4 * MiB) - length + 1) : num(size - length + 1);
      if (i % 4 === 3) {
        await top.writeZeroes(offset, length, { mayUnmap: i % 8 === 7 });
        await m.write(offset, new Uint8Array(length));
      } else {
        const data = i % 7 === 0 ? new Uint8Array(length) : rnd(length);
        await top.write(offset, data);
        await m.write(offset, data);
      }
    }
    await assert.rejects(top.write(size - 10, new Uint8Array(20)), isCode('OUT_OF_BOUNDS'));
    await top.flush?.();
  } finally {
    await m.close();
    await chain.close();
  }
}

/** qemu-img compare against the mirror, qemu-img check, and vmimg's stricter structure check. */
async function judge(name: string, image: string, mirror: string): Promise<void> {
  const cmp = qemuImg(['compare', '-f', 'raw', '-F', 'vmdk', mirror, image]);
  assert.equal(cmp.status, 0, `${name}: ${cmp.stdout}${cmp.stderr}`);
  const check = qemuImg(['check', '-f', 'vmdk', image]);
  assert.equal(check.status, 0, `${name}: ${check.stdout}${check.stderr}`);
  const ours = await vmimg(['check', '-f', 'vmdk', image]);
  assert.equal(ours.status, 0, `${name}: ${ours.stdout}${ours.stderr}`);
}

test('vmdk images written in place read back like their raw mirror (sparse, zeroed grain, flat)', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const cases: Array<{ name: string; opts: string[]; writes: string[]; size: number }> = [
    { name: 'empty.vmdk', opts: [], writes: [], size: 10 * MiB },
    { name: 'data.vmdk', opts: [], writes: ['write -P 0x11 0 3M', 'write -P 0x22 5M 64k', 'write -P 0x23 7000k 3k'], size: 10 * MiB },
    { name: 'odd.vmdk', opts: [], writes: ['write -P 0x24 9M 100k'], size: 10 * MiB - 3 * 512 },
    { name: 'zeroed.vmdk', opts: ['-o', 'zeroed_grain=on'], writes: ['write -P 0x33 1M 1M', 'write -z 1536k 128k'], size: 10 * MiB },
    { name: 'flat.vmdk', opts: ['-o', 'subformat=monolithicFlat'], writes: ['write -P 0x44 1M 1M'], size: 10 * MiB },
  ];
  for (const [i, c] of cases.entries()) {
    const image = join(dir, c.name);
    assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', ...c.opts, image, String(c.size)]).status, 0);
    if (c.writes.length) assert.equal(run('qemu-io', ['-f', 'vmdk', ...c.writes.flatMap((w) => ['-c', w]), image]).status, 0);
    const mirror = join(dir, `${c.name}.raw`);
    assert.equal(qemuImg(['convert', '-f', 'vmdk', '-O', 'raw', image, mirror]).status, 0);
    const size = statSync(mirror).size;
    const cidBefore = (qemuInfo(image, 'vmdk')['format-specific'] as { data: { cid: number } }).data.cid;
    await randomWrites(image, mirror, 200 + i, size, 60);
    await judge(c.name, image, mirror);
    const cidAfter = (qemuInfo(image, 'vmdk')['format-specific'] as { data: { cid: number } }).data.cid;
    assert.notEqual(cidAfter, cidBefore, `${c.name}: the CID changes on the first write, as QEMU's does`);
  }
});

test('split subformats are written across their extents (twoGbMaxExtentSparse, twoGbMaxExtentFlat)', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  for (const [i, sub] of ['twoGbMaxExtentSparse', 'twoGbMaxExtentFlat'].entries()) {
    const image = join(dir, `${sub}.vmdk`);
    const size = 5 * GiB;
    assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', '-o', `subformat=${sub}`, image, String(size)]).status, 0);
    assert.equal(run('qemu-io', ['-f', 'vmdk', '-c', 'write -P 0x55 2047M 2M', image]).status, 0);
    const mirror = join(dir, `${sub}.raw`);
    assert.equal(qemuImg(['convert', '-f', 'vmdk', '-O', 'raw', image, mirror]).status, 0);
    await randomWrites(image, mirror, 300 + i, size, 30);
    // A write that spans the boundary between the first two extents.
    const chain = await openChain(image, { format: 'vmdk', policy: defaultPolicy(image), writable: true });
    const m = await FileStorage.open(mirror, { writable: true });
    const data = seededRandom(7)(300 * KiB);
    await chain.top.write!(2 * GiB - 100 * KiB, data);
    await m.write(2 * GiB - 100 * KiB, data);
    await m.close();
    await chain.close();
    await judge(sub, image, mirror);
  }
});

test('an overlay with a backing file keeps the backing bytes around partial grain writes', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const base = join(dir, 'base.vmdk');
  assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', base, '8M']).status, 0);
  assert.equal(run('qemu-io', ['-f', 'vmdk', '-c', 'write -P 0x66 0 8M', base]).status, 0);
  const overlay = join(dir, 'overlay.vmdk');
  assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', '-b', 'base.vmdk', '-F', 'vmdk', overlay]).status, 0);
  assert.equal(run('qemu-io', ['-f', 'vmdk', '-c', 'write -P 0x77 1M 64k', overlay]).status, 0);
  const mirror = join(dir, 'overlay.raw');
  assert.equal(qemuImg(['convert', '-f', 'vmdk', '-O', 'raw', overlay, mirror]).status, 0);
  await randomWrites(overlay, mirror, 400, 8 * MiB, 40);
  await judge('overlay', overlay, mirror);
  // The base is untouched.
  const baseRaw = join(dir, 'base.raw');
  writeFileSync(baseRaw, Buffer.alloc(8 * MiB, 0x66));
  assert.equal(qemuImg(['compare', '-f', 'raw', '-F', 'vmdk', baseRaw, base]).status, 0);
});

test('streamOptimized: new grains are appended compressed; written grains are refused as QEMU refuses them', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const image = join(dir, 'so.vmdk');
  assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', '-o', 'subformat=streamOptimized', image, String(4 * MiB - 1024)]).status, 0);
  const mirror = join(dir, 'so.raw');
  writeFileSync(mirror, Buffer.alloc(4 * MiB - 1024));
  const rnd = seededRandom(9);
  const chain = await openChain(image, { format: 'vmdk', policy: defaultPolicy(image), writable: true });
  const m = await FileStorage.open(mirror, { writable: true });
  try {
    const top = chain.top;
    const writes: Array<[number, Uint8Array]> = [
      [0, rnd(64 * KiB)],
      [3 * 64 * KiB, rnd(3 * 64 * KiB)],
      [1 * MiB + 100, rnd(5000)], // a partial grain: the rest of it reads as zeros
      [4 * MiB - 64 * KiB, rnd(64 * KiB - 1024)], // the disk's last, shorter grain
      [2 * MiB, new Uint8Array(64 * KiB)], // zeros over an unallocated grain allocate nothing
    ];
    for (const [offset, data] of writes) {
      await top.write!(offset, data);
      await m.write(offset, data);
    }
    await top.writeZeroes!(2 * MiB + 64 * KiB, 64 * KiB);
    await assert.rejects(top.write!(10, rnd(10)), (e: unknown) => isCode('UNSUPPORTED_IMAGE')(e) && /allocated cluster for streamOptimized/.test((e as Error).message));
    await assert.rejects(top.writeZeroes!(3 * 64 * KiB, 64 * KiB), isCode('UNSUPPORTED_IMAGE'));
  } finally {
    await m.close();
    await chain.close();
  }
  await judge('streamOptimized', image, mirror);
  const map = JSON.parse(qemuImg(['map', '--output=json', '-f', 'vmdk', image]).stdout) as Array<{ start: number; data: boolean }>;
  assert.ok(!map.some((e) => e.start === 2 * MiB && e.data), 'the all-zero grain stays unallocated');
});

test('a grain whose grain table is missing (GD entry 0) is refused; zeros there need none', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t);
  const image = join(dir, 'nogt.vmdk');
  assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', image, '64M']).status, 0);
  // GD #2 (the one QEMU reads) at gdOffset; clear its second entry (guest 32 MiB .. 64 MiB).
  const bytes = readFileSync(image);
  const gdOffset = Number(bytes.readBigUInt64LE(56)) * 512;
  bytes.writeUInt32LE(0, gdOffset + 4);
  writeFileSync(image, bytes);
  const chain = await openChain(image, { format: 'vmdk', policy: defaultPolicy(image), writable: true });
  try {
    await chain.top.writeZeroes!(40 * MiB, MiB);
    await chain.top.write!(40 * MiB, new Uint8Array(4096));
    await assert.rejects(chain.top.write!(40 * MiB, new Uint8Array([1])), (e: unknown) => isCode('UNSUPPORTED_IMAGE')(e) && /not allocated/.test((e as Error).message));
    await chain.top.write!(MiB, new Uint8Array([1, 2, 3]));
  } finally {
    await chain.close();
  }
  assert.equal(qemuImg(['check', '-f', 'vmdk', image]).status, 0);
});

test('convert -n writes into existing vmdk images (monolithicSparse, monolithicFlat, streamOptimized)', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const src = join(dir, 'src.raw');
  assert.equal(qemuImg(['create', '-q', '-f', 'raw', src, '8M']).status, 0);
  assert.equal(run('qemu-io', ['-f', 'raw', '-c', 'write -P 5 0 1M', '-c', 'write -P 6 6M 100k', '-c', 'write -P 7 3M 1k', src]).status, 0);
  for (const sub of ['monolithicSparse', 'monolithicFlat', 'streamOptimized']) {
    const target = join(dir, `${sub}.vmdk`);
    assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', '-o', `subformat=${sub}`, target, '8M']).status, 0);
    if (sub !== 'streamOptimized') assert.equal(run('qemu-io', ['-f', 'vmdk', '-c', 'write -P 9 2M 3M', target]).status, 0);
    const r = await vmimg(['convert', '-n', '-O', 'vmdk', src, target]);
    assert.equal(r.status, 0, `${sub}: ${r.stderr}`);
    await judge(sub, target, src);
  }
});

// virtio-blk over a vmdk overlay: test/virtio/images.test.ts.

test('streamOptimized written by qemu-img convert takes new grains; a VMware stream (footer) is refused at open', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const raw = join(dir, 'src.raw');
  assert.equal(qemuImg(['create', '-q', '-f', 'raw', raw, '3M']).status, 0);
  assert.equal(run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x21 0 200k', '-c', 'write -P 0x22 2M 64k', raw]).status, 0);
  const image = join(dir, 'cv.vmdk');
  assert.equal(qemuImg(['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', raw, image]).status, 0);
  const chain = await openChain(image, { format: 'vmdk', policy: defaultPolicy(image), writable: true });
  const m = await FileStorage.open(raw, { writable: true });
  try {
    const data = seededRandom(11)(192 * KiB);
    await chain.top.write!(MiB, data);
    await m.write(MiB, data);
    await assert.rejects(chain.top.write!(2 * MiB, data.subarray(0, 512)), isCode('UNSUPPORTED_IMAGE'));
  } finally {
    await m.close();
    await chain.close();
  }
  await judge('converted streamOptimized', image, raw);

  const vmware = join(dir, 'vmware.vmdk');
  writeFileSync(vmware, vmwareStream(new Uint8Array(MiB).fill(3), { name: 'vmware.vmdk', cid: 0x1234 }));
  await assert.rejects(openChain(vmware, { format: 'vmdk', policy: defaultPolicy(vmware), writable: true }), (e: unknown) => isCode('UNSUPPORTED_IMAGE')(e) && /footer/.test((e as Error).message));
});

test('the same writes give the same file as qemu-io, byte for byte but the CID (sparse, zeroed grain, split sparse)', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const writes: Array<[number, number, number]> = [
    [0x31, 1000, 100 * KiB],
    [0x32, 5 * MiB + 512, 512],
    [0x33, 64 * KiB, 64 * KiB],
    [0x34, 9 * MiB, 300 * KiB],
    [0x35, 3000, 10],
  ];
  for (const [i, opts] of [[], ['-o', 'zeroed_grain=on'], ['-o', 'subformat=twoGbMaxExtentSparse']].entries()) {
    // The same name in two directories: the descriptors then differ only in the CID.
    mkdirSync(join(dir, `ours${i}`));
    mkdirSync(join(dir, `theirs${i}`));
    const ours = join(dir, `ours${i}`, 'd.vmdk');
    const theirs = join(dir, `theirs${i}`, 'd.vmdk');
    assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', ...opts, ours, '10M']).status, 0);
    assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', ...opts, theirs, '10M']).status, 0);
    assert.equal(run('qemu-io', ['-f', 'vmdk', ...writes.flatMap(([p, o, n]) => ['-c', `write -P ${p} ${o} ${n}`]), theirs]).status, 0);
    const chain = await openChain(ours, { format: 'vmdk', policy: defaultPolicy(ours), writable: true });
    for (const [p, o, n] of writes) await chain.top.write!(o, new Uint8Array(n).fill(p));
    await chain.close();
    const files = i === 2 ? ['-s001.vmdk'] : ['.vmdk'];
    for (const suffix of files) {
      const a = readFileSync(ours.replace(/\.vmdk$/, suffix));
      const b = readFileSync(theirs.replace(/\.vmdk$/, suffix));
      // The embedded descriptor as QEMU reads it (a C string: QEMU leaves old bytes after a shorter one).
      const mask = (buf: Buffer): string => {
        const desc = buf.toString('latin1', 0x200, 0x200 + 10240);
        return buf.toString('latin1', 0, 0x200) + desc.slice(0, desc.indexOf('\0')).replace(/CID=[0-9a-f]+\n/, 'CID=\n') + buf.toString('latin1', 0x200 + 10240);
      };
      assert.ok(mask(a) === mask(b), `${i}${suffix}: the files differ beyond the CID`);
    }
  }
});

test('refusals: version 3 without compression (as qemu-io), an image opened read-only', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const image = join(dir, 'v3.vmdk');
  assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', image, '4M']).status, 0);
  const bytes = readFileSync(image);
  bytes.writeUInt32LE(3, 4);
  writeFileSync(image, bytes);
  const q = run('qemu-io', ['-f', 'vmdk', '-c', 'write 0 512', image]);
  assert.match(q.stderr + q.stdout, /VMDK version 3 must be read only/);
  await assert.rejects(openChain(image, { format: 'vmdk', policy: defaultPolicy(image), writable: true }), (e: unknown) => isCode('UNSUPPORTED_IMAGE')(e) && /version 3 must be read only/.test((e as Error).message));
  const ro = await openChain(image, { format: 'vmdk', policy: defaultPolicy(image) });
  try {
    assert.ok(!ro.top.writable);
    await assert.rejects(ro.top.write!(0, new Uint8Array(512)), isCode('WRITE_FAILED'));
  } finally {
    await ro.close();
  }
});

test('reads racing writes (as the virtio device issues them) never lose a write', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t);
  for (const sub of ['monolithicSparse', 'streamOptimized']) {
    const image = join(dir, `${sub}.vmdk`);
    assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', '-o', `subformat=${sub}`, image, '4M']).status, 0);
    const mirror = join(dir, `${sub}.raw`);
    writeFileSync(mirror, Buffer.alloc(4 * MiB));
    const chain = await openChain(image, { format: 'vmdk', policy: defaultPolicy(image), writable: true });
    const m = await FileStorage.open(mirror, { writable: true });
    const rnd = seededRandom(sub.length);
    try {
      const reader = new ChainReader(chain.layers);
      const jobs: Array<Promise<unknown>> = [];
      for (let g = 0; g < 48; g++) {
        // Uncompressed grains take two partial writes each; compressed ones one whole grain.
        const parts: Array<[number, number]> = sub === 'streamOptimized' ? [[0, 64 * KiB]] : [[512, 4096], [32 * KiB, 1000]];
        for (const [at, n] of parts) {
          const data = rnd(n);
          await m.write(g * 64 * KiB + at, data);
          jobs.push(chain.top.write!(g * 64 * KiB + at, data));
          jobs.push(reader.read(Math.max(0, (g - 1) * 64 * KiB), 128 * KiB));
        }
      }
      await Promise.all(jobs);
    } finally {
      await m.close();
      await chain.close();
    }
    await judge(`racing ${sub}`, image, mirror);
  }
});

test('a grain table read that started before a write and ends after it does not hide the write', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t);
  const image = join(dir, 'gate.vmdk');
  assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', image, '4M']).status, 0);
  const gdOffset = Number(readFileSync(image).readBigUInt64LE(56)) * 512;
  const gtOffset = readFileSync(image).readUInt32LE(gdOffset) * 512;
  // The first read of the grain table (the reader's) is held until the write has finished.
  const file = await FileStorage.open(image, { writable: true });
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => (release = r));
  let held = false;
  const storage = new Proxy(file, {
    get(target, prop) {
      if (prop === 'read') {
        return async (offset: number, length: number) => {
          const bytes = await target.read(offset, length);
          if (offset === gtOffset && !held) {
            held = true;
            await gate;
          }
          return bytes;
        };
      }
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as Storage;
  const { image: top } = await openImageFromStorage(storage, image, { format: 'vmdk', policy: defaultPolicy(image), writable: true });
  try {
    const reader = new ChainReader([top]);
    const early = reader.read(0, 4096);
    await new Promise((r) => setTimeout(r, 20));
    assert.ok(held, 'the reader is loading the grain table');
    await top.write!(512, new Uint8Array(1000).fill(0xab));
    release();
    await early;
    const after = await reader.read(0, 4096);
    assert.equal(after[512], 0xab);
    await top.write!(2048, new Uint8Array(10).fill(0xcd));
  } finally {
    await top.close();
  }
  const mirror = join(dir, 'gate.raw');
  const expect = Buffer.alloc(4 * MiB);
  expect.fill(0xab, 512, 1512);
  expect.fill(0xcd, 2048, 2058);
  writeFileSync(mirror, expect);
  await judge('gated', image, mirror);
});

test('zeroed grains over a backing file: whole-grain zeros become GTE 1, and data written there keeps zeros around it', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const base = join(dir, 'b.vmdk');
  const overlay = join(dir, 'o.vmdk');
  assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', base, '1M']).status, 0);
  assert.equal(run('qemu-io', ['-f', 'vmdk', '-c', 'write -P 0x66 0 1M', base]).status, 0);
  assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', '-o', 'zeroed_grain=on', '-b', 'b.vmdk', '-F', 'vmdk', overlay]).status, 0);
  const size = statSync(overlay).size;
  const chain = await openChain(overlay, { format: 'vmdk', policy: defaultPolicy(overlay), writable: true });
  try {
    await chain.top.writeZeroes!(0, 128 * KiB);
    assert.equal(statSync(overlay).size, size, 'zeros over whole grains allocate nothing');
    // QEMU 7.2 would copy the backing bytes into this grain (the guest read zeros there).
    await chain.top.write!(0, new Uint8Array(512).fill(0x11));
    await chain.top.writeZeroes!(300 * KiB, 10);
  } finally {
    await chain.close();
  }
  const reads = ['read -P 0x11 0 512', 'read -P 0 512 130560', 'read -P 0x66 128k 172k', 'read -P 0 300k 10', 'read -P 0x66 307210 741366'];
  const r = run('qemu-io', ['-f', 'vmdk', ...reads.flatMap((c) => ['-c', c]), overlay]);
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stdout, /Pattern verification failed/, r.stdout);
  assert.equal(qemuImg(['check', '-f', 'vmdk', overlay]).status, 0);
});
