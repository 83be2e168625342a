/**
 * Simulated guest RAM: one ArrayBuffer mapped at a guest-physical base address, with
 * bounds-checked little-endian accessors. Both the driver and the device model see the guest
 * only through this object; every access outside [base, base+size) throws GUEST_MEMORY_FAULT,
 * so a hostile descriptor can never reach host memory beyond the buffer.
 */
import { VmimgError } from '../util/errors.js';

/** A guest-physical address (bytes). Always a safe integer. */
export type GuestAddr = number & { readonly __guestAddr: unique symbol };
export const guestAddr = (n: number): GuestAddr => n as GuestAddr;

export class GuestMemory {
  readonly base: number;
  readonly size: number;
  readonly #bytes: Uint8Array;
  readonly #view: DataView;

  /** `size` bytes of zeroed RAM at guest-physical `base` (both safe integers, size > 0). */
  constructor(size: number, base = 0) {
    if (!Number.isSafeInteger(size) || size <= 0 || !Number.isSafeInteger(base) || base < 0 || !Number.isSafeInteger(base + size)) {
      throw new VmimgError('INVALID_OPTION', `Guest memory of ${size} bytes at ${base} is not representable`, { size, base });
    }
    this.base = base;
    this.size = size;
    this.#bytes = new Uint8Array(size);
    this.#view = new DataView(this.#bytes.buffer);
  }

  /** True when [addr, addr+length) lies inside guest memory (length ≥ 0). */
  contains(addr: number, length: number): boolean {
    return Number.isSafeInteger(addr) && Number.isSafeInteger(length) && length >= 0 && addr >= this.base && addr - this.base + length <= this.size;
  }

  /** The buffer offset of [addr, addr+length), or GUEST_MEMORY_FAULT. */
  #offset(addr: number, length: number): number {
    if (!this.contains(addr, length)) {
      throw new VmimgError('GUEST_MEMORY_FAULT', `Guest access of ${length} bytes at 0x${addr.toString(16)} is outside guest memory [0x${this.base.toString(16)}, 0x${(this.base + this.size).toString(16)})`, { addr, length });
    }
    return addr - this.base;
  }

  u8(addr: number): number {
    return this.#view.getUint8(this.#offset(addr, 1));
  }
  u16(addr: number): number {
    return this.#view.getUint16(this.#offset(addr, 2), true);
  }
  u32(addr: number): number {
    return this.#view.getUint32(this.#offset(addr, 4), true);
  }
  u64(addr: number): bigint {
    return this.#view.getBigUint64(this.#offset(addr, 8), true);
  }
  setU8(addr: number, v: number): void {
    this.#view.setUint8(this.#offset(addr, 1), v);
  }
  setU16(addr: number, v: number): void {
    this.#view.setUint16(this.#offset(addr, 2), v, true);
  }
  setU32(addr: number, v: number): void {
    this.#view.setUint32(this.#offset(addr, 4), v >>> 0, true);
  }
  setU64(addr: number, v: bigint): void {
    this.#view.setBigUint64(this.#offset(addr, 8), BigInt.asUintN(64, v), true);
  }

  /**
   * A live view of [addr, addr+length): writes through it change guest memory. For the device's
   * zero-copy data path; callers must not keep it past the request.
   */
  view(addr: number, length: number): Uint8Array {
    const off = this.#offset(addr, length);
    return this.#bytes.subarray(off, off + length);
  }

  /** A copy of [addr, addr+length). */
  read(addr: number, length: number): Uint8Array {
    return this.view(addr, length).slice();
  }

  write(addr: number, data: Uint8Array): void {
    this.#bytes.set(data, this.#offset(addr, data.length));
  }

  fill(addr: number, length: number, value = 0): void {
    const off = this.#offset(addr, length);
    this.#bytes.fill(value, off, off + length);
  }
}

/**
 * A le64 guest address as a JS number, or undefined when it cannot be a valid address
 * (≥ 2^53): callers treat undefined like any other out-of-range address.
 */
export function addrFromU64(v: bigint): number | undefined {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : undefined;
}
