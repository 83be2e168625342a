/**
 * The in-memory refcount table of a check (QEMU's "IMRT"): one counter per host cluster,
 * saturating at the image's largest refcount like QEMU's refcount_bits-wide array.
 *
 * Memory is bounded: counters live in lazily allocated pages (only clusters something refers
 * to cost memory), one to four bytes wide depending on refcount_bits, and the table refuses to
 * grow past MAX_IMRT_BYTES of pages (the check then fails cleanly instead of exhausting memory).
 */
import { VmimgError } from '../../util/errors.js';

const PAGE_BITS = 16;
const PAGE = 1 << PAGE_BITS;
/** Upper bound on counter memory for one check. */
export const MAX_IMRT_BYTES = 1024 * 1024 * 1024;

type Page = Uint8Array | Uint16Array | Uint32Array;

export class Imrt {
  private readonly pages: Array<Page | undefined> = [];
  private bytes = 0;
  /** Number of clusters covered (QEMU's nb_clusters / refcount_table_size). */
  size: number;
  /** Largest storable value (refcount_max, capped at 2^32 - 1). */
  readonly max: number;
  private readonly width: 1 | 2 | 4;

  constructor(size: number, refcountOrder: number) {
    this.size = size;
    const bits = 2 ** refcountOrder;
    this.max = bits >= 32 ? 0xffffffff : 2 ** bits - 1;
    this.width = bits <= 8 ? 1 : bits <= 16 ? 2 : 4;
  }

  get(i: number): number {
    const p = this.pages[i >>> PAGE_BITS];
    return p ? p[i & (PAGE - 1)]! : 0;
  }

  set(i: number, value: number): void {
    const pi = Math.floor(i / PAGE);
    let p = this.pages[pi];
    if (!p) {
      if (value === 0) return;
      this.bytes += PAGE * this.width;
      if (this.bytes > MAX_IMRT_BYTES) {
        throw new VmimgError('UNSUPPORTED_IMAGE', `qcow2 check needs more than ${MAX_IMRT_BYTES >> 20} MiB of reference counters; the image is too large for vmimg's check`, { clusters: this.size });
      }
      p = this.width === 1 ? new Uint8Array(PAGE) : this.width === 2 ? new Uint16Array(PAGE) : new Uint32Array(PAGE);
      this.pages[pi] = p;
    }
    p[i & (PAGE - 1)] = value;
  }

  /** Grows the covered range (realloc_refcount_array); new counters are zero. */
  grow(size: number): void {
    if (size > this.size) this.size = size;
  }

  /** Zeroes every counter (the size stays). */
  clear(): void {
    this.pages.length = 0;
    this.bytes = 0;
  }

  /** The highest index with a non-zero counter, or -1. */
  lastUsed(): number {
    for (let pi = this.pages.length - 1; pi >= 0; pi--) {
      const p = this.pages[pi];
      if (!p) continue;
      for (let j = PAGE - 1; j >= 0; j--) if (p[j] !== 0) return pi * PAGE + j;
    }
    return -1;
  }

  /** Whether any counter in [from, to) is non-zero (skipping unallocated pages). */
  anyIn(from: number, to: number): boolean {
    for (let i = from; i < to; ) {
      const p = this.pages[i >>> PAGE_BITS];
      const pageEnd = Math.min(to, (Math.floor(i / PAGE) + 1) * PAGE);
      if (p) {
        for (let j = i; j < pageEnd; j++) if (p[j & (PAGE - 1)] !== 0) return true;
      }
      i = pageEnd;
    }
    return false;
  }
}
