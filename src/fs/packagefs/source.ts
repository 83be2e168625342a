/**
 * The block source a packagefs reader reads through: a size and positional reads, nothing else,
 * so the same reader runs over a file, any container format through the backing chain, memory in
 * tests, or (later) the virtio-blk driver for `--via-virtio`.
 *
 * Contract: `read(offset, length)` resolves to exactly `length` bytes of [offset, offset+length),
 * which the caller guarantees lies within [0, size); length ≤ MAX_SOURCE_READ.
 */
import { openChain, type ImageChain } from '../../chain/open.js';
import type { ChainPolicy } from '../../chain/policy.js';
import { ChainReader } from '../../chain/read.js';
import type { Storage } from '../../storage/types.js';

export interface BlockSource {
  readonly size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** Largest single read the reader issues (metadata is read in chunks of at most this). */
export const MAX_SOURCE_READ = 16 * 1024 * 1024;

/** A BlockSource over bytes in memory (tests). */
export function memorySource(bytes: Uint8Array): BlockSource {
  return { size: bytes.length, read: async (offset, length) => bytes.slice(offset, offset + length) };
}

/** A BlockSource over a Storage (a raw file). */
export async function storageSource(storage: Storage): Promise<BlockSource> {
  return { size: await storage.size(), read: (offset, length) => storage.read(offset, length) };
}

/** A BlockSource over the guest view of an image chain (raw, qcow2, vmdk, vpc, vhdx, ...). */
export function chainSource(reader: ChainReader): BlockSource {
  return { size: reader.virtualSize, read: (offset, length) => reader.read(offset, length) };
}

/**
 * Opens the image file at `path` (format probed unless given) with its backing chain under
 * `policy`, as a BlockSource; close the returned chain when done.
 */
export async function openImageSource(path: string, options: { format?: string; policy: ChainPolicy }): Promise<{ source: BlockSource; chain: ImageChain }> {
  const chain = await openChain(path, { format: options.format, policy: options.policy });
  return { source: chainSource(new ChainReader(chain.layers)), chain };
}
