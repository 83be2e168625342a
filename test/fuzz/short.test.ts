import assert from 'node:assert/strict';
import { test } from 'node:test';
import { oracle, tempDir } from '../helpers/oracle.js';
import { fuzz } from './fuzz.js';
import { buildSeeds } from './seeds.js';

test('short seeded fuzz run: corrupt images of every format only ever raise VmimgError', async (t) => {
  const dir = tempDir(t);
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const seeds = buildSeeds(dir);
  const stats = await fuzz(seeds, { seed: 20261122, perSeed: 40, seconds: 120, slowMs: 2000 });
  assert.deepEqual(stats.bugs.map((b) => `${b.seed}#${b.case}: ${b.detail.split('\n')[0]}`), []);
  assert.ok(stats.cases > 0);
  // Mutations must not all be rejected at the header: some corrupt images still open and get read.
  assert.ok(stats.accepted > 0, `accepted ${stats.accepted} of ${stats.cases}`);
});
