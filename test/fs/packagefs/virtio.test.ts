/**
 * End to end (issue: virtio-blk + packagefs): a tiny packagefs image with two files, attached raw
 * and converted to qcow2 (by qemu-img) to the virtio-blk device model, read through the driver
 * with both register maps: every file's hash equals its source. Building twice gives the same
 * sha256. The CLI's `--via-virtio` reads the same bytes.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'node:test';
import { openChain } from '../../../src/chain/open.js';
import { defaultPolicy } from '../../../src/chain/policy.js';
import { PackagefsReader } from '../../../src/fs/packagefs/index.js';
import { attachVirtioDisk } from '../../../src/virtio/disk.js';
import { vmimg } from '../../helpers/cli.js';
import { oracle, qemuImg, tempDir } from '../../helpers/oracle.js';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

test('a two-file packagefs image read through virtio-blk (raw and qcow2, legacy and modern) matches its sources', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const root = tempDir(t);
  const src = join(root, 'src');
  mkdirSync(src);
  const big = Buffer.alloc(300_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + (i >> 9)) & 0xff;
  const files: Record<string, Buffer> = { 'hello.txt': Buffer.from('hello, virtio\n'), 'data.bin': big };
  for (const [name, data] of Object.entries(files)) writeFileSync(join(src, name), data);

  const a = join(root, 'a.img');
  const b = join(root, 'b.img');
  for (const out of [a, b]) {
    const r = await vmimg(['mkfs', '-t', 'packagefs', '-o', out, src]);
    assert.equal(r.status, 0, r.stderr);
  }
  assert.equal(sha(readFileSync(a)), sha(readFileSync(b)), 'two builds differ');
  const q = join(root, 'a.qcow2');
  assert.equal(qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', a, q]).status, 0);

  for (const image of [a, q]) {
    for (const version of [1, 2] as const) {
      const chain = await openChain(image, { policy: defaultPolicy(image) });
      try {
        const disk = attachVirtioDisk(chain.layers, { version });
        assert.equal(disk.driver.info().version, version);
        const reader = await PackagefsReader.open(disk);
        for (const [name, data] of Object.entries(files)) {
          const hash = createHash('sha256');
          for await (const piece of reader.readFile(reader.require(name))) hash.update(piece);
          assert.equal(hash.digest('hex'), sha(data), `${name} via virtio v${version} from ${image}`);
        }
      } finally {
        await chain.close();
      }
    }
    const verify = await vmimg(['packagefs', 'verify', '--via-virtio', image]);
    assert.equal(verify.status, 0, verify.stderr);
  }
});
