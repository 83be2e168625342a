/**
 * What the block device model serves: a narrow byte-addressed disk. Adapters cover any opened
 * vmimg image chain (read-only, through ChainReader), images whose driver has a write path
 * (Image.write, optional in the contract: qcow2, vpc), raw images read-write (the raw driver has no
 * Image.write, so writes go straight to the file's Storage, where guest byte i is file byte i),
 * and plain memory (tests, scratch disks).
 */
import { ChainReader } from '../../chain/read.js';
import type { Image } from '../../formats/image.js';
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';

export interface BlockBackend {
  /** Disk size in bytes; the device exposes floor(size / 512) sectors. */
  readonly size: number;
  readonly readOnly: boolean;
  /** Fills `target` with disk bytes at `offset` (offset + target.length ≤ size). */
  readInto(offset: number, target: Uint8Array): Promise<void>;
  /** Writes at `offset` (offset + data.length ≤ size). Absent or refused when readOnly. */
  write?(offset: number, data: Uint8Array): Promise<void>;
  /** Makes completed writes durable. */
  flush?(): Promise<void>;
}

/** Largest single backend call the device issues (bounds any one allocation below it). */
export const BACKEND_CHUNK = 1024 * 1024;

/** Read-only disk over an image and its backing layers (top first), any format vmimg reads. */
export function chainBackend(layers: readonly Image[]): BlockBackend {
  const reader = new ChainReader(layers);
  return {
    size: reader.virtualSize,
    readOnly: true,
    readInto: (offset, target) => reader.readInto(offset, target),
  };
}

/**
 * A disk over an image chain (top first) that is read-write when the top image was opened
 * writable by a driver with a write path (Image.write — qcow2, vmdk, vpc, vhdx), else read-only. A raw top
 * image opened writable, which has no Image.write, goes through rawWritableBackend instead.
 */
export function imageBackend(layers: readonly Image[]): BlockBackend {
  const top = layers[0];
  if (top?.writable && top.write) {
    const reader = new ChainReader(layers);
    const write = top.write.bind(top);
    const flush = top.flush?.bind(top);
    return { size: reader.virtualSize, readOnly: false, readInto: (o, t) => reader.readInto(o, t), write, ...(flush ? { flush } : {}) };
  }
  if (top && layers.length === 1 && top.format === 'raw' && top.storage.writable) return rawWritableBackend(top);
  return chainBackend(layers);
}

/**
 * Read-write disk over a raw image opened writable. Reads still go through ChainReader (so holes
 * read as zeros via the image's map); writes and flush go to the image's Storage.
 * Throws UNSUPPORTED_OPTION for any other format (those write through imageBackend).
 */
export function rawWritableBackend(image: Image): BlockBackend {
  if (image.format !== 'raw' || image.backing) {
    throw new VmimgError('UNSUPPORTED_OPTION', `Read-write virtio-blk needs a raw image; '${image.filename}' is ${image.format} (serve it read-only instead)`, { format: image.format });
  }
  if (!image.storage.writable) {
    throw new VmimgError('UNSUPPORTED_OPTION', `'${image.filename}' was opened read-only`, { filename: image.filename });
  }
  return storageBackend(image.storage, image.virtualSize, new ChainReader([image]));
}

/** Read-write disk straight over a Storage of `size` bytes (reads zero-fill past its end). */
export function storageBackend(storage: Storage, size: number, reader?: ChainReader): BlockBackend {
  return {
    size,
    readOnly: !storage.writable,
    readInto: (offset, target) => (reader ? reader.readInto(offset, target) : storage.readInto(offset, target)),
    write: (offset, data) => storage.write(offset, data),
    flush: () => storage.flush(),
  };
}

/** A disk in host memory (the array is used, not copied). */
export function memoryBackend(bytes: Uint8Array, options: { readOnly?: boolean } = {}): BlockBackend {
  return {
    size: bytes.length,
    readOnly: options.readOnly ?? false,
    async readInto(offset, target) {
      target.set(bytes.subarray(offset, offset + target.length));
    },
    async write(offset, data) {
      bytes.set(data, offset);
    },
    async flush() {},
  };
}
