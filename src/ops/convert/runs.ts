/**
 * Turns a source chain's map into the runs convert acts on, at the target's write granularity:
 * a granule is `data` (read and write it), `zero` (reads as zeros), `mask` (explicit zeros in
 * the source's top layer that must hide a new backing file), or `skip` (unallocated in the
 * source's top layer, left unallocated over the new backing file, convert -B). A granule whose
 * parts disagree is `data`: reading it through the source chain gives the right bytes.
 */
import type { MapEntry } from '../map.js';

export type RunKind = 'data' | 'zero' | 'mask' | 'skip';

export interface Run {
  kind: RunKind;
  /** Target offset. */
  start: number;
  length: number;
}

export interface ClassifyOptions {
  /** The target gets a backing file (-B): keep top-unallocated ranges unallocated. */
  backing: boolean;
  /** -S 0: everything the source holds, zeros included, is written as data. */
  fullAllocation: boolean;
  /**
   * A merged run is yielded once it is at least this long (default: only when a run of another
   * kind follows), so the consumer starts on it while later entries are still being mapped.
   */
  yieldFrom?: number;
}

export function kindOf(e: MapEntry, o: ClassifyOptions): RunKind {
  // Left to the new backing file: what the source's top layer leaves to its own backing chain.
  // A range unallocated in a top layer without a backing file (or past its backing file's end)
  // reads as zeros: QEMU's block status says ZERO there, and convert masks it.
  if (o.backing && e.depth > 0) return 'skip';
  // Known zeros are never read, even when the format also reports them as data (fixed VHD
  // holes, preallocated zero clusters): qemu-img's convert_iteration_sectors tests ZERO first.
  if (e.data && !e.zero) return 'data';
  if (o.fullAllocation) return 'data';
  return o.backing ? 'mask' : 'zero';
}

/**
 * Streams granule-aligned runs for entries (source offsets) placed at target offset `base`.
 * `granule` divides `base`; runs are merged when adjacent and of the same kind.
 */
export async function* classify(entries: AsyncIterable<MapEntry>, base: number, end: number, granule: number, o: ClassifyOptions): AsyncGenerator<Run> {
  let pending: Run | undefined;
  // The partially covered granule at the front of the stream: its start and the kind so far.
  let partial: { start: number; kind: RunKind } | undefined;

  const emit = function* (run: Run): Generator<Run> {
    if (run.length <= 0) return;
    if (pending && pending.kind === run.kind && pending.start + pending.length === run.start) pending.length += run.length;
    else {
      if (pending) yield pending;
      pending = { ...run };
    }
    if (pending.length >= (o.yieldFrom ?? Infinity)) {
      yield pending;
      pending = undefined;
    }
  };

  for await (const e of entries) {
    const kind = kindOf(e, o);
    let a = base + e.start;
    const b = base + e.start + e.length;
    if (partial) {
      const gEnd = Math.min(partial.start + granule, end);
      const take = Math.min(b, gEnd);
      if (kind !== partial.kind) partial.kind = 'data';
      a = take;
      if (take === gEnd) {
        yield* emit({ kind: partial.kind, start: partial.start, length: gEnd - partial.start });
        partial = undefined;
      }
      if (a >= b) continue;
    }
    // a is granule-aligned here; emit the whole granules of [a, b) (the last may end at `end`).
    const alignedEnd = b === end ? b : base + Math.floor((b - base) / granule) * granule;
    if (alignedEnd > a) {
      yield* emit({ kind, start: a, length: alignedEnd - a });
      a = alignedEnd;
    }
    if (a < b) partial = { start: a, kind };
  }
  if (partial) yield* emit({ kind: partial.kind, start: partial.start, length: Math.min(partial.start + granule, end) - partial.start });
  if (pending) yield pending;
}
