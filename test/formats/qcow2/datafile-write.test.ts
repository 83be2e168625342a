/**
 * Seeded random writes and zeroings into qcow2 images with an external data file (made by
 * qemu-img: raw and not, extended L2, small clusters), mirrored in memory: afterwards
 * `qemu-img compare` with the mirror is identical, `qemu-img check` is clean, and a raw data
 * file alone reads as the mirror.
 */
import assert from 'node:assert/strict';
import { existsSync, linkSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openChain } from '../../../src/chain/open.js';
import { defaultPolicy } from '../../../src/chain/policy.js';
import { oracle, qemuImg, run, tempDir } from '../../helpers/oracle.js';
import { seededRandom } from '../../helpers/random.js';
import { VmimgError } from '../../../src/util/errors.js';

const SIZE = 2 * 1024 * 1024 + 3 * 512;

const CASES = [
  'data_file=x.data',
  'data_file=x.data,data_file_raw=on',
  'data_file=x.data,cluster_size=4096',
  'data_file=x.data,data_file_raw=on,cluster_size=4096',
  'data_file=x.data,extended_l2=on,cluster_size=16384',
  'data_file=x.data,data_file_raw=on,extended_l2=on',
];

test('random writes and zeroings into data-file images equal an in-memory mirror (qemu-img compare, check)', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  for (const [n, options] of CASES.entries()) {
    const rnd = seededRandom(1000 + n);
    const num = (max: number): number => {
      const b = rnd(4);
      return (((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0) % max;
    };
    assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-o', options, 'x.qcow2', String(SIZE)], dir).status, 0);
    assert.equal(run('qemu-io', ['-c', 'write -P 0x5a 0 1M', 'x.qcow2'], { cwd: dir }).status, 0);
    const mirror = new Uint8Array(SIZE);
    mirror.fill(0x5a, 0, 1024 * 1024);
    const top = join(dir, 'x.qcow2');
    const chain = await openChain(top, { policy: defaultPolicy(top), writable: true });
    try {
      for (let i = 0; i < 120; i++) {
        const offset = num(SIZE);
        const length = Math.min(SIZE - offset, 1 + num(i % 3 === 0 ? 200000 : 9000));
        if (num(4) === 0) {
          await chain.top.writeZeroes!(offset, length, { mayUnmap: num(2) === 0 });
          mirror.fill(0, offset, offset + length);
        } else {
          const data = rnd(length);
          await chain.top.write!(offset, data);
          mirror.set(data, offset);
        }
      }
      await chain.top.flush!();
    } finally {
      await chain.close();
    }
    writeFileSync(join(dir, 'mirror.raw'), mirror);
    const cmp = qemuImg(['compare', '-f', 'raw', '-F', 'qcow2', 'mirror.raw', 'x.qcow2'], dir);
    assert.equal(cmp.stdout, 'Images are identical.\n', `${options}: ${cmp.stdout}${cmp.stderr}`);
    const check = qemuImg(['check', 'x.qcow2'], dir);
    assert.equal(check.status, 0, `${options}: ${check.stdout}${check.stderr}`);
    assert.match(check.stdout, /No errors were found/, options);
    if (options.includes('data_file_raw=on')) {
      const raw = qemuImg(['compare', '-f', 'raw', '-F', 'raw', 'mirror.raw', 'x.data'], dir);
      // The data file runs to the end of the last cluster (create's copy-on-write tail): sizes differ.
      assert.match(raw.stdout, /Images are identical\.\n$/, `${options}: raw data file: ${raw.stdout}${raw.stderr}`);
    }
  }
});

/** Rewrites the data file name recorded in `image` (same length) to `to`. */
function renameDataFile(image: string, from: string, to: string): void {
  const bytes = readFileSync(image);
  const at = bytes.indexOf(from);
  assert.ok(at > 0 && from.length === to.length);
  bytes.write(to, at, 'latin1');
  writeFileSync(image, bytes);
}

test('a data file that is the image itself (same name, or a hard link) is refused for writing; the image is untouched', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  // [image, data file it is created with, the name it is then made to record (same length)]
  const cases = [
    ['a.qcow2', 'z.qcow2', 'a.qcow2'],
    ['h.qcow2', 'z.hlnk', 'h.hlnk'],
  ] as const;
  for (const [name, created, selfName] of cases) {
    assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-o', `data_file=${created}`, name, '4M'], dir).status, 0);
    assert.equal(run('qemu-io', ['-c', 'write -P 0x55 0 1M', name], { cwd: dir }).status, 0);
    renameDataFile(join(dir, name), created, selfName);
    if (selfName !== name) linkSync(join(dir, name), join(dir, selfName));
    const before = readFileSync(join(dir, name));
    // (qemu-img convert -n into such an image fails: its two opens of one file conflict on the image locks.)
    const top = join(dir, name);
    const chain = await openChain(top, { policy: defaultPolicy(top), writable: true });
    try {
      await assert.rejects(chain.top.write!(0, new Uint8Array(65536).fill(0x66)), (e: unknown) => e instanceof VmimgError && e.code === 'REFERENCE_DENIED' && /image file itself/.test(e.message));
      await assert.rejects(chain.top.writeZeroes!(0, 65536), (e: unknown) => e instanceof VmimgError && e.code === 'REFERENCE_DENIED');
    } finally {
      await chain.close();
    }
    assert.deepEqual(readFileSync(join(dir, name)), before, name);
    assert.equal(qemuImg(['check', name], dir).status, 0);
  }
});

test('a data file that is the image’s own backing file is refused for a writable open; the backing file is untouched', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', 'b.qcow2', '4M'], dir).status, 0);
  assert.equal(run('qemu-io', ['-c', 'write -P 0x77 0 3M', 'b.qcow2'], { cwd: dir }).status, 0);
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'data_file=x.qcow2', '-b', 'b.qcow2', '-F', 'qcow2', 'd.qcow2', '4M'], dir).status, 0);
  renameDataFile(join(dir, 'd.qcow2'), 'x.qcow2', 'b.qcow2');
  const before = readFileSync(join(dir, 'b.qcow2'));
  // (qemu-img convert -n into it fails: Failed to get "write" lock on b.qcow2.)
  const top = join(dir, 'd.qcow2');
  await assert.rejects(openChain(top, { policy: defaultPolicy(top), writable: true }), (e: unknown) => e instanceof VmimgError && e.code === 'REFERENCE_DENIED' && /backing file/.test(e.message));
  assert.deepEqual(readFileSync(join(dir, 'b.qcow2')), before);
  // Read-only opens stay allowed.
  const chain = await openChain(top, { policy: defaultPolicy(top) });
  await chain.close();
});

test('a writable open with bitmaps and a data file that fails (bitmap table on metadata) leaves no file descriptor open', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  if (!existsSync('/proc/self/fd')) return t.skip('no /proc/self/fd');
  const dir = tempDir(t);
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'data_file=x.data', 'i.qcow2', '1M'], dir).status, 0);
  assert.equal(qemuImg(['bitmap', '--add', 'i.qcow2', 'b1'], dir).status, 0);
  // Point the bitmap's table at the L1 table (header extension 0x23852875 → directory → entry 0).
  const top = join(dir, 'i.qcow2');
  const bytes = readFileSync(top);
  const l1 = bytes.readBigUInt64BE(40);
  const ext = bytes.indexOf(Buffer.from([0x23, 0x85, 0x28, 0x75]));
  const directory = Number(bytes.readBigUInt64BE(ext + 8 + 16));
  bytes.writeBigUInt64BE(l1, directory);
  writeFileSync(top, bytes);
  const fds = (): number => readdirSync('/proc/self/fd').length;
  const before = fds();
  for (let i = 0; i < 3; i++) {
    await assert.rejects(openChain(top, { policy: defaultPolicy(top), writable: true }), (e: unknown) => e instanceof VmimgError && e.code === 'CORRUPT_IMAGE');
  }
  assert.equal(fds(), before);
});
