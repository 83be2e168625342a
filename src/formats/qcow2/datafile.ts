/**
 * qcow2 images with an external data file (spec docs/interop/qcow2.txt "External data file",
 * incompatible bit 2, header extension 0x44415441, autoclear bit 1 "raw external data"): what
 * creation plans for them, as qemu-img 7.2 does it.
 *
 * - Guest data never lives in the image file: a data cluster's host offset is an offset into
 *   the data file, and QEMU always allocates it at the guest offset (host == guest), raw or not.
 *   Data clusters have no refcounts; the image's refcounts cover its own metadata only.
 * - The data file is created (or an existing one truncated) next to the image and sized to the
 *   virtual size (qcow2_co_truncate resizes it along with the image).
 * - Preallocation (metadata, falloc, full; data_file_raw implies metadata) maps every cluster
 *   1:1: L2 tables are allocated first-fit after the L1 table, in guest order, and the data file
 *   is resized by preallocate_co(): when the size ends inside a (sub)cluster, copy-on-write
 *   writes zeros from the size to the end of that (sub)cluster, which grows the file there and
 *   leaves it no truncation to do (so falloc/full allocate nothing more); otherwise it is
 *   truncated to the size with the preallocation mode (file-posix writes the first block of a
 *   file grown from 0 with preallocation off).
 */
import type { Storage } from '../../storage/types.js';
import { firstBlockLength } from '../raw/driver.js';
import type { DataFileLayout } from '../types.js';
import { AUTOCLEAR_DATA_FILE_RAW, EXTL2_SUBCLUSTERS, INCOMPAT_DATA_FILE } from './constants.js';
import type { CreateParams } from './params.js';
import type { PreallocContext } from './prealloc.js';

/** Header feature bits an external data file adds. */
export function dataFileFeatures(p: CreateParams): { incompatible: bigint; autoclear: bigint } {
  if (p.dataFile === undefined) return { incompatible: 0n, autoclear: 0n };
  return { incompatible: INCOMPAT_DATA_FILE, autoclear: p.dataFileRaw ? AUTOCLEAR_DATA_FILE_RAW : 0n };
}

/**
 * Preallocation with a data file: every guest cluster of [0, length) maps to the same offset
 * in the data file (L2 entries with COPIED; with extended L2 all subclusters stay unallocated,
 * QEMU's "prealloc" allocations). Returns nothing: the image file grows by its L2 tables only.
 */
export function mapOntoDataFile(ctx: PreallocContext, length: number): void {
  const cs = ctx.clusterSize;
  for (let guest = 0; guest < length; guest += cs) {
    const { table, index } = ctx.tables.clusterTable(guest);
    table.entries[index] = guest;
  }
}

/** The data file qemu-img 7.2 leaves beside a new image. */
export function planDataFile(p: CreateParams, name: string): DataFileLayout {
  const size = Number(p.size);
  if (p.preallocation !== 'off') {
    const unit = p.extendedL2 ? p.clusterSize / EXTL2_SUBCLUSTERS : p.clusterSize;
    const end = Math.ceil(size / unit) * unit;
    if (end > size) return { name, length: end, writes: [{ offset: size, data: new Uint8Array(end - size) }], allocate: [] };
  }
  if (size === 0) return { name, length: 0, writes: [], allocate: [] };
  if (p.preallocation === 'falloc' || p.preallocation === 'full') {
    return { name, length: size, writes: [], allocate: [{ offset: 0, length: size, write: p.preallocation === 'full' }] };
  }
  return { name, length: size, writes: [{ offset: 0, data: new Uint8Array(firstBlockLength(size)) }], allocate: [] };
}

/** Encoded L2 table bytes: the entry mapping guest cluster 0 to data-file offset 0 needs COPIED set explicitly. */
export function markClusterZeroMapped(encodedFirstL2: Uint8Array): void {
  encodedFirstL2[0] = encodedFirstL2[0]! | 0x80;
}

const ZERO_CHUNK = 4 * 1024 * 1024;

/** Gives a new, empty data file the length and allocation create leaves it with (before convert writes guest data). */
export async function initDataFile(storage: Storage, layout: DataFileLayout): Promise<void> {
  await storage.truncate(layout.length);
  for (const range of layout.allocate) {
    if (!range.write && storage.allocate) {
      await storage.allocate(range.offset, range.length);
      continue;
    }
    const zeros = new Uint8Array(Math.min(ZERO_CHUNK, range.length));
    for (let at = 0; at < range.length; at += zeros.length) await storage.write(range.offset + at, zeros.subarray(0, Math.min(zeros.length, range.length - at)));
  }
  for (const w of layout.writes) await storage.write(w.offset, w.data);
}

/** Host block size for zero skipping (what qemu-img convert's zero detection and file systems use). */
const BLOCK = 4096;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

/**
 * Writes `data` at `offset` into a new data file, skipping the 4 KiB blocks (aligned to the
 * file) that are all zeros: the file reads zeros there already, and leaving them unwritten
 * keeps it as sparse as qemu-img convert leaves it.
 */
export async function writeSparse(storage: Storage, offset: number, data: Uint8Array): Promise<void> {
  let runStart = -1;
  const flush = async (end: number): Promise<void> => {
    if (runStart >= 0) await storage.write(offset + runStart, data.subarray(runStart, end));
    runStart = -1;
  };
  for (let at = 0; at < data.length; ) {
    const end = Math.min(data.length, at + BLOCK - ((offset + at) % BLOCK));
    const zero = Buffer.compare(data.subarray(at, end), ZERO_BLOCK.subarray(0, end - at)) === 0;
    if (zero) await flush(at);
    else if (runStart < 0) runStart = at;
    at = end;
  }
  await flush(data.length);
}
