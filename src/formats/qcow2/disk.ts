/**
 * An in-memory model of the image file while the planner replays QEMU's create sequence: the file
 * length (every write and truncate extends it) and the writes whose bytes can survive to the end.
 * Later writes win where they overlap; flatten() turns the log into the Layout's non-overlapping,
 * ascending writes, dropping bytes that are zero anyway (the file starts sparse).
 */
import type { PlannedWrite } from '../types.js';

interface LoggedWrite {
  offset: number;
  data: Uint8Array;
}

export class SparseFile {
  private readonly log: LoggedWrite[] = [];
  private end = 0;

  get length(): number {
    return this.end;
  }

  /** Records `data` at `offset`; it overrides earlier writes and is overridden by later ones. */
  write(offset: number, data: Uint8Array): void {
    if (data.length === 0) return;
    this.log.push({ offset, data });
    this.extend(offset + data.length);
  }

  /** A write of zeros (or of content that is rewritten later): only the file length changes. */
  extend(end: number): void {
    if (end > this.end) this.end = end;
  }

  /** The final contents as non-overlapping writes, ascending, without all-zero runs. */
  flatten(): PlannedWrite[] {
    const covered = new IntervalSet();
    const pieces: PlannedWrite[] = [];
    for (let i = this.log.length - 1; i >= 0; i--) {
      const w = this.log[i]!;
      for (const [start, stop] of covered.uncovered(w.offset, w.offset + w.data.length)) {
        pieces.push(...nonZeroRuns(start, w.data.subarray(start - w.offset, stop - w.offset)));
      }
      covered.add(w.offset, w.offset + w.data.length);
    }
    return pieces.sort((a, b) => a.offset - b.offset);
  }
}

/** Zero gaps shorter than this stay inside a write rather than splitting it. */
const MIN_ZERO_GAP = 4096;
/** Scan unit: zero detection compares whole blocks natively (Buffer.compare), not byte by byte. */
const BLOCK = 512;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

function zeroBlock(data: Uint8Array, at: number): boolean {
  const end = Math.min(at + BLOCK, data.length);
  return Buffer.compare(data.subarray(at, end), ZERO_BLOCK.subarray(0, end - at)) === 0;
}

/**
 * The non-zero runs of `data`, byte-exact: a run starts and ends on a non-zero byte, and zero
 * gaps shorter than MIN_ZERO_GAP stay inside a run. All-zero blocks are skipped with native
 * compares; only blocks holding data are scanned byte by byte, for their first and last
 * non-zero byte.
 */
function nonZeroRuns(offset: number, data: Uint8Array): PlannedWrite[] {
  const out: PlannedWrite[] = [];
  let run: { start: number; last: number } | undefined;
  for (let at = 0; at < data.length; at += BLOCK) {
    if (zeroBlock(data, at)) continue;
    const end = Math.min(at + BLOCK, data.length);
    let first = at;
    while (data[first] === 0) first++;
    let last = end - 1;
    while (data[last] === 0) last--;
    if (run && first - run.last - 1 < MIN_ZERO_GAP) run.last = last;
    else {
      if (run) out.push({ offset: offset + run.start, data: data.subarray(run.start, run.last + 1) });
      run = { start: first, last };
    }
  }
  if (run) out.push({ offset: offset + run.start, data: data.subarray(run.start, run.last + 1) });
  return out;
}

/** Disjoint half-open intervals kept sorted and merged. */
class IntervalSet {
  private starts: number[] = [];
  private stops: number[] = [];

  /** Index of the first interval whose stop is > x. */
  private firstEndingAfter(x: number): number {
    let lo = 0;
    let hi = this.stops.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.stops[mid]! > x) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** The parts of [start, stop) not covered yet, ascending. */
  uncovered(start: number, stop: number): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    let cursor = start;
    for (let i = this.firstEndingAfter(start); i < this.starts.length && this.starts[i]! < stop; i++) {
      if (this.starts[i]! > cursor) out.push([cursor, this.starts[i]!]);
      cursor = Math.max(cursor, this.stops[i]!);
    }
    if (cursor < stop) out.push([cursor, stop]);
    return out;
  }

  add(start: number, stop: number): void {
    const i = this.firstEndingAfter(start - 1);
    let j = i;
    let s = start;
    let e = stop;
    while (j < this.starts.length && this.starts[j]! <= stop) {
      s = Math.min(s, this.starts[j]!);
      e = Math.max(e, this.stops[j]!);
      j++;
    }
    this.starts.splice(i, j - i, s);
    this.stops.splice(i, j - i, e);
  }
}
