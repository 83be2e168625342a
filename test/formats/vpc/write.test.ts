/**
 * Writing VHD images in place (src/formats/vpc/write.ts), judged by qemu-img: seeded random
 * writes and zero writes over images qemu-img made (dynamic, with and without data, and fixed)
 * are mirrored on a raw file; afterwards `qemu-img compare` finds the image equal to the mirror,
 * `vmimg check` is clean and the footer copies still agree.
 */
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openChain } from '../../../src/chain/open.js';
import { defaultPolicy } from '../../../src/chain/policy.js';
import { FileStorage } from '../../../src/storage/file.js';
import { VmimgError } from '../../../src/util/errors.js';
import { vmimg } from '../../helpers/cli.js';
import { oracle, qemuImg, run, tempDir } from '../../helpers/oracle.js';
import { seededRandom } from '../../helpers/random.js';

const MiB = 1024 * 1024;

async function randomWrites(image: string, mirror: string, seed: number, size: number): Promise<void> {
  const rnd = seededRandom(seed);
  const num = (n: number): number => {
    const b = rnd(4);
    return ((b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0) % n;
  };
  const chain = await openChain(image, { format: 'vpc', policy: defaultPolicy(image), writable: true });
  const m = await FileStorage.open(mirror, { writable: true });
  try {
    const top = chain.top;
    assert.ok(top.writable && top.write && top.writeZeroes);
    for (let i = 0; i < 60; i++) {
      const length = 1 + num(i % 5 === 0 ? 3 * MiB : 70000);
      const offset = num(size - length + 1);
      if (i % 4 === 3) {
        await top.writeZeroes(offset, length);
        await m.write(offset, new Uint8Array(length));
      } else {
        const data = i % 7 === 0 ? new Uint8Array(length) : rnd(length);
        await top.write(offset, data);
        await m.write(offset, data);
      }
    }
    await assert.rejects(top.write(size - 10, new Uint8Array(20)), (e: unknown) => e instanceof VmimgError && e.code === 'OUT_OF_BOUNDS');
    await top.flush?.();
  } finally {
    await m.close();
    await chain.close();
  }
}

test('vpc images written in place read back like their raw mirror (dynamic, dynamic with data, fixed)', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const cases: Array<{ name: string; opts: string[]; writes: string[] }> = [
    { name: 'empty.vhd', opts: [], writes: [] },
    { name: 'data.vhd', opts: [], writes: ['write -P 0x11 0 3M', 'write -P 0x22 5M 64k'] },
    { name: 'fixed.vhd', opts: ['-o', 'subformat=fixed'], writes: ['write -P 0x33 1M 1M'] },
    { name: 'small-blocks.vhd', opts: [], writes: ['write -P 0x44 100k 8k'] },
  ];
  for (const [i, c] of cases.entries()) {
    const image = join(dir, c.name);
    assert.equal(qemuImg(['create', '-q', '-f', 'vpc', ...c.opts, image, '10M']).status, 0);
    if (c.writes.length) assert.equal(run('qemu-io', ['-f', 'vpc', ...c.writes.flatMap((w) => ['-c', w]), image]).status, 0);
    const mirror = join(dir, `${c.name}.raw`);
    assert.equal(qemuImg(['convert', '-f', 'vpc', '-O', 'raw', image, mirror]).status, 0);
    const size = statSync(mirror).size;
    await randomWrites(image, mirror, 100 + i, size);
    const cmp = qemuImg(['compare', '-f', 'raw', '-F', 'vpc', mirror, image]);
    assert.equal(cmp.status, 0, `${c.name}: ${cmp.stdout}${cmp.stderr}`);
    const check = await vmimg(['check', '-f', 'vpc', image]);
    assert.equal(check.status, 0, `${c.name}: ${check.stdout}${check.stderr}`);
    const bytes = readFileSync(image);
    if (!c.opts.length) assert.deepEqual(bytes.subarray(0, 512), bytes.subarray(bytes.length - 512), `${c.name}: footer copies differ`);
  }
});

test('convert -n writes into an existing vpc image', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const src = join(dir, 'src.raw');
  assert.equal(qemuImg(['create', '-q', '-f', 'raw', src, '8M']).status, 0);
  assert.equal(run('qemu-io', ['-f', 'raw', '-c', 'write -P 5 0 1M', '-c', 'write -P 6 6M 100k', src]).status, 0);
  const target = join(dir, 't.vhd');
  assert.equal(qemuImg(['create', '-q', '-f', 'vpc', target, '8M']).status, 0);
  assert.equal(run('qemu-io', ['-f', 'vpc', '-c', 'write -P 9 2M 3M', target]).status, 0);
  copyFileSync(target, join(dir, 'before.vhd'));
  const r = await vmimg(['convert', '-n', '-O', 'vpc', src, target]);
  assert.equal(r.status, 0, r.stderr);
  const cmp = qemuImg(['compare', '-f', 'raw', '-F', 'vpc', src, target]);
  assert.equal(cmp.status, 0, cmp.stdout + cmp.stderr);
});
