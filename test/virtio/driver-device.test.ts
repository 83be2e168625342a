/**
 * The driver against the device model over a memory disk, for both register maps: bring-up,
 * info, read/write/flush/GET_ID, and the typed errors (out-of-range LBA, too-large transfer,
 * read-only refusal on both sides, FLUSH not negotiated, UNSUPP, IOERR).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { memoryBackend } from '../../src/virtio/device/backend.js';
import { STATUS } from '../../src/virtio/constants.js';
import { sectors } from '../../src/util/units.js';
import { VmimgError } from '../../src/util/errors.js';
import { pattern, rig } from './helpers.js';

const code = (c: string) => (e: unknown) => e instanceof VmimgError && e.code === c;

for (const version of [1, 2] as const) {
  const name = version === 1 ? 'legacy' : 'modern';

  test(`${name}: bring-up negotiates features and reports info`, () => {
    const disk = pattern(1024 * 1024, 7);
    const { driver, mmio } = rig(memoryBackend(disk), { version, driver: { mode: 'rw' } });
    const info = driver.info();
    assert.equal(info.version, version);
    assert.equal(info.capacity, 2048);
    assert.equal(info.blkSize, 512);
    assert.equal(info.readOnly, false);
    assert.equal(info.flush, true);
    assert.equal(info.eventIdx, true);
    assert.equal(info.sizeMax, 65536);
    assert.equal(info.segMax, 126);
    assert.equal(info.maxTransfer, 128 * 1024);
    assert.equal(info.queueSize, 256);
    assert.equal((info.features >> 32n) & 1n, version === 2 ? 1n : 0n, 'VERSION_1 only on modern');
    assert.equal(mmio.status & STATUS.DRIVER_OK, STATUS.DRIVER_OK);
    assert.deepEqual(mmio.violations, []);
  });

  test(`${name}: reads, writes, flush and GET_ID round-trip`, async () => {
    const disk = pattern(1024 * 1024, 11);
    const ref = disk.slice();
    const { driver, mmio, blk } = rig(memoryBackend(disk), { version, driver: { mode: 'rw' }, device: { id: 'serial-0123456789abcdefXYZ' } });
    assert.deepEqual(await driver.read(sectors(0), sectors(1)), ref.subarray(0, 512));
    assert.deepEqual(await driver.read(sectors(100), sectors(256)), ref.subarray(100 * 512, 356 * 512));
    assert.deepEqual(await driver.read(sectors(2047), sectors(1)), ref.subarray(2047 * 512));
    const data = pattern(7 * 512, 99);
    await driver.write(sectors(3), data);
    ref.set(data, 3 * 512);
    assert.deepEqual(disk, ref);
    await driver.flush();
    assert.deepEqual(await driver.read(sectors(0), sectors(16)), ref.subarray(0, 16 * 512));
    assert.equal(await driver.getId(), 'serial-0123456789abc');
    assert.deepEqual(await driver.readSplit(sectors(5), sectors(1000)), ref.subarray(5 * 512, 1005 * 512));
    await mmio.idle();
    assert.equal(blk.stats.failedRequests, 0);
    assert.equal(blk.stats.rejectedChains, 0);
    assert.deepEqual(mmio.violations, []);
  });

  test(`${name}: typed errors for bad ranges, sizes and read-only`, async () => {
    const disk = pattern(64 * 1024, 3);
    const { driver } = rig(memoryBackend(disk), { version, driver: { mode: 'ro' } });
    await assert.rejects(driver.read(sectors(128), sectors(1)), code('OUT_OF_BOUNDS'));
    await assert.rejects(driver.read(sectors(127), sectors(2)), code('OUT_OF_BOUNDS'));
    await assert.rejects(driver.read(sectors(-1), sectors(1)), code('OUT_OF_BOUNDS'));
    await assert.rejects(driver.write(sectors(0), new Uint8Array(512)), code('VIRTIO_READ_ONLY'));
    await assert.rejects(driver.flush(), code('VIRTIO_UNSUPP'));
    const big = rig(memoryBackend(new Uint8Array(1024 * 1024)), { version });
    await assert.rejects(big.driver.read(sectors(0), sectors(257)), code('SIZE_OUT_OF_RANGE'));
    assert.equal((await big.driver.readSplit(sectors(0), sectors(2048))).length, 1024 * 1024);
  });

  test(`${name}: a read-only device refuses rw mode and sets RO`, async () => {
    const disk = pattern(64 * 1024, 5);
    assert.throws(() => rig(memoryBackend(disk), { version, device: { readOnly: true }, driver: { mode: 'rw' } }), code('VIRTIO_READ_ONLY'));
    const { driver } = rig(memoryBackend(disk), { version, device: { readOnly: true } });
    assert.equal(driver.info().readOnly, true);
    assert.equal(driver.info().flush, false);
    await assert.rejects(driver.write(sectors(0), new Uint8Array(512)), code('VIRTIO_READ_ONLY'));
  });

  test(`${name}: backend failures come back as VIRTIO_IOERR and the driver keeps working`, async () => {
    const disk = pattern(64 * 1024, 5);
    const backend = memoryBackend(disk);
    const failing = {
      ...backend,
      async readInto(offset: number, target: Uint8Array) {
        if (offset === 4096) throw new Error('injected media error');
        return backend.readInto(offset, target);
      },
    };
    const { driver, blk } = rig(failing, { version });
    await assert.rejects(driver.read(sectors(8), sectors(1)), code('VIRTIO_IOERR'));
    assert.deepEqual(await driver.read(sectors(9), sectors(1)), disk.subarray(9 * 512, 10 * 512));
    assert.match(blk.stats.log.join('\n'), /injected media error/);
  });
}

test('modern: device refusing FEATURES_OK makes the driver set FAILED with a clear error', () => {
  assert.throws(
    () => rig(memoryBackend(new Uint8Array(4096)), { device: { refuseFeatures: () => true } }),
    (e: unknown) => e instanceof VmimgError && e.code === 'VIRTIO_INIT_FAILED' && /FEATURES_OK/.test(e.message),
  );
});
