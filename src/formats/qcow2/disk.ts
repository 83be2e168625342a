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

function nonZeroRuns(offset: number, data: Uint8Array): PlannedWrite[] {
  const out: PlannedWrite[] = [];
  let i = 0;
  while (i < data.length) {
    while (i < data.length && data[i] === 0) i++;
    if (i === data.length) break;
    const start = i;
    let lastNonZero = i;
    while (i < data.length && i - lastNonZero <= MIN_ZERO_GAP) {
      if (data[i] !== 0) lastNonZero = i;
      i++;
    }
    out.push({ offset: offset + start, data: data.subarray(start, lastNonZero + 1) });
    i = lastNonZero + 1;
  }
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
