/**
 * The fuzz loop shared by `npm run fuzz` and the short seeded run in `npm test`.
 */
import { mutate, Rng, runCase } from './harness.js';
import type { Seed } from './seeds.js';

export interface FuzzStats {
  cases: number;
  accepted: number;
  rejected: number;
  bugs: Array<{ seed: string; case: number; detail: string }>;
  slow: Array<{ seed: string; case: number; ms: number }>;
  maxHeapGrowthMiB: number;
}

export interface FuzzOptions {
  seed: number;
  /** Cases per seed image. */
  perSeed: number;
  /** Stop after this many seconds overall. */
  seconds: number;
  /** A case slower than this is reported in `slow`. */
  slowMs: number;
  onProgress?: (line: string) => void;
}

export async function fuzz(seeds: Seed[], options: FuzzOptions): Promise<FuzzStats> {
  const stats: FuzzStats = { cases: 0, accepted: 0, rejected: 0, bugs: [], slow: [], maxHeapGrowthMiB: 0 };
  const deadline = performance.now() + options.seconds * 1000;
  const heapStart = process.memoryUsage().heapUsed;
  for (const [si, seed] of seeds.entries()) {
    const rng = new Rng(options.seed * 7919 + si);
    // The unmutated seed first: it must be accepted.
    const base = await runCase(seed.bytes, seed.format);
    if (base.bug) stats.bugs.push({ seed: seed.name, case: -1, detail: base.bug });
    for (let i = 0; i < options.perSeed && performance.now() < deadline; i++) {
      const r = await runCase(mutate(seed.bytes, rng), rng.below(2) === 0 ? seed.format : undefined);
      stats.cases++;
      stats[r.outcome]++;
      if (r.bug) stats.bugs.push({ seed: seed.name, case: i, detail: r.bug });
      if (r.ms > options.slowMs) stats.slow.push({ seed: seed.name, case: i, ms: Math.round(r.ms) });
      const growth = (process.memoryUsage().heapUsed - heapStart) / (1 << 20);
      stats.maxHeapGrowthMiB = Math.max(stats.maxHeapGrowthMiB, Math.round(growth));
    }
    options.onProgress?.(`${seed.name}: ${stats.cases} cases, ${stats.bugs.length} bugs, ${stats.slow.length} slow`);
  }
  return stats;
}
