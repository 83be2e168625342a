/**
 * mapChain's `split` (src/ops/map.ts): convert and compare get entries window by window, so they
 * start copying before the whole map is walked. The entries end at the window boundaries
 * (16, 48, 112, 240 MiB ... from the start) and, merged again, equal the unsplit map, which is
 * what `map` prints and qemu-img map agrees with.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { openChain } from '../../src/chain/open.js';
import { defaultPolicy } from '../../src/chain/policy.js';
import { mapChain, type MapEntry } from '../../src/ops/map.js';
import { oracle, qemuImg, run, tempDir } from '../helpers/oracle.js';

const MiB = 1 << 20;

async function collect(it: AsyncIterable<MapEntry>): Promise<MapEntry[]> {
  const out: MapEntry[] = [];
  for await (const e of it) out.push(e);
  return out;
}

/** Adjacent entries of the same kind (and contiguous host bytes) as one, as mapChain merges them. */
function merged(entries: MapEntry[]): MapEntry[] {
  const out: MapEntry[] = [];
  for (const e of entries) {
    const p = out[out.length - 1];
    const same = p && p.depth === e.depth && p.present === e.present && p.zero === e.zero && p.data === e.data;
    if (same && (p.offset === undefined ? e.offset === undefined : e.offset === p.offset + p.length && p.filename === e.filename)) p.length += e.length;
    else out.push({ ...e });
  }
  return out;
}

test('split entries end at window boundaries and merge back into the map', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  const path = join(dir, 'x.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', path, '300M']).status, 0);
  // One data run across the first three window boundaries (16, 48 and 112 MiB), a zero run, data again.
  const io = run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 1M 150M', '-c', 'write -z 160M 8M', '-c', 'write -P 0x33 200M 1M', path]);
  assert.equal(io.status, 0, io.stderr);
  const chain = await openChain(path, { policy: defaultPolicy(path) });
  try {
    const whole = await collect(mapChain(chain, 0, chain.top.virtualSize));
    const split = await collect(mapChain(chain, 0, chain.top.virtualSize, { split: true }));
    assert.deepEqual(merged(split), whole);
    const ends = split.map((e) => e.start + e.length);
    for (const boundary of [16 * MiB, 48 * MiB, 112 * MiB, 240 * MiB]) assert.ok(ends.includes(boundary), `an entry ends at ${boundary}`);
    // The data run from 1 MiB to 151 MiB arrives in four pieces.
    assert.deepEqual(
      split.filter((e) => e.data && e.start < 151 * MiB).map((e) => [e.start / MiB, e.length / MiB]),
      [
        [1, 15],
        [16, 32],
        [48, 64],
        [112, 39],
      ],
    );
    // A range that does not start at 0: windows count from its start.
    const part = await collect(mapChain(chain, 8 * MiB, 40 * MiB, { split: true }));
    assert.deepEqual(
      part.map((e) => [e.start / MiB, e.length / MiB]),
      [
        [8, 16],
        [24, 24],
      ],
    );
  } finally {
    await chain.close();
  }
});
