/**
 * An image attached to an in-process virtio-blk device model and read back through the driver:
 * the whole virtio path (guest memory, virtio-mmio, split queue, blk requests) between a reader
 * and the image. Used by `packagefs --via-virtio`; byte-addressed reads are widened to whole
 * sectors and split into ≤ maxTransfer requests (readSplit).
 */
import type { Image } from '../formats/image.js';
import { VmimgError } from '../util/errors.js';
import { sectors } from '../util/units.js';
import { BLK_SECTOR } from './constants.js';
import { chainBackend } from './device/backend.js';
import { createBlkDevice } from './device/blk-device.js';
import { MAX_SPLIT_READ, VirtioBlkDriver } from './driver/blk.js';
import { GuestMemory } from './guest-memory.js';

/** Guest RAM for the ring and the request slots, at a non-zero guest-physical base. */
const GUEST_RAM = 4 * 1024 * 1024;
const GUEST_BASE = 0x4000_0000;

export interface VirtioDisk {
  /** Disk size in bytes (capacity × 512). */
  readonly size: number;
  readonly driver: VirtioBlkDriver;
  /** Reads [offset, offset+length) (any alignment, length ≤ 64 MiB minus a sector). */
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** Serves the chain `layers` (top first) read-only over a virtio-mmio device of `version`. */
export function attachVirtioDisk(layers: readonly Image[], options: { version?: 1 | 2 } = {}): VirtioDisk {
  const memory = new GuestMemory(GUEST_RAM, GUEST_BASE);
  const { mmio } = createBlkDevice(memory, chainBackend(layers), { version: options.version ?? 2 });
  const driver = VirtioBlkDriver.open({ transport: mmio, memory, region: { base: GUEST_BASE, size: GUEST_RAM }, mode: 'ro' });
  const size = driver.info().capacity * BLK_SECTOR;
  return {
    size,
    driver,
    async read(offset, length) {
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
        throw new VmimgError('OUT_OF_BOUNDS', `Read of ${length} bytes at ${offset} is outside the ${size}-byte virtio disk`, { offset, length });
      }
      const first = Math.floor(offset / BLK_SECTOR);
      const end = Math.ceil((offset + length) / BLK_SECTOR);
      if ((end - first) * BLK_SECTOR > MAX_SPLIT_READ) {
        throw new VmimgError('SIZE_OUT_OF_RANGE', `Read of ${length} bytes exceeds the ${MAX_SPLIT_READ}-byte virtio read limit`, { length });
      }
      if (length === 0) return new Uint8Array(0);
      const bytes = await driver.readSplit(sectors(first), sectors(end - first));
      const skip = offset - first * BLK_SECTOR;
      return bytes.subarray(skip, skip + length);
    },
  };
}
