/**
 * Storing persistent dirty bitmaps in a qcow2 image (spec "Bitmaps extension", "Bitmap
 * directory", "Bitmap table"), laid out as QEMU 7.2's qcow2_store_persistent_dirty_bitmaps()
 * does for bitmaps it creates:
 *
 * - per bitmap, in order: one data cluster for each cluster of bitmap bytes with a bit set
 *   (zero-padded past the bitmap's end), then its table (ceil(bitmap bytes / cluster size)
 *   entries, cluster-aligned); a table entry is the data cluster's offset, or 0 for a cluster of
 *   bitmap bytes that are all zero (QEMU never writes the "all ones" entry);
 * - then the directory: one entry per bitmap (table offset and size, flags = "auto" for an
 *   enabled bitmap, type 1, granularity bits, name), each padded to 8 bytes, cluster-aligned;
 * - the caller puts the extension (count, directory size and offset) in the header and sets the
 *   "bitmaps" autoclear bit.
 *
 * The limits are QEMU's (check_constraints_on_bitmap, store_bitmap_data), with its messages.
 */
import { VmimgError } from '../../util/errors.js';
import type { BitmapToStore } from '../writer.js';
import { bitmapGeometry } from './bitmap-data.js';
import {
  BITMAP_FLAG_AUTO,
  directoryEntrySize,
  encodeDirectoryEntry,
  MAX_BITMAP_DIRECTORY_SIZE,
  MAX_BITMAPS,
  MAX_GRANULARITY_BITS,
  MAX_NAME_SIZE,
  MAX_PHYS_SIZE,
  MAX_TABLE_ENTRIES,
  MIN_GRANULARITY_BITS,
  type BitmapsExtension,
} from './bitmaps.js';

/** Where bitmap clusters go: the writer's cluster allocator and its in-order appender. */
export interface BitmapSpace {
  /** Allocates `n` contiguous whole clusters (refcount 1); returns the byte offset. */
  allocClusters(n: number): number | Promise<number>;
  append(at: number, data: Uint8Array): Promise<void>;
}

/** Bitmap bytes read from the source at once (whole clusters of the target). */
const READ_BYTES = 1024 * 1024;

function cannotStore(b: BitmapToStore, file: string, why: string): VmimgError {
  return new VmimgError('UNSUPPORTED_OPTION', `Failed to create bitmap ${b.name}: Can't make bitmap '${b.name}' persistent in '${file}': ${why}`, {
    bitmap: b.name,
    granularity: b.granularity,
  });
}

/**
 * check_constraints_on_bitmap() and the count/directory caps, before anything is written;
 * returns the directory size of `bitmaps`.
 */
export function checkConstraints(bitmaps: readonly BitmapToStore[], virtualSize: number, clusterSize: number, file: string): number {
  if (bitmaps.length > MAX_BITMAPS) throw new VmimgError('UNSUPPORTED_OPTION', 'Too many persistent bitmaps', { count: bitmaps.length });
  let directorySize = 0;
  for (const b of bitmaps) {
    const bits = Math.log2(b.granularity);
    if (!Number.isInteger(bits) || bits > MAX_GRANULARITY_BITS) throw cannotStore(b, file, `Granularity exceeds maximum (${2 ** MAX_GRANULARITY_BITS} bytes)`);
    if (bits < MIN_GRANULARITY_BITS) throw cannotStore(b, file, `Granularity is under minimum (${2 ** MIN_GRANULARITY_BITS} bytes)`);
    const { bytes, tableEntries } = bitmapGeometry(virtualSize, b.granularity, clusterSize);
    if (BigInt(bytes) > MAX_PHYS_SIZE || bytes > MAX_TABLE_ENTRIES * clusterSize) throw cannotStore(b, file, 'Too much space will be occupied by the bitmap. Use larger granularity');
    const nameBytes = storedName(b).length;
    if (nameBytes > MAX_NAME_SIZE) throw cannotStore(b, file, `Name length exceeds maximum (${MAX_NAME_SIZE} characters)`);
    if (BigInt(tableEntries * clusterSize) > MAX_PHYS_SIZE) throw new VmimgError('UNSUPPORTED_OPTION', `Bitmap '${b.name}' is too big`, { bitmap: b.name });
    directorySize += directoryEntrySize(nameBytes);
  }
  if (directorySize > MAX_BITMAP_DIRECTORY_SIZE) throw new VmimgError('UNSUPPORTED_OPTION', 'Bitmap directory is too large', { directorySize });
  return directorySize;
}

/** The name's bytes: the source's own (QEMU copies a name byte for byte, UTF-8 or not). */
function storedName(b: BitmapToStore): Uint8Array {
  return b.nameBytes ?? new TextEncoder().encode(b.name);
}

function isZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** One bitmap's data clusters and table (store_bitmap); returns the table's offset and entry count. */
export async function storeBitmapData(b: BitmapToStore, virtualSize: number, cs: number, space: BitmapSpace): Promise<{ offset: number; entries: number }> {
  const { bytes, tableEntries } = bitmapGeometry(virtualSize, b.granularity, cs);
  const table = new Uint8Array(tableEntries * 8);
  const tv = new DataView(table.buffer);
  const step = Math.max(cs, READ_BYTES - (READ_BYTES % cs));
  const content = await b.load();
  for (let start = 0; start < bytes; start += step) {
    const chunk = await content.read(start, Math.min(step, bytes - start));
    for (let at = 0; at < chunk.length; at += cs) {
      const part = chunk.subarray(at, Math.min(at + cs, chunk.length));
      if (isZero(part)) continue;
      const host = await space.allocClusters(1);
      tv.setBigUint64(((start + at) / cs) * 8, BigInt(host));
      // A short last part is padded to the whole cluster (the appender copies what it stages).
      await space.append(host, part.length === cs ? part : padded(part, cs));
    }
  }
  const offset = await space.allocClusters(Math.ceil(table.length / cs));
  await space.append(offset, table);
  return { offset, entries: tableEntries };
}

function padded(part: Uint8Array, cs: number): Uint8Array {
  const out = new Uint8Array(cs);
  out.set(part);
  return out;
}

/**
 * Writes `bitmaps` for an image of `virtualSize` bytes and `clusterSize`; returns the extension
 * to record, or undefined when there are none (no extension, no autoclear bit).
 */
export async function storeBitmaps(bitmaps: readonly BitmapToStore[], virtualSize: number, clusterSize: number, file: string, space: BitmapSpace): Promise<BitmapsExtension | undefined> {
  if (bitmaps.length === 0) return undefined;
  const directorySize = checkConstraints(bitmaps, virtualSize, clusterSize, file);
  const dir = new Uint8Array(directorySize);
  let at = 0;
  for (const b of bitmaps) {
    const { offset, entries } = await storeBitmapData(b, virtualSize, clusterSize, space);
    at = encodeDirectoryEntry(dir, at, {
      tableOffset: BigInt(offset),
      tableEntries: entries,
      flags: b.enabled ? BITMAP_FLAG_AUTO : 0,
      granularityBits: Math.log2(b.granularity),
      nameBytes: storedName(b),
    });
  }
  const directoryOffset = await space.allocClusters(Math.ceil(directorySize / clusterSize));
  await space.append(directoryOffset, dir);
  return { count: bitmaps.length, directoryOffset: BigInt(directoryOffset), directorySize: BigInt(directorySize) };
}
