/**
 * The device model serving real images made by qemu-img (raw, a qcow2 backing chain, vmdk,
 * vpc, vhdx), read through the driver over both register maps: every byte equals
 * `qemu-img convert -O raw`. Then read-write on a raw image: writes and flush through the
 * driver, verified by qemu-io and qemu-img compare; and read-write on a qcow2 overlay through the
 * Image write path, judged by qemu-img check and qemu-io.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { openChain, openImage } from '../../src/chain/open.js';
import { defaultPolicy } from '../../src/chain/policy.js';
import { chainBackend, imageBackend, rawWritableBackend } from '../../src/virtio/device/backend.js';
import { sectors } from '../../src/util/units.js';
import { VmimgError } from '../../src/util/errors.js';
import { oracle, qemuImg, run, tempDir } from '../helpers/oracle.js';
import { pattern, rig } from './helpers.js';

const SIZE = 3 * 1024 * 1024 + 64 * 1024;

function ok(r: { status: number; stderr: string }, what: string): void {
  assert.equal(r.status, 0, `${what}: ${r.stderr}`);
}

/** A raw base with scattered patterns and a hole, a qcow2 over it and an overlay on that. */
function makeImages(dir: string): Record<string, string> {
  const raw = join(dir, 'base.raw');
  ok(qemuImg(['create', '-f', 'raw', raw, String(SIZE)]), 'create raw');
  const writes = ['write -P 0x11 0 64k', 'write -P 0x5a 100k 300k', 'write -P 0xc3 2m 512', 'write -P 0x77 3m 64k'];
  ok(run('qemu-io', ['-f', 'raw', ...writes.flatMap((w) => ['-c', w]), raw]), 'qemu-io raw');
  const base = join(dir, 'base.qcow2');
  ok(qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', '-c', raw, base]), 'convert qcow2');
  const top = join(dir, 'top.qcow2');
  ok(qemuImg(['create', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top]), 'create overlay');
  ok(run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xee 60k 8k', '-c', 'write -z 1m 128k', '-c', 'write -P 0x42 3m 4k', top]), 'qemu-io overlay');
  const out: Record<string, string> = { raw, 'qcow2 chain': top };
  for (const [fmt, opts] of [
    ['vmdk', []],
    ['vpc', ['-o', 'subformat=dynamic']],
    ['vhdx', []],
  ] as const) {
    const p = join(dir, `img.${fmt}`);
    ok(qemuImg(['convert', '-f', 'raw', '-O', fmt, ...opts, raw, p]), `convert ${fmt}`);
    out[fmt] = p;
  }
  return out;
}

async function readAllThroughVirtio(t: TestContext, path: string, version: 1 | 2): Promise<Uint8Array> {
  const chain = await openChain(path, { policy: defaultPolicy(path) });
  t.after(() => chain.close());
  const { driver, blk } = rig(chainBackend(chain.layers), { version });
  assert.equal(driver.info().readOnly, true);
  const cap = driver.info().capacity;
  const out = await driver.readSplit(sectors(0), cap);
  assert.equal(blk.stats.failedRequests, 0, blk.stats.log.join('\n'));
  return out;
}

test('images made by qemu-img read through driver + device equal qemu-img convert -O raw', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t, 'vmimg-virtio-');
  const images = makeImages(dir);
  for (const [name, path] of Object.entries(images)) {
    const expected = join(dir, `expected-${name.replace(/ /g, '-')}.raw`);
    ok(qemuImg(['convert', '-O', 'raw', path, expected]), `convert ${name} to raw`);
    const want = readFileSync(expected);
    for (const version of [1, 2] as const) {
      const got = await readAllThroughVirtio(t, path, version);
      assert.equal(got.length, want.length, `${name} v${version}: capacity`);
      assert.ok(Buffer.from(got).equals(want), `${name} over virtio-mmio v${version} differs from qemu-img convert`);
    }
  }
});

test('raw image read-write: writes and flush through virtio land in the file (qemu-io, qemu-img compare)', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t, 'vmimg-virtio-');
  const path = join(dir, 'disk.raw');
  ok(qemuImg(['create', '-f', 'raw', path, '2M']), 'create');
  const expected = new Uint8Array(2 * 1024 * 1024);
  for (const version of [1, 2] as const) {
    const { image } = await openImage(path, { policy: defaultPolicy(path), format: 'raw', writable: true });
    try {
      const { driver, blk } = rig(rawWritableBackend(image), { version, driver: { mode: 'rw' } });
      assert.equal(driver.info().flush, true);
      const writes: [number, Uint8Array][] = [
        [0, new Uint8Array(4096).fill(version === 1 ? 0xab : 0xcd)],
        [version * 1000, pattern(128 * 1024, version)],
        [4095, pattern(512, 42 + version)],
      ];
      await Promise.all(writes.map(([lba, d]) => driver.write(sectors(lba), d)));
      for (const [lba, d] of writes) expected.set(d, lba * 512);
      await driver.flush();
      assert.deepEqual(await driver.readSplit(sectors(0), sectors(4096)), expected);
      assert.equal(blk.stats.failedRequests, 0, blk.stats.log.join('\n'));
    } finally {
      await image.close();
    }
    const fill = version === 1 ? '0xab' : '0xcd';
    ok(run('qemu-io', ['-f', 'raw', '-c', `read -P ${fill} 0 4k`, path]), 'qemu-io read -P');
    const exp = join(dir, `expected-${version}.raw`);
    writeFileSync(exp, expected);
    ok(qemuImg(['compare', '-f', 'raw', '-F', 'raw', path, exp]), 'qemu-img compare');
  }
});

test('rawWritableBackend refuses non-raw images', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-virtio-');
  const path = join(dir, 'd.qcow2');
  ok(qemuImg(['create', '-f', 'qcow2', path, '1M']), 'create');
  const { image } = await openImage(path, { policy: defaultPolicy(path) });
  t.after(() => image.close());
  assert.throws(() => rawWritableBackend(image), (e: unknown) => e instanceof VmimgError && e.code === 'UNSUPPORTED_OPTION');
});

// Formats whose overlays take writes (their drivers copy the backing bytes around partial writes).
for (const format of ['qcow2', 'vmdk'] as const) {
  test(`${format} overlay read-write through the Image write path: qemu-img check and qemu-io agree`, async (t) => {
    if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
    const dir = tempDir(t, 'vmimg-virtio-');
    const base = join(dir, `base.${format}`);
    const top = join(dir, `top.${format}`);
    ok(qemuImg(['create', '-f', format, base, '2M']), 'create base');
    ok(run('qemu-io', ['-f', format, '-c', 'write -P 0x33 0 1M', base]), 'fill base');
    ok(qemuImg(['create', '-f', format, '-b', `base.${format}`, '-F', format, top]), 'create overlay');
    for (const version of [1, 2] as const) {
      const chain = await openChain(top, { policy: defaultPolicy(top), writable: true });
      try {
        const backend = imageBackend(chain.layers);
        assert.equal(backend.readOnly, false);
        const { driver, blk } = rig(backend, { version, driver: { mode: 'rw' } });
        // Partial-cluster/grain writes over the backing data need copy-on-write from the base.
        await driver.write(sectors(version * 3), new Uint8Array(1024).fill(0x40 + version));
        await driver.write(sectors(3000), new Uint8Array(4096).fill(0x50 + version));
        await driver.flush();
        const back = await driver.read(sectors(0), sectors(16));
        assert.equal(back[version * 3 * 512], 0x40 + version);
        assert.equal(back[0], 0x33);
        assert.equal(blk.stats.failedRequests, 0, blk.stats.log.join('\n'));
      } finally {
        await chain.close();
      }
    }
    ok(qemuImg(['check', '-f', format, top]), 'qemu-img check');
    const reads = ['read -P 0x33 0 1536', 'read -P 0x41 1536 1024', 'read -P 0x33 2560 512', 'read -P 0x42 3072 1024', 'read -P 0x33 4096 1044480', 'read -P 0x52 1536000 4096', 'read -P 0 1540096 4096'];
    const r = run('qemu-io', ['-f', format, ...reads.flatMap((c) => ['-c', c]), top]);
    ok(r, 'qemu-io read -P');
    assert.doesNotMatch(r.stdout, /Pattern verification failed/, r.stdout);
  });
}
