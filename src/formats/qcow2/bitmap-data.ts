/**
 * The content of a persistent dirty bitmap in a qcow2 image (spec "Bitmaps extension": "Bitmap
 * table" and "Bitmap data"), read as QEMU 7.2 loads it (block/qcow2-bitmap.c load_bitmap):
 *
 * - the whole table is rejected when any entry is invalid (reserved bits, an "all ones" flag
 *   with an offset, an unaligned offset: check_table_entry), and when it does not have exactly
 *   the entries the bitmap needs (ceil(bitmap bytes / cluster size), load_bitmap_data);
 * - entry i covers bitmap bytes [i × cluster size, (i+1) × cluster size): 0 reads as zeros,
 *   1 ("all ones", no data cluster) as ones, otherwise the data cluster at its offset;
 * - bits past the end of the disk read as 0 (vmimg clears them; QEMU keeps any such bits of the
 *   last 64-bit word of a crafted image).
 *
 * An inconsistent (in_use) bitmap is never read: QEMU skips its table.
 */
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import type { BitmapBits } from '../types.js';
import type { BitmapEntry } from './bitmaps.js';
import { readAt, view } from './io.js';
import { entryOffset, readWord } from './l2.js';

/** Table entry value standing for "all ones" (spec: bit 0 with offset 0). */
const ALL_ONES = -1;

/** Bits, bytes and bitmap table entries of a bitmap of `granularity` over `virtualSize` bytes. */
export function bitmapGeometry(virtualSize: number, granularity: number, clusterSize: number): { bits: number; bytes: number; tableEntries: number } {
  const bits = Math.ceil(virtualSize / granularity);
  const bytes = Math.ceil(bits / 8);
  return { bits, bytes, tableEntries: Math.ceil(bytes / clusterSize) };
}

function bad(file: string, message: string, bitmap: string): VmimgError {
  return new VmimgError('CORRUPT_IMAGE', `qcow2 image '${file}': ${message}`, { file, bitmap });
}

/**
 * Loads bitmap `e`'s table and returns its content. The directory checks (readBitmapDirectory)
 * bound the table to 512 MiB of bitmap data, so at most 2^20 entries (8 MiB) are read.
 */
export async function loadBitmapBits(storage: Storage, file: string, e: BitmapEntry, clusterSize: number, virtualSize: number): Promise<BitmapBits> {
  if (e.tableEntries * clusterSize > 0x20000000) throw bad(file, `Bitmap '${e.name}' doesn't satisfy the constraints`, e.name);
  const geometry = bitmapGeometry(virtualSize, 2 ** e.granularityBits, clusterSize);
  const raw = view(await readAt(storage, e.tableOffset, e.tableEntries * 8));
  const table = new Float64Array(e.tableEntries);
  for (let i = 0; i < e.tableEntries; i++) {
    const w = readWord(raw, i * 8);
    const offset = entryOffset(w);
    const reserved = (w.hi & 0xff000000) !== 0 || (w.lo & 0x1fe) !== 0;
    if (reserved || (offset !== 0 && ((w.lo & 1) !== 0 || offset % clusterSize !== 0))) {
      throw bad(file, `Could not read bitmap_table table from image for bitmap '${e.name}': Invalid argument`, e.name);
    }
    table[i] = offset !== 0 ? offset : (w.lo & 1) !== 0 ? ALL_ONES : 0;
  }
  if (geometry.tableEntries !== e.tableEntries) throw bad(file, `Could not read bitmap '${e.name}' from image: Invalid argument`, e.name);

  return {
    bits: geometry.bits,
    async read(start: number, length: number): Promise<Uint8Array> {
      const out = new Uint8Array(length);
      const end = Math.min(start + length, geometry.bytes);
      for (let pos = start; pos < end; ) {
        const i = Math.floor(pos / clusterSize);
        const inCluster = pos - i * clusterSize;
        let n = Math.min(end - pos, clusterSize - inCluster);
        const entry = table[i]!;
        if (entry === ALL_ONES) {
          out.fill(0xff, pos - start, pos - start + n);
        } else if (entry !== 0) {
          // Data clusters laid out back to back on the host are read at once.
          let j = i + 1;
          while (pos + n < end && table[j] === entry + (j - i) * clusterSize) {
            n += Math.min(end - pos - n, clusterSize);
            j++;
          }
          out.set(await readAt(storage, entry + inCluster, n), pos - start);
        }
        pos += n;
      }
      // Bits at or past `bits`: none in whole bytes after the last, none in its high part.
      const lastByte = geometry.bits >> 3;
      if (geometry.bits % 8 !== 0 && lastByte >= start && lastByte < start + length) {
        out[lastByte - start] = out[lastByte - start]! & ((1 << geometry.bits % 8) - 1);
      }
      if (end < start + length) out.fill(0, Math.max(0, end - start));
      return out;
    },
  };
}
