/** Shared set-up for the virtio tests: guest memory, a device model over a backend, a driver. */
import { GuestMemory } from '../../src/virtio/guest-memory.js';
import { seededRandom } from '../helpers/random.js';
import { GuestAllocator } from '../../src/virtio/driver/alloc.js';
import { setupMmioDevice } from '../../src/virtio/driver/mmio.js';
import type { DriverQueue } from '../../src/virtio/driver/queue.js';
import { BLK_T, DESC_F, REG, bit, F } from '../../src/virtio/constants.js';
import { createBlkDevice, type BlkDeviceOptions } from '../../src/virtio/device/blk-device.js';
import type { BlockBackend } from '../../src/virtio/device/backend.js';
import { VirtioBlkDriver, type BlkDriverOptions } from '../../src/virtio/driver/blk.js';
import type { VirtioMmioDevice } from '../../src/virtio/device/mmio.js';
import type { VirtioBlkDevice } from '../../src/virtio/device/blk-device.js';

export const MEM_SIZE = 4 * 1024 * 1024;
/** Guest-physical base of the simulated RAM (non-zero so address 0 is always a fault). */
export const MEM_BASE = 0x4000_0000;

export interface Rig {
  mem: GuestMemory;
  mmio: VirtioMmioDevice;
  blk: VirtioBlkDevice;
  driver: VirtioBlkDriver;
}

export function rig(backend: BlockBackend, options: { version?: 1 | 2; device?: BlkDeviceOptions; driver?: Partial<BlkDriverOptions> } = {}): Rig {
  const mem = new GuestMemory(MEM_SIZE, MEM_BASE);
  const { mmio, blk } = createBlkDevice(mem, backend, { ...options.device, version: options.version ?? 2 });
  const driver = VirtioBlkDriver.open({ transport: mmio, memory: mem, region: { base: MEM_BASE, size: MEM_SIZE }, ...options.driver });
  return { mem, mmio, blk, driver };
}

/** Deterministic pseudo-random bytes (xorshift32). */
export function pattern(length: number, seed: number): Uint8Array {
  return seededRandom(seed)(length);
}


/**
 * A device brought up by the generic mmio set-up but driven by hand: tests write descriptors,
 * avail entries and notifications themselves (a hostile or careful driver, as they please).
 */
export interface RawRig {
  mem: GuestMemory;
  mmio: VirtioMmioDevice;
  blk: VirtioBlkDevice;
  q: DriverQueue;
  /** Scratch guest memory for buffers (beyond the ring). */
  scratch: GuestAllocator;
}

export function rawRig(backend: BlockBackend, options: { version?: 1 | 2; device?: BlkDeviceOptions; queueSize?: number; eventIdx?: boolean } = {}): RawRig {
  const mem = new GuestMemory(MEM_SIZE, MEM_BASE);
  const { mmio, blk } = createBlkDevice(mem, backend, { ...options.device, version: options.version ?? 2 });
  const alloc = new GuestAllocator(mem, MEM_BASE, 1024 * 1024);
  const dev = setupMmioDevice(mmio, mem, alloc, {
    wanted: bit(F.BLK_FLUSH),
    eventIdx: options.eventIdx,
    queueSize: options.queueSize ?? 8,
    minQueueSize: 1,
    readConfig: () => undefined,
  });
  return { mem, mmio, blk, q: dev.queue, scratch: new GuestAllocator(mem, MEM_BASE + 1024 * 1024, MEM_SIZE - 1024 * 1024) };
}

/** Writes descriptor `i` of the rig's table. */
export function setDesc(r: RawRig, i: number, addr: number | bigint, len: number, flags: number, next = 0): void {
  const at = r.q.addrs.desc + 16 * i;
  r.mem.setU64(at, BigInt(addr));
  r.mem.setU32(at + 8, len);
  r.mem.setU16(at + 12, flags);
  r.mem.setU16(at + 14, next);
}

/** Publishes `head` in the next avail slot (by the rig's own avail idx) and notifies. */
export function publish(r: RawRig, head: number, notify = true): void {
  const idx = r.mem.u16(r.q.addrs.avail + 2);
  r.mem.setU16(r.q.addrs.avail + 4 + 2 * (idx % r.q.size), head);
  r.mem.setU16(r.q.addrs.avail + 2, (idx + 1) & 0xffff);
  if (notify) r.mmio.write32(REG.QUEUE_NOTIFY, 0);
}

/** Used ring element `n` (0-based, mod size): {id, len}; and the used idx. */
export function usedElem(r: RawRig, n: number): { id: number; len: number } {
  const at = r.q.addrs.used + 4 + 8 * (n % r.q.size);
  return { id: r.mem.u32(at), len: r.mem.u32(at + 4) };
}
export const usedIdx = (r: RawRig): number => r.mem.u16(r.q.addrs.used + 2);

/** A blk header (type, sector) in scratch memory; returns its address. */
export function header(r: RawRig, type: number, sector: bigint | number = 0): number {
  const a = r.scratch.alloc(16, 16);
  r.mem.setU32(a, type);
  r.mem.setU64(a + 8, BigInt(sector));
  return a;
}

export { BLK_T, DESC_F };
