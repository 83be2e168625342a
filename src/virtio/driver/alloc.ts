/**
 * A bump allocator over a region of guest memory the driver owns (rings and request buffers).
 * Nothing is ever freed: the driver allocates everything once at initialisation.
 */
import { VmimgError } from '../../util/errors.js';
import type { GuestMemory } from '../guest-memory.js';
import { alignUp } from '../ring.js';

export class GuestAllocator {
  #next: number;
  readonly end: number;

  /** Hands out [base, base+size), which must lie inside `mem`. */
  constructor(
    readonly mem: GuestMemory,
    base: number,
    size: number,
  ) {
    if (!mem.contains(base, size)) {
      throw new VmimgError('GUEST_MEMORY_FAULT', `Driver region ${size} bytes at 0x${base.toString(16)} is outside guest memory`, { base, size });
    }
    this.#next = base;
    this.end = base + size;
  }

  /** Bytes left (ignoring alignment). */
  get remaining(): number {
    return this.end - this.#next;
  }

  /** `length` zeroed bytes aligned to `align` (a power of two); VIRTIO_INIT_FAILED when full. */
  alloc(length: number, align: number): number {
    const at = alignUp(this.#next, align);
    if (at + length > this.end) {
      throw new VmimgError('VIRTIO_INIT_FAILED', `Driver region exhausted: need ${length} bytes aligned to ${align}, ${Math.max(0, this.end - at)} left`, { length, align });
    }
    this.#next = at + length;
    this.mem.fill(at, length);
    return at;
  }
}
