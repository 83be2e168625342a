/**
 * Seeded random writes and zeroings into qcow2 images with an external data file (made by
 * qemu-img: raw and not, extended L2, small clusters), mirrored in memory: afterwards
 * `qemu-img compare` with the mirror is identical, `qemu-img check` is clean, and a raw data
 * file alone reads as the mirror.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openChain } from '../../../src/chain/open.js';
import { defaultPolicy } from '../../../src/chain/policy.js';
import { oracle, qemuImg, run, tempDir } from '../../helpers/oracle.js';
import { seededRandom } from '../../helpers/random.js';

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
