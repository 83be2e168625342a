/**
 * The device model read-write on qcow2 images with an external data file (made by qemu-img,
 * raw and not raw): writes and zeroing through the driver land in the data file at their guest
 * offsets, judged by qemu-img check, qemu-io reads and, for data_file_raw, by the data file
 * itself read as a raw image. The data file is opened (for writing) through the chain policy.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openChain } from '../../src/chain/open.js';
import { defaultPolicy, DENY_ALL } from '../../src/chain/policy.js';
import { imageBackend } from '../../src/virtio/device/backend.js';
import { sectors } from '../../src/util/units.js';
import { VmimgError } from '../../src/util/errors.js';
import { oracle, qemuImg, run, tempDir } from '../helpers/oracle.js';
import { rig } from './helpers.js';

function ok(r: { status: number; stdout: string; stderr: string }, what: string): void {
  assert.equal(r.status, 0, `${what}: ${r.stdout}${r.stderr}`);
}

for (const raw of [false, true]) {
  test(`qcow2 with ${raw ? 'a raw' : 'an'} external data file read-write through virtio: check, qemu-io${raw ? ' and the raw data file' : ''} agree`, async (t) => {
    if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
    const dir = tempDir(t, 'vmimg-virtio-df-');
    // qemu-img and qemu-io resolve the relative data file name against their working directory.
    ok(qemuImg(['create', '-q', '-f', 'qcow2', '-o', `data_file=x.data${raw ? ',data_file_raw=on' : ''}`, 'x.qcow2', '2M'], dir), 'create');
    ok(run('qemu-io', ['-c', 'write -P 0x33 0 1M', 'x.qcow2'], { cwd: dir }), 'fill');
    const top = join(dir, 'x.qcow2');
    const chain = await openChain(top, { policy: defaultPolicy(top), writable: true });
    try {
      const { driver, blk } = rig(imageBackend(chain.layers), { version: 2, driver: { mode: 'rw' } });
      await driver.write(sectors(3), new Uint8Array(1024).fill(0x41)); // inside an allocated cluster
      await driver.write(sectors(3000), new Uint8Array(4096).fill(0x52)); // allocates a cluster at its guest offset
      await driver.flush();
      // Zeroing (convert -n's write-zeroes, unmapping): with data_file_raw the data file is zeroed too.
      await chain.top.writeZeroes!(131072, 65536, { mayUnmap: true });
      await chain.top.flush!();
      const back = await driver.read(sectors(0), sectors(8));
      assert.equal(back[3 * 512], 0x41);
      assert.equal(back[0], 0x33);
      assert.equal(blk.stats.failedRequests, 0, blk.stats.log.join('\n'));
    } finally {
      await chain.close();
    }
    ok(qemuImg(['check', 'x.qcow2'], dir), 'qemu-img check');
    const zeroed = 'read -P 0 131072 65536';
    const reads = ['read -P 0x33 0 1536', 'read -P 0x41 1536 1024', 'read -P 0x33 2560 128512', zeroed, 'read -P 0x33 196608 851968', 'read -P 0x52 1536000 4096', 'read -P 0 1540096 4096'];
    const r = run('qemu-io', [...reads.flatMap((c) => ['-c', c]), 'x.qcow2'], { cwd: dir });
    ok(r, 'qemu-io read -P');
    assert.doesNotMatch(r.stdout, /Pattern verification failed/, r.stdout);
    if (raw) {
      // data_file_raw: the data file alone is the guest disk.
      const rr = run('qemu-io', ['-f', 'raw', ...reads.flatMap((c) => ['-c', c]), 'x.data'], { cwd: dir });
      ok(rr, 'qemu-io read -P of the raw data file');
      assert.doesNotMatch(rr.stdout, /Pattern verification failed/, rr.stdout);
    }
  });
}

test('a data file outside the policy is not opened for writing', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-virtio-df-');
  mkdirSync(join(dir, 'images'));
  ok(qemuImg(['create', '-q', '-f', 'qcow2', '-o', `data_file=${join(dir, 'elsewhere.data')}`, 'images/x.qcow2', '1M'], dir), 'create');
  const top = join(dir, 'images', 'x.qcow2');
  const outside = readFileSync(join(dir, 'elsewhere.data'));
  const image = readFileSync(top);
  for (const policy of [defaultPolicy(top), DENY_ALL]) {
    const chain = await openChain(top, { policy, writable: true });
    try {
      await assert.rejects(chain.top.write!(0, new Uint8Array(512).fill(1)), (e: unknown) => e instanceof VmimgError && e.code === 'REFERENCE_DENIED');
      await assert.rejects(chain.top.writeZeroes!(0, 65536, { mayUnmap: true }), (e: unknown) => e instanceof VmimgError && e.code === 'REFERENCE_DENIED');
    } finally {
      await chain.close();
    }
  }
  // Neither the file outside nor the image changed.
  assert.deepEqual(readFileSync(join(dir, 'elsewhere.data')), outside);
  assert.deepEqual(readFileSync(top), image);
});
