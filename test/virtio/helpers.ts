/** Shared set-up for the virtio tests: guest memory, a device model over a backend, a driver. */
import { GuestMemory } from '../../src/virtio/guest-memory.js';
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
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}
