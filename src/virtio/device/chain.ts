/**
 * Walking one descriptor chain on the device side, treating every field as hostile
 * (virtio 1.2 §2.7.5 "The Virtqueue Descriptor Table", §2.7.4 "Message Framing").
 * The walk is bounded by the queue size, so a loop in `next` ends it instead of spinning; every
 * buffer must lie inside guest memory; device-readable buffers must all precede device-writable
 * ones (§2.7.5.2 driver requirement, checked here); INDIRECT is refused (never offered).
 */
import { DESC_F } from '../constants.js';
import { addrFromU64, type GuestMemory } from '../guest-memory.js';
import { DESC_SIZE } from '../ring.js';

/** One buffer of a chain: guest-physical [addr, addr+len), device-readable or device-writable. */
export interface Segment {
  addr: number;
  len: number;
  writable: boolean;
}

export type ChainWalk =
  | { ok: true; segments: Segment[]; readable: number; writable: number }
  | { ok: false; reason: string };

/**
 * Reads the chain starting at descriptor `head` of the table at `descTable` (qsz entries).
 * Never throws for bad chain contents: the reason is returned so the device can complete the
 * chain as rejected and go on. `maxDescriptors` ≤ qsz bounds the walk (§2.7.5.2: a chain is
 * never longer than the queue size).
 */
export function walkChain(mem: GuestMemory, descTable: number, qsz: number, head: number, maxDescriptors = qsz): ChainWalk {
  const segments: Segment[] = [];
  let readable = 0;
  let writable = 0;
  let index = head;
  for (let count = 0; ; count++) {
    if (count >= Math.min(maxDescriptors, qsz)) return { ok: false, reason: `chain from descriptor ${head} is longer than ${Math.min(maxDescriptors, qsz)} descriptors (loop?)` };
    if (index >= qsz) return { ok: false, reason: `descriptor index ${index} is outside the queue (size ${qsz})` };
    const at = descTable + index * DESC_SIZE;
    const addr = addrFromU64(mem.u64(at));
    const len = mem.u32(at + 8);
    const flags = mem.u16(at + 12);
    const next = mem.u16(at + 14);
    if (flags & DESC_F.INDIRECT) return { ok: false, reason: `descriptor ${index} is INDIRECT, which was not negotiated` };
    if (addr === undefined || !mem.contains(addr, len)) {
      return { ok: false, reason: `descriptor ${index} buffer ${len} bytes at 0x${(addr ?? mem.u64(at)).toString(16)} is outside guest memory` };
    }
    const isWritable = (flags & DESC_F.WRITE) !== 0;
    if (!isWritable && writable > 0) return { ok: false, reason: `descriptor ${index} is device-readable after a device-writable one` };
    if (len > 0) segments.push({ addr, len, writable: isWritable });
    if (isWritable) writable += len;
    else readable += len;
    if (!(flags & DESC_F.NEXT)) return { ok: true, segments, readable, writable };
    index = next;
  }
}

/**
 * The chain's bytes of one direction seen as one byte stream (§2.7.4: framing is independent
 * of descriptor boundaries). `slices(offset, length)` returns the live guest-memory views that
 * cover [offset, offset+length) of that stream, in order.
 */
export class ByteStream {
  readonly length: number;
  readonly #segments: Segment[];

  constructor(
    readonly mem: GuestMemory,
    segments: Segment[],
  ) {
    this.#segments = segments;
    this.length = segments.reduce((n, s) => n + s.len, 0);
  }

  slices(offset: number, length: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    let skip = offset;
    let want = length;
    for (const s of this.#segments) {
      if (want === 0) break;
      if (skip >= s.len) {
        skip -= s.len;
        continue;
      }
      const n = Math.min(s.len - skip, want);
      out.push(this.mem.view(s.addr + skip, n));
      want -= n;
      skip = 0;
    }
    return out;
  }

  /** A copy of [offset, offset+length) of the stream (length small: headers). */
  read(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let at = 0;
    for (const v of this.slices(offset, length)) {
      out.set(v, at);
      at += v.length;
    }
    return out;
  }

  write(offset: number, data: Uint8Array): void {
    let at = 0;
    for (const v of this.slices(offset, data.length)) {
      v.set(data.subarray(at, at + v.length));
      at += v.length;
    }
  }
}
