/** classify(): map entries → granule-aligned convert runs (src/ops/convert/runs.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classify, type Run } from '../../src/ops/convert/runs.js';
import type { MapEntry } from '../../src/ops/map.js';

function entry(start: number, length: number, f: Partial<MapEntry>): MapEntry {
  return { start, length, depth: 0, present: true, zero: false, data: true, ...f };
}

async function runs(entries: MapEntry[], end: number, granule: number, backing = false, fullAllocation = false): Promise<Run[]> {
  async function* gen(): AsyncGenerator<MapEntry> {
    yield* entries;
  }
  const out: Run[] = [];
  for await (const r of classify(gen(), 0, end, granule, { backing, fullAllocation })) out.push(r);
  return out;
}

test('known zeros are never read, even when the format also reports them as data', async () => {
  const r = await runs([entry(0, 4096, {}), entry(4096, 8192, { zero: true, data: true }), entry(12288, 4096, { zero: true, data: false, present: false })], 16384, 4096);
  assert.deepEqual(r, [
    { kind: 'data', start: 0, length: 4096 },
    { kind: 'zero', start: 4096, length: 12288 },
  ]);
});

test('a granule whose parts disagree is data; -S 0 turns zeros into data', async () => {
  const mixed = [entry(0, 1024, { zero: true, data: false }), entry(1024, 3072, {}), entry(4096, 4096, { zero: true, data: false })];
  assert.deepEqual(await runs(mixed, 8192, 4096), [
    { kind: 'data', start: 0, length: 4096 },
    { kind: 'zero', start: 4096, length: 4096 },
  ]);
  assert.deepEqual(await runs(mixed, 8192, 4096, false, true), [{ kind: 'data', start: 0, length: 8192 }]);
});

test('with a new backing file: top zeros and top holes without a backing file below mask, lower layers are skipped', async () => {
  const r = await runs(
    [entry(0, 4096, { zero: true, data: true }), entry(4096, 4096, { depth: 1 }), entry(8192, 4096, { present: false, zero: true, data: false }), entry(12288, 1000, {})],
    13288,
    4096,
    true,
  );
  assert.deepEqual(r, [
    { kind: 'mask', start: 0, length: 4096 },
    { kind: 'skip', start: 4096, length: 4096 },
    // Unallocated at depth 0: the source has no backing file there, QEMU's block status says ZERO.
    { kind: 'mask', start: 8192, length: 4096 },
    { kind: 'data', start: 12288, length: 1000 },
  ]);
});

test('yieldFrom: a long run is handed on before the entries after it exist', async () => {
  const MiB = 1 << 20;
  let release!: () => void;
  const later = new Promise<void>((r) => (release = r));
  async function* gen(): AsyncGenerator<MapEntry> {
    yield entry(0, 4 * MiB, {});
    yield entry(4 * MiB, 4 * MiB, {});
    await later; // the rest of the map is not walked until the consumer has the first run
    yield entry(8 * MiB, 4 * MiB, {});
    yield entry(12 * MiB, 4 * MiB, { zero: true, data: false });
  }
  const out: Run[] = [];
  for await (const r of classify(gen(), 0, 16 * MiB, 65536, { backing: false, fullAllocation: false, yieldFrom: 8 * MiB })) {
    out.push(r);
    if (out.length === 1) release();
  }
  assert.deepEqual(out, [
    { kind: 'data', start: 0, length: 8 * MiB },
    { kind: 'data', start: 8 * MiB, length: 4 * MiB },
    { kind: 'zero', start: 12 * MiB, length: 4 * MiB },
  ]);
});
