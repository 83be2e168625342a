/**
 * The driver half of one split virtqueue (virtio 1.2 §2.7.13 "Supplying Buffers to The Device",
 * §2.7.14 "Receiving Used Buffers From The Device"). Free descriptors form a list threaded
 * through a host-side `next` array (as Linux's detach_buf_split does, but never read back from
 * guest memory, so a device that scribbles on the table cannot make the driver loop). Indices
 * are free-running u16. Everything the device writes (used idx, id, len) is checked: a device
 * that completes more than is outstanding, an unknown head, or more bytes than the chain can
 * hold is VIRTIO_DEVICE_ERROR.
 */
import { DESC_F, USED_F_NO_NOTIFY } from '../constants.js';
import type { GuestMemory } from '../guest-memory.js';
import { DESC_SIZE, idxAdd, idxDiff, needEvent, type RingAddresses } from '../ring.js';
import { VmimgError } from '../../util/errors.js';

/** One driver buffer: guest-physical [addr, addr+len), writable by the device or not. */
export interface Buffer {
  addr: number;
  len: number;
  writable: boolean;
}

interface InFlight {
  descs: number[];
  writable: number;
}

export class DriverQueue {
  readonly #next: Uint16Array;
  #freeHead = 0;
  #numFree: number;
  #availIdx = 0;
  #lastUsed = 0;
  #addedSinceKick = 0;
  readonly #inFlight = new Map<number, InFlight>();

  constructor(
    readonly mem: GuestMemory,
    readonly size: number,
    readonly addrs: RingAddresses,
    /** VIRTIO_F_EVENT_IDX negotiated. */
    readonly eventIdx: boolean,
  ) {
    this.#next = new Uint16Array(size);
    for (let i = 0; i < size; i++) this.#next[i] = i + 1;
    this.#numFree = size;
  }

  get numFree(): number {
    return this.#numFree;
  }
  get inFlight(): number {
    return this.#inFlight.size;
  }
  /** avail->idx as last published (free-running). */
  get availIdx(): number {
    return this.#availIdx;
  }
  /** The used index up to which completions have been consumed (free-running). */
  get lastUsed(): number {
    return this.#lastUsed;
  }

  /**
   * Writes `bufs` as one chain (device-readable ones first, §2.7.5.2) and publishes its head in
   * the available ring (§2.7.13.2–3: ring entry first, then idx). Returns the head, or undefined
   * when fewer than bufs.length descriptors are free.
   */
  add(bufs: Buffer[]): number | undefined {
    if (bufs.length === 0 || bufs.length > this.#numFree) return undefined;
    const descs: number[] = [];
    let writable = 0;
    let i = this.#freeHead;
    for (let k = 0; k < bufs.length; k++) {
      const b = bufs[k]!;
      descs.push(i);
      const at = this.addrs.desc + i * DESC_SIZE;
      const last = k === bufs.length - 1;
      this.mem.setU64(at, BigInt(b.addr));
      this.mem.setU32(at + 8, b.len);
      this.mem.setU16(at + 12, (b.writable ? DESC_F.WRITE : 0) | (last ? 0 : DESC_F.NEXT));
      const following = this.#next[i]!;
      this.mem.setU16(at + 14, last ? 0 : following);
      if (b.writable) writable += b.len;
      i = following;
    }
    this.#freeHead = i;
    this.#numFree -= bufs.length;
    const head = descs[0]!;
    this.#inFlight.set(head, { descs, writable });
    this.mem.setU16(this.addrs.avail + 4 + 2 * (this.#availIdx % this.size), head);
    this.#availIdx = idxAdd(this.#availIdx, 1);
    this.mem.setU16(this.addrs.avail + 2, this.#availIdx);
    this.#addedSinceKick++;
    return head;
  }

  /**
   * Whether the device wants an available-buffer notification for what was added since the
   * last call (§2.7.10; Linux virtqueue_kick_prepare_split): vring_need_event on
   * used->avail_event with EVENT_IDX, else unless used->flags has NO_NOTIFY.
   */
  kickPrepare(): boolean {
    const added = this.#addedSinceKick;
    this.#addedSinceKick = 0;
    if (added === 0) return false;
    if (this.eventIdx) {
      const availEvent = this.mem.u16(this.addrs.used + 4 + 8 * this.size);
      return needEvent(availEvent, this.#availIdx, idxAdd(this.#availIdx, -added));
    }
    return (this.mem.u16(this.addrs.used) & USED_F_NO_NOTIFY) === 0;
  }

  /** The next completion {head, len}, or undefined when none is pending; frees its descriptors. */
  popUsed(): { head: number; len: number } | undefined {
    const usedIdx = this.mem.u16(this.addrs.used + 2);
    const ready = idxDiff(usedIdx, this.#lastUsed);
    if (ready === 0) return undefined;
    if (ready > this.#inFlight.size) {
      throw new VmimgError('VIRTIO_DEVICE_ERROR', `Device used index moved ${ready} entries ahead with ${this.#inFlight.size} requests outstanding`, { ready });
    }
    const elem = this.addrs.used + 4 + 8 * (this.#lastUsed % this.size);
    const head = this.mem.u32(elem);
    const len = this.mem.u32(elem + 4);
    const entry = this.#inFlight.get(head);
    if (!entry) throw new VmimgError('VIRTIO_DEVICE_ERROR', `Device completed descriptor ${head}, which is not an outstanding request`, { head });
    if (len > entry.writable) {
      throw new VmimgError('VIRTIO_DEVICE_ERROR', `Device reports ${len} bytes written to a request with ${entry.writable} writable bytes`, { head, len });
    }
    this.#lastUsed = idxAdd(this.#lastUsed, 1);
    this.#inFlight.delete(head);
    // Return the chain to the free list (host-side links only).
    const d = entry.descs;
    for (let k = 0; k < d.length - 1; k++) this.#next[d[k]!] = d[k + 1]!;
    this.#next[d[d.length - 1]!] = this.#freeHead;
    this.#freeHead = head;
    this.#numFree += d.length;
    return { head, len };
  }

  /**
   * Asks for an interrupt at the next completion (§2.7.7): with EVENT_IDX, avail->used_event =
   * last consumed used index; without it, clears NO_INTERRUPT (never set by this driver).
   */
  armInterrupt(): void {
    if (this.eventIdx) this.mem.setU16(this.addrs.avail + 4 + 2 * this.size, this.#lastUsed);
  }
}
