/**
 * Split-virtqueue geometry and index arithmetic, shared by both sides (virtio 1.2 §2.7
 * "Split Virtqueues"). Pure functions: no memory access here.
 */
import { MAX_QUEUE_SIZE } from './constants.js';

/** virtio 1.2 §2.7 alignment table: descriptor table 16, driver area 2, device area 4. */
export const DESC_ALIGN = 16;
export const AVAIL_ALIGN = 2;
export const USED_ALIGN = 4;
export const DESC_SIZE = 16;
/** Legacy layouts align the used ring to this unless the driver writes another QueueAlign (§2.7.2). */
export const LEGACY_QUEUE_ALIGN = 4096;

/** Bytes of the descriptor table: 16 × qsz. */
export const descTableSize = (qsz: number): number => DESC_SIZE * qsz;
/** Bytes of the available ring: flags, idx, ring[qsz], used_event (§2.7.6). */
export const availRingSize = (qsz: number): number => 6 + 2 * qsz;
/** Bytes of the used ring: flags, idx, ring[qsz] of {le32 id, le32 len}, avail_event (§2.7.8). */
export const usedRingSize = (qsz: number): number => 6 + 8 * qsz;

export const alignUp = (n: number, align: number): number => Math.ceil(n / align) * align;

/** A queue size is valid for a split ring when it is a power of two in [1, 32768] (§2.7). */
export function validQueueSize(qsz: number): boolean {
  return Number.isInteger(qsz) && qsz >= 1 && qsz <= MAX_QUEUE_SIZE && (qsz & (qsz - 1)) === 0;
}

/** Where the three parts of a queue live (guest-physical). */
export interface RingAddresses {
  desc: number;
  avail: number;
  used: number;
}

/**
 * The legacy contiguous layout (§2.7.2 "Legacy Interfaces: A Note on Virtqueue Layout", Linux
 * vring_init): descriptor table at `base`, avail ring right after, used ring at the next
 * `align` boundary. The spec's printed ALIGN macro is off by one; this follows Linux.
 */
export function legacyLayout(base: number, qsz: number, align: number): RingAddresses & { total: number } {
  const avail = base + descTableSize(qsz);
  const used = base + alignUp(descTableSize(qsz) + availRingSize(qsz), align);
  return { desc: base, avail, used, total: used - base + usedRingSize(qsz) };
}

/** (a - b) mod 2^16: how far free-running index `a` is ahead of `b` (§2.7.6 "idx ... wraps"). */
export const idxDiff = (a: number, b: number): number => (a - b) & 0xffff;
export const idxAdd = (a: number, n: number): number => (a + n) & 0xffff;

/**
 * virtio 1.2 §2.7.7 / §2.7.10 (and Linux vring_need_event): with EVENT_IDX, the other side
 * wants a notification when the index moved from `old` to `next` across `event`, i.e.
 * (u16)(next − event − 1) < (u16)(next − old).
 */
export function needEvent(event: number, next: number, old: number): boolean {
  return ((next - event - 1) & 0xffff) < ((next - old) & 0xffff);
}
