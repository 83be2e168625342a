/**
 * `npm run fuzz [-- --seed N --per-seed N --seconds S]`: seeded mutation fuzzing of every format
 * reader. Fails (exit 1) on any non-VmimgError escape, any case over 2 s, or heap growth past
 * 512 MiB.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fuzz } from './fuzz.js';
import { buildSeeds } from './seeds.js';

const { values } = parseArgs({
  options: { seed: { type: 'string', default: '1' }, 'per-seed': { type: 'string', default: '500' }, seconds: { type: 'string', default: '300' } },
});
const dir = mkdtempSync(join(tmpdir(), 'vmimg-fuzz-'));
try {
  const seeds = buildSeeds(dir);
  const stats = await fuzz(seeds, {
    seed: Number(values.seed),
    perSeed: Number(values['per-seed']),
    seconds: Number(values.seconds),
    slowMs: 2000,
    onProgress: (l) => console.log(l),
  });
  console.log(JSON.stringify({ ...stats, bugs: stats.bugs.length, slow: stats.slow.length }, null, 2));
  for (const b of stats.bugs.slice(0, 10)) console.log(`BUG ${b.seed} case ${b.case}:\n${b.detail}\n`);
  for (const s of stats.slow.slice(0, 10)) console.log(`SLOW ${s.seed} case ${s.case}: ${s.ms} ms`);
  process.exitCode = stats.bugs.length > 0 || stats.slow.length > 0 || stats.maxHeapGrowthMiB > 512 ? 1 : 0;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
