/**
 * Property test (fast-check): random device/driver configurations and random request sequences
 * (reads, writes, flushes, GET_ID, concurrent read batches, out-of-range and oversized requests)
 * through driver + device model against a reference in-memory disk.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { memoryBackend } from '../../src/virtio/device/backend.js';
import { sectors } from '../../src/util/units.js';
import { VmimgError } from '../../src/util/errors.js';
import { pattern, rig } from './helpers.js';

type Op =
  | { op: 'read'; lba: number; count: number }
  | { op: 'write'; lba: number; count: number; seed: number }
  | { op: 'flush' }
  | { op: 'id' }
  | { op: 'batch'; reads: { lba: number; count: number }[] };

const lbaArb = fc.integer({ min: -2, max: 700 });
const countArb = fc.oneof(fc.integer({ min: 0, max: 16 }), fc.integer({ min: 0, max: 300 }));
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('read' as const), lba: lbaArb, count: countArb }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('write' as const), lba: lbaArb, count: countArb, seed: fc.integer({ min: 1, max: 1 << 30 }) }) },
  { weight: 1, arbitrary: fc.constant({ op: 'flush' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'id' as const }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('batch' as const), reads: fc.array(fc.record({ lba: lbaArb, count: fc.integer({ min: 1, max: 64 }) }), { minLength: 1, maxLength: 12 }) }) },
);

const configArb = fc.record({
  version: fc.constantFrom(1 as const, 2 as const),
  queueSize: fc.constantFrom(4, 8, 64, 256),
  eventIdx: fc.boolean(),
  sizeMax: fc.constantFrom(0, 512, 4096, 65536),
  segMax: fc.constantFrom(0, 1, 3, 126),
  maxInFlight: fc.integer({ min: 1, max: 8 }),
  diskSectors: fc.integer({ min: 1, max: 600 }),
});

async function outcome(p: Promise<Uint8Array | string | void>): Promise<string | Uint8Array> {
  try {
    const v = await p;
    return v instanceof Uint8Array ? v : typeof v === 'string' ? `id:${v}` : 'ok';
  } catch (e) {
    if (e instanceof VmimgError) return `error:${e.code}`;
    throw e;
  }
}

test('random request sequences through driver + device match a reference disk', async () => {
  await fc.assert(
    fc.asyncProperty(configArb, fc.array(opArb, { maxLength: 25 }), async (cfg, ops) => {
      const disk = pattern(cfg.diskSectors * 512, cfg.diskSectors);
      const model = disk.slice();
      const { driver, blk } = rig(memoryBackend(disk), {
        version: cfg.version,
        device: { eventIdx: cfg.eventIdx, sizeMax: cfg.sizeMax, segMax: cfg.segMax, id: 'prop' },
        driver: { mode: 'rw', queueSize: cfg.queueSize, maxInFlight: cfg.maxInFlight },
      });
      const max = driver.info().maxTransfer;
      const expectRange = (lba: number, count: number): string | undefined =>
        lba < 0 || lba + count > cfg.diskSectors ? 'error:OUT_OF_BOUNDS' : count * 512 > max ? 'error:SIZE_OUT_OF_RANGE' : undefined;
      const expectRead = (lba: number, count: number): string | Uint8Array => expectRange(lba, count) ?? model.slice(lba * 512, (lba + count) * 512);
      for (const o of ops) {
        switch (o.op) {
          case 'read':
            assert.deepEqual(await outcome(driver.read(sectors(o.lba), sectors(o.count))), expectRead(o.lba, o.count));
            break;
          case 'write': {
            const data = pattern(o.count * 512, o.seed);
            const want = expectRange(o.lba, o.count) ?? 'ok';
            assert.equal(await outcome(driver.write(sectors(o.lba), data)), want);
            if (want === 'ok') model.set(data, o.lba * 512);
            break;
          }
          case 'flush':
            assert.equal(await outcome(driver.flush()), 'ok');
            break;
          case 'id':
            assert.equal(await outcome(driver.getId()), 'id:prop');
            break;
          case 'batch': {
            const got = await Promise.all(o.reads.map((r) => outcome(driver.read(sectors(r.lba), sectors(r.count)))));
            assert.deepEqual(got, o.reads.map((r) => expectRead(r.lba, r.count)));
            break;
          }
        }
      }
      assert.deepEqual(disk, model);
      assert.equal(blk.stats.failedRequests + blk.stats.rejectedChains, 0, blk.stats.log.join('\n'));
    }),
    { numRuns: 150, seed: 0x5eed },
  );
});
