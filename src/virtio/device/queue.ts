/**
 * The device half of one split virtqueue (virtio 1.2 §2.7): consumes the available ring,
 * produces the used ring, and decides when to interrupt. State follows rust-vmm's Queue:
 * free-running 16-bit next_avail / next_used, and a count of used entries added since the last
 * interrupt decision. Ring contents are untrusted: a driver that claims more than qsz new
 * entries, or names a head outside the table, puts the queue in error (VIRTIO_DEVICE_ERROR),
 * which the transport turns into DEVICE_NEEDS_RESET.
 */
import { AVAIL_F_NO_INTERRUPT } from '../constants.js';
import type { GuestMemory } from '../guest-memory.js';
import { idxAdd, idxDiff, needEvent, type RingAddresses } from '../ring.js';
import { VmimgError } from '../../util/errors.js';

export class DeviceQueue {
  #nextAvail = 0;
  #nextUsed = 0;
  #addedSinceSignal = 0;

  constructor(
    readonly mem: GuestMemory,
    readonly size: number,
    readonly addrs: RingAddresses,
    /** VIRTIO_F_EVENT_IDX negotiated: used_event / avail_event are live (§2.7.7, §2.7.10). */
    readonly eventIdx: boolean,
  ) {}

  get nextAvail(): number {
    return this.#nextAvail;
  }
  get nextUsed(): number {
    return this.#nextUsed;
  }

  /** avail->idx as the driver last published it. */
  availIdx(): number {
    return this.mem.u16(this.addrs.avail + 2);
  }

  /**
   * The next available head, or undefined when the ring is empty. §2.7.6: the driver never
   * has more than qsz entries outstanding, so (avail.idx − next_avail) mod 2^16 > qsz is a
   * hostile or broken driver (rust-vmm's InvalidAvailRingIndex).
   */
  popAvail(): number | undefined {
    const pending = idxDiff(this.availIdx(), this.#nextAvail);
    if (pending === 0) return undefined;
    if (pending > this.size) {
      throw new VmimgError('VIRTIO_DEVICE_ERROR', `Available ring claims ${pending} new entries but the queue holds ${this.size}`, { pending, size: this.size });
    }
    const head = this.mem.u16(this.addrs.avail + 4 + 2 * (this.#nextAvail % this.size));
    if (head >= this.size) {
      throw new VmimgError('VIRTIO_DEVICE_ERROR', `Available ring entry ${this.#nextAvail} names descriptor ${head}, outside the queue (size ${this.size})`, { head, size: this.size });
    }
    this.#nextAvail = idxAdd(this.#nextAvail, 1);
    return head;
  }

  /** Returns chain `head` with `len` bytes written (§2.7.8): element first, then idx. */
  pushUsed(head: number, len: number): void {
    const elem = this.addrs.used + 4 + 8 * (this.#nextUsed % this.size);
    this.mem.setU32(elem, head);
    this.mem.setU32(elem + 4, len);
    this.#nextUsed = idxAdd(this.#nextUsed, 1);
    this.mem.setU16(this.addrs.used + 2, this.#nextUsed);
    this.#addedSinceSignal++;
  }

  /**
   * Whether the driver wants a used-buffer notification for the entries added since the last
   * call (§2.7.7 "Used Buffer Notification Suppression"): with EVENT_IDX, vring_need_event on
   * avail->used_event; without it, unless avail->flags has NO_INTERRUPT.
   */
  needsInterrupt(): boolean {
    const added = this.#addedSinceSignal;
    this.#addedSinceSignal = 0;
    if (added === 0) return false;
    if (this.eventIdx) {
      const usedEvent = this.mem.u16(this.addrs.avail + 4 + 2 * this.size);
      return needEvent(usedEvent, this.#nextUsed, idxAdd(this.#nextUsed, -added));
    }
    return (this.mem.u16(this.addrs.avail) & AVAIL_F_NO_INTERRUPT) === 0;
  }

  /**
   * Re-arms driver notifications before the device goes idle (§2.7.10): with EVENT_IDX writes
   * used->avail_event = next_avail ("notify me from this entry on"). Returns true when entries
   * arrived meanwhile, so the caller must keep processing instead of sleeping.
   */
  enableNotification(): boolean {
    if (this.eventIdx) this.mem.setU16(this.addrs.used + 4 + 8 * this.size, this.#nextAvail);
    return idxDiff(this.availIdx(), this.#nextAvail) !== 0;
  }
}
