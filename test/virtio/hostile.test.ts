/**
 * Hostile drivers against the device model (loops, out-of-range addresses, wrong flags,
 * over-long chains, bogus ring indices) and hostile devices against the driver (bad used ids
 * and lengths, absurd config). Every case ends — no hang, no crash — with the offending chain
 * rejected or the queue put in DEVICE_NEEDS_RESET, and the next good request still served.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { memoryBackend } from '../../src/virtio/device/backend.js';
import { BLK_S, INT, REG, STATUS } from '../../src/virtio/constants.js';
import { GuestMemory } from '../../src/virtio/guest-memory.js';
import { VirtioBlkDevice } from '../../src/virtio/device/blk-device.js';
import { VirtioMmioDevice, type DeviceLogic } from '../../src/virtio/device/mmio.js';
import type { DeviceQueue } from '../../src/virtio/device/queue.js';
import { VirtioBlkDriver } from '../../src/virtio/driver/blk.js';
import { sectors } from '../../src/util/units.js';
import { VmimgError } from '../../src/util/errors.js';
import { BLK_T, DESC_F, MEM_BASE, MEM_SIZE, header, pattern, publish, rawRig, setDesc, usedElem, usedIdx, type RawRig } from './helpers.js';

const DISK = pattern(64 * 1024, 1);
const W = DESC_F.WRITE;
const N = DESC_F.NEXT;

/** Submits a good 1-sector read at sector 3 using descriptors base..base+2; checks the data. */
async function goodRead(r: RawRig, base: number): Promise<void> {
  const h = header(r, BLK_T.IN, 3);
  const data = r.scratch.alloc(513, 16);
  r.mem.setU8(data + 512, 0xff);
  setDesc(r, base, h, 16, N, base + 1);
  setDesc(r, base + 1, data, 512, W | N, base + 2);
  setDesc(r, base + 2, data + 512, 1, W);
  const before = usedIdx(r);
  publish(r, base);
  await r.mmio.idle();
  assert.equal(usedIdx(r), (before + 1) & 0xffff);
  assert.equal(r.mem.u8(data + 512), BLK_S.OK);
  assert.deepEqual(r.mem.read(data, 512), DISK.subarray(3 * 512, 4 * 512));
}

/** Publishes the chain at `head`, expects it completed with used.len `len` and the device still healthy. */
async function expectCompleted(r: RawRig, head: number, len: number, what: string): Promise<void> {
  const n = usedIdx(r);
  publish(r, head);
  await r.mmio.idle();
  assert.equal(usedIdx(r), (n + 1) & 0xffff, `${what}: completed`);
  assert.deepEqual(usedElem(r, n), { id: head, len }, what);
  assert.equal(r.mmio.status & STATUS.DEVICE_NEEDS_RESET, 0, `${what}: device still healthy`);
}

for (const version of [1, 2] as const) {
  const v = version === 1 ? 'legacy' : 'modern';

  test(`${v}: malformed chains are rejected with used.len 0 and the queue goes on`, async () => {
    const r = rawRig(memoryBackend(DISK.slice()), { version, queueSize: 8 });
    const h = header(r, BLK_T.IN, 0);
    const data = r.scratch.alloc(1024, 16);
    // A loop 0 → 1 → 0.
    setDesc(r, 0, h, 16, N, 1);
    setDesc(r, 1, data, 512, W | N, 0);
    await expectCompleted(r, 0, 0, 'loop');
    // A self-loop.
    setDesc(r, 0, data, 1, W | N, 0);
    await expectCompleted(r, 0, 0, 'self loop');
    // next outside the table.
    setDesc(r, 0, h, 16, N, 9);
    await expectCompleted(r, 0, 0, 'next out of range');
    // Buffers outside guest memory: below the base, past the end, straddling the end, 2^63.
    for (const [addr, len] of [
      [0, 16],
      [MEM_BASE + MEM_SIZE, 1],
      [MEM_BASE + MEM_SIZE - 8, 16],
      [1n << 63n, 16],
      [MEM_BASE, 0xffffffff],
    ] as const) {
      setDesc(r, 0, h, 16, N, 1);
      setDesc(r, 1, addr, len, W);
      await expectCompleted(r, 0, 0, `buffer ${len} at ${addr}`);
    }
    // A readable descriptor after a writable one.
    setDesc(r, 0, data, 513, W | N, 1);
    setDesc(r, 1, h, 16, N, 2);
    setDesc(r, 2, data + 600, 1, W);
    await expectCompleted(r, 0, 0, 'readable after writable');
    // INDIRECT was never offered.
    setDesc(r, 0, h, 16, DESC_F.INDIRECT);
    await expectCompleted(r, 0, 0, 'indirect');
    // No writable byte for the status.
    setDesc(r, 0, h, 16, 0);
    await expectCompleted(r, 0, 0, 'no status');
    // Too long: all 8 descriptors chained, the last pointing past the table.
    for (let i = 0; i < 8; i++) setDesc(r, i, data, 1, W | N, i + 1);
    await expectCompleted(r, 0, 0, 'longer than the queue');
    assert.equal(r.blk.stats.rejectedChains, 12);
    await goodRead(r, 3);
  });

  test(`${v}: wrong flags and layouts get IOERR or UNSUPP in the status byte`, async () => {
    const r = rawRig(memoryBackend(DISK.slice()), { version, device: { readOnly: true } });
    const buf = r.scratch.alloc(4096, 16);
    const st = buf + 4000;
    const cases: [string, () => void, number, number][] = [
      ['header marked device-writable', () => {
        setDesc(r, 0, header(r, BLK_T.IN), 16, W | N, 1);
        setDesc(r, 1, st, 1, W);
      }, BLK_S.IOERR, 1],
      ['short header', () => {
        setDesc(r, 0, header(r, BLK_T.IN), 8, N, 1);
        setDesc(r, 1, st, 1, W);
      }, BLK_S.IOERR, 1],
      ['IN data not whole sectors', () => {
        setDesc(r, 0, header(r, BLK_T.IN), 16, N, 1);
        setDesc(r, 1, buf, 100, W | N, 2);
        setDesc(r, 2, st, 1, W);
      }, BLK_S.IOERR, 1],
      ['IN with device-readable data', () => {
        setDesc(r, 0, header(r, BLK_T.IN), 16, N, 1);
        setDesc(r, 1, buf, 512, N, 2);
        setDesc(r, 2, st, 1, W);
      }, BLK_S.IOERR, 1],
      ['IN past capacity', () => {
        setDesc(r, 0, header(r, BLK_T.IN, 127), 16, N, 1);
        setDesc(r, 1, buf, 1024, W | N, 2);
        setDesc(r, 2, st, 1, W);
      }, BLK_S.IOERR, 1],
      ['IN at sector 2^64-1', () => {
        setDesc(r, 0, header(r, BLK_T.IN, (1n << 64n) - 1n), 16, N, 1);
        setDesc(r, 1, buf, 512, W | N, 2);
        setDesc(r, 2, st, 1, W);
      }, BLK_S.IOERR, 1],
      ['OUT to a read-only device', () => {
        setDesc(r, 0, header(r, BLK_T.OUT), 16, N, 1);
        setDesc(r, 1, buf, 512, N, 2);
        setDesc(r, 2, st, 1, W);
      }, BLK_S.IOERR, 1],
      ['FLUSH not negotiated', () => {
        setDesc(r, 0, header(r, BLK_T.FLUSH), 16, N, 1);
        setDesc(r, 1, st, 1, W);
      }, BLK_S.UNSUPP, 1],
      ['GET_ID with a short buffer', () => {
        setDesc(r, 0, header(r, BLK_T.GET_ID), 16, N, 1);
        setDesc(r, 1, buf, 10, W | N, 2);
        setDesc(r, 2, st, 1, W);
      }, BLK_S.IOERR, 1],
      ['unknown type', () => {
        setDesc(r, 0, header(r, 0x1234), 16, N, 1);
        setDesc(r, 1, st, 1, W);
      }, BLK_S.UNSUPP, 1],
    ];
    for (const [what, build, status, len] of cases) {
      r.mem.setU8(st, 0xff);
      build();
      await expectCompleted(r, 0, len, what);
      assert.equal(r.mem.u8(st), status, what);
    }
    // The disk was never written.
    assert.equal(r.blk.stats.failedRequests, cases.length);
    await goodRead(r, 4);
  });

  test(`${v}: any framing works: header and data in one descriptor, data and status in one`, async () => {
    const disk = DISK.slice();
    const r = rawRig(memoryBackend(disk), { version });
    const buf = r.scratch.alloc(16 + 1024 + 1, 16);
    r.mem.setU32(buf, BLK_T.OUT);
    r.mem.setU64(buf + 8, 10n);
    r.mem.write(buf + 16, pattern(1024, 5));
    setDesc(r, 0, buf, 16 + 1024, N, 1);
    setDesc(r, 1, buf + 16 + 1024, 1, W);
    await expectCompleted(r, 0, 1, 'OUT header+data');
    assert.deepEqual(disk.subarray(10 * 512, 12 * 512), pattern(1024, 5));
    r.mem.setU32(buf, BLK_T.IN);
    r.mem.fill(buf + 16, 1025, 0xee);
    setDesc(r, 0, buf, 7, N, 1); // header split 7 + 9
    setDesc(r, 1, buf + 7, 9, N, 2);
    setDesc(r, 2, buf + 16, 1025, W);
    await expectCompleted(r, 0, 1025, 'IN data+status');
    assert.deepEqual(r.mem.read(buf + 16, 1024), pattern(1024, 5));
    assert.equal(r.mem.u8(buf + 16 + 1024), BLK_S.OK);
  });

  test(`${v}: bogus avail index or head puts the device in DEVICE_NEEDS_RESET, not a loop`, async () => {
    for (const bad of ['idx', 'head'] as const) {
      const r = rawRig(memoryBackend(DISK.slice()), { version, queueSize: 8 });
      if (bad === 'idx') r.mem.setU16(r.q.addrs.avail + 2, 9 + 0x8000);
      else {
        r.mem.setU16(r.q.addrs.avail + 4, 8);
        r.mem.setU16(r.q.addrs.avail + 2, 1);
      }
      r.mmio.write32(REG.QUEUE_NOTIFY, 0);
      await r.mmio.idle();
      assert.ok(r.mmio.status & STATUS.DEVICE_NEEDS_RESET, bad);
      assert.ok(r.mmio.read32(REG.INTERRUPT_STATUS) & INT.CONFIG_CHANGE, bad);
      assert.equal(usedIdx(r), 0);
      // Further notifications are ignored until reset.
      r.mmio.write32(REG.QUEUE_NOTIFY, 0);
      await r.mmio.idle();
      assert.equal(usedIdx(r), 0);
    }
  });

  test(`${v}: status transitions outside the table are refused`, () => {
    const mem = new GuestMemory(MEM_SIZE, MEM_BASE);
    const dev = new VirtioMmioDevice({ memory: mem, logic: new VirtioBlkDevice(memoryBackend(DISK.slice())), version });
    dev.write32(REG.STATUS, STATUS.DRIVER_OK);
    assert.equal(dev.read32(REG.STATUS), 0);
    dev.write32(REG.STATUS, STATUS.ACKNOWLEDGE);
    dev.write32(REG.STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.DRIVER_OK | (version === 2 ? STATUS.FEATURES_OK : 0));
    assert.equal(dev.read32(REG.STATUS), STATUS.ACKNOWLEDGE, 'skipping DRIVER');
    dev.write32(REG.STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER);
    // No queue set up: DRIVER_OK activates nothing and asks for a reset.
    if (version === 2) {
      dev.write32(REG.DRIVER_FEATURES_SEL, 1);
      dev.write32(REG.DRIVER_FEATURES, 1); // VERSION_1
      dev.write32(REG.STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK);
      assert.equal(dev.read32(REG.STATUS) & STATUS.FEATURES_OK, STATUS.FEATURES_OK);
      dev.write32(REG.DRIVER_FEATURES, 0); // ignored after FEATURES_OK
    }
    dev.write32(REG.QUEUE_NOTIFY, 0); // before DRIVER_OK: ignored
    dev.write32(REG.STATUS, dev.read32(REG.STATUS) | STATUS.DRIVER_OK);
    assert.ok(dev.read32(REG.STATUS) & STATUS.DEVICE_NEEDS_RESET);
    assert.ok(dev.violations.length >= 4, dev.violations.join('\n'));
    dev.write32(REG.STATUS, 0);
    assert.equal(dev.read32(REG.STATUS), 0);
  });

  test(`${v}: a misaligned or out-of-memory ring fails bring-up`, () => {
    const mem = new GuestMemory(MEM_SIZE, MEM_BASE);
    const dev = new VirtioMmioDevice({ memory: mem, logic: new VirtioBlkDevice(memoryBackend(DISK.slice()), { queueSizeMax: 256 }), version });
    // A region too close to the end of memory for the rings: the allocator refuses it first.
    assert.throws(
      () => VirtioBlkDriver.open({ transport: dev, memory: mem, region: { base: MEM_BASE + MEM_SIZE - 4096, size: 4096 } }),
      (e: unknown) => e instanceof VmimgError && e.code === 'VIRTIO_INIT_FAILED',
    );
    assert.ok(dev.status & STATUS.FAILED);
    // By hand: rings the device cannot use make DRIVER_OK end in DEVICE_NEEDS_RESET.
    const bad = new VirtioMmioDevice({ memory: mem, logic: new VirtioBlkDevice(memoryBackend(DISK.slice())), version });
    bad.write32(REG.STATUS, STATUS.ACKNOWLEDGE);
    bad.write32(REG.STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER);
    let s = STATUS.ACKNOWLEDGE | STATUS.DRIVER;
    if (version === 2) {
      bad.write32(REG.DRIVER_FEATURES_SEL, 1);
      bad.write32(REG.DRIVER_FEATURES, 1);
      s |= STATUS.FEATURES_OK;
      bad.write32(REG.STATUS, s);
      bad.write32(REG.QUEUE_SIZE, 8);
      bad.write32(0x080, MEM_BASE + 8); // descriptor table not 16-aligned
      bad.write32(0x090, MEM_BASE + 4096);
      bad.write32(0x0a0, MEM_BASE + 8192);
      bad.write32(0x044, 1);
    } else {
      bad.write32(0x028, 4096);
      bad.write32(REG.QUEUE_SIZE, 8);
      bad.write32(0x040, (MEM_BASE + MEM_SIZE) / 4096); // the page after guest memory
    }
    bad.write32(REG.STATUS, s | STATUS.DRIVER_OK);
    assert.ok(bad.status & STATUS.DEVICE_NEEDS_RESET);
    assert.match(bad.violations.join('\n'), version === 2 ? /not 16-byte aligned/ : /outside guest memory/);
  });
}

/** Wraps the blk logic and tampers with the used ring after each batch. */
function tamperingDevice(tamper: (q: DeviceQueue, mem: GuestMemory) => void): { mem: GuestMemory; dev: VirtioMmioDevice } {
  const mem = new GuestMemory(MEM_SIZE, MEM_BASE);
  const blk = new VirtioBlkDevice(memoryBackend(DISK.slice()));
  const logic: DeviceLogic = {
    deviceId: blk.deviceId,
    queueSizeMax: blk.queueSizeMax,
    offeredFeatures: () => blk.offeredFeatures(),
    config: () => blk.config(),
    activate: (f) => blk.activate(f),
    async process(q, signal) {
      await blk.process(q, () => undefined);
      tamper(q, mem);
      signal();
    },
  };
  return { mem, dev: new VirtioMmioDevice({ memory: mem, logic }) };
}

test('hostile device: unknown used id, oversized len, runaway used idx are VIRTIO_DEVICE_ERROR', async () => {
  const tampers: [string, (q: DeviceQueue, mem: GuestMemory) => void][] = [
    ['unknown id', (q, mem) => mem.setU32(q.addrs.used + 4 + 8 * ((q.nextUsed - 1) % q.size), 77)],
    ['len too big', (q, mem) => mem.setU32(q.addrs.used + 8 + 8 * ((q.nextUsed - 1) % q.size), 1 << 20)],
    ['used idx runaway', (q, mem) => mem.setU16(q.addrs.used + 2, q.nextUsed + 100)],
  ];
  for (const [what, tamper] of tampers) {
    const { mem, dev } = tamperingDevice(tamper);
    const driver = VirtioBlkDriver.open({ transport: dev, memory: mem, region: { base: MEM_BASE, size: MEM_SIZE } });
    await assert.rejects(driver.read(sectors(0), sectors(1)), (e: unknown) => e instanceof VmimgError && e.code === 'VIRTIO_DEVICE_ERROR', what);
    // The driver stays refused afterwards instead of trusting the ring again.
    await assert.rejects(driver.read(sectors(0), sectors(1)), (e: unknown) => e instanceof VmimgError && e.code === 'VIRTIO_DEVICE_ERROR', what);
  }
});

test('hostile device: absurd config values fail bring-up with FAILED set', () => {
  for (const [what, patch] of [
    ['capacity 2^63', (c: DataView) => c.setBigUint64(0, 1n << 63n, true)],
    ['blk_size 3', (c: DataView) => c.setUint32(0x14, 3, true)],
    ['seg_max 0', (c: DataView) => c.setUint32(0x0c, 0, true)],
  ] as const) {
    const mem = new GuestMemory(MEM_SIZE, MEM_BASE);
    const blk = new VirtioBlkDevice(memoryBackend(DISK.slice()));
    patch(new DataView(blk.config().buffer));
    const dev = new VirtioMmioDevice({ memory: mem, logic: blk });
    assert.throws(() => VirtioBlkDriver.open({ transport: dev, memory: mem, region: { base: MEM_BASE, size: MEM_SIZE } }), (e: unknown) => e instanceof VmimgError && e.code === 'VIRTIO_INIT_FAILED', what);
    assert.ok(dev.status & STATUS.FAILED, what);
  }
});

test('driver refuses a wrong magic, an unknown version and a placeholder device id', () => {
  const mem = new GuestMemory(MEM_SIZE, MEM_BASE);
  const real = new VirtioMmioDevice({ memory: mem, logic: new VirtioBlkDevice(memoryBackend(DISK.slice())) });
  for (const [reg, value, re] of [
    [REG.MAGIC, 0x12345678, /magic/],
    [REG.VERSION, 3, /version 3/],
    [REG.DEVICE_ID, 0, /device id is 0/],
  ] as const) {
    const t = { read32: (o: number) => (o === reg ? value : real.read32(o)), write32: (o: number, v: number) => real.write32(o, v), waitForInterrupt: () => real.waitForInterrupt() };
    assert.throws(() => VirtioBlkDriver.open({ transport: t, memory: mem, region: { base: MEM_BASE, size: MEM_SIZE } }), (e: unknown) => e instanceof VmimgError && e.code === 'VIRTIO_INIT_FAILED' && re.test(e.message));
  }
});

test('a device that enters DEVICE_NEEDS_RESET fails the waiting request with VIRTIO_DEVICE_ERROR', async () => {
  const disk = DISK.slice();
  const inner = memoryBackend(disk);
  let corrupt: (() => void) | undefined;
  const backend = {
    ...inner,
    async readInto(offset: number, target: Uint8Array) {
      corrupt?.();
      corrupt = undefined;
      return inner.readInto(offset, target);
    },
  };
  const mem = new GuestMemory(MEM_SIZE, MEM_BASE);
  const dev = new VirtioMmioDevice({ memory: mem, logic: new VirtioBlkDevice(backend) });
  const driver = VirtioBlkDriver.open({ transport: dev, memory: mem, region: { base: MEM_BASE, size: MEM_SIZE } });
  // While serving the first read, a hostile guest thread bumps avail.idx far ahead.
  corrupt = () => mem.setU16(dev.queue!.addrs.avail + 2, 5000);
  assert.deepEqual(await driver.read(sectors(1), sectors(1)), disk.subarray(512, 1024));
  await dev.idle();
  assert.ok(dev.status & STATUS.DEVICE_NEEDS_RESET);
  await assert.rejects(driver.read(sectors(2), sectors(1)), (e: unknown) => e instanceof VmimgError && e.code === 'VIRTIO_DEVICE_ERROR' && /needs a reset/.test(e.message));
});
