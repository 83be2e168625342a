/**
 * Persistent dirty bitmaps (spec "Bitmaps extension" and "Bitmap directory"): the extension's
 * checks at open (qcow2_read_extensions), the directory with QEMU 7.2's per-entry constraints
 * (bitmap_list_load / check_dir_entry), and the clusters bitmaps occupy (for check).
 *
 * Bounds: at most 65535 bitmaps and a directory of at most 64 MiB (QCOW2_MAX_BITMAPS,
 * QCOW2_MAX_BITMAP_DIRECTORY_SIZE), each bitmap table at most 2^27 entries, read in chunks.
 */
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import { AUTOCLEAR_BITMAPS } from './constants.js';
import type { Qcow2Header } from './header.js';
import { readAt, view } from './io.js';
import { entryOffset, readWord } from './l2.js';

export const MAX_BITMAPS = 65535;
export const MAX_BITMAP_DIRECTORY_SIZE = 1024 * MAX_BITMAPS;
/** BME_MAX_TABLE_SIZE, BME_MAX_GRANULARITY_BITS, BME_MIN_GRANULARITY_BITS, BME_MAX_NAME_SIZE. */
export const MAX_TABLE_ENTRIES = 0x8000000;
/** BME_MAX_PHYS_SIZE: bytes of bitmap data one bitmap may occupy. */
export const MAX_PHYS_SIZE = 0x20000000n;
export const MAX_GRANULARITY_BITS = 31;
export const MIN_GRANULARITY_BITS = 9;
export const MAX_NAME_SIZE = 1023;
/** Directory entry flags (spec "Bitmap directory"). */
export const BITMAP_FLAG_IN_USE = 1;
export const BITMAP_FLAG_AUTO = 2;
/** Bytes of a directory entry before its name; entries are padded to a multiple of 8. */
export const BITMAP_DIR_ENTRY_SIZE = 24;

/** Bytes a directory entry with a `nameLength`-byte name and no extra data takes, padding included. */
export function directoryEntrySize(nameLength: number): number {
  return Math.ceil((BITMAP_DIR_ENTRY_SIZE + nameLength) / 8) * 8;
}

/** What a directory entry written by vmimg holds (type 1, dirty tracking; no extra data). */
export interface DirectoryEntryFields {
  tableOffset: bigint;
  tableEntries: number;
  flags: number;
  granularityBits: number;
  nameBytes: Uint8Array;
}

/** Writes one directory entry at `at` of `dir` (spec "Bitmap directory"); returns where the next one starts. */
export function encodeDirectoryEntry(dir: Uint8Array, at: number, e: DirectoryEntryFields): number {
  const dv = new DataView(dir.buffer, dir.byteOffset, dir.byteLength);
  dv.setBigUint64(at, e.tableOffset);
  dv.setUint32(at + 8, e.tableEntries);
  dv.setUint32(at + 12, e.flags);
  dir[at + 16] = 1; // type: dirty tracking bitmap
  dir[at + 17] = e.granularityBits;
  dv.setUint16(at + 18, e.nameBytes.length);
  dv.setUint32(at + 20, 0); // no extra data
  dir.set(e.nameBytes, at + BITMAP_DIR_ENTRY_SIZE);
  return at + directoryEntrySize(e.nameBytes.length);
}

export interface BitmapsExtension {
  count: number;
  directoryOffset: bigint;
  directorySize: bigint;
}

export interface BitmapEntry {
  name: string;
  /** The name as stored (UTF-8 is not checked; rewriting the directory keeps these bytes). */
  nameBytes: Uint8Array;
  tableOffset: bigint;
  tableEntries: number;
  flags: number;
  granularityBits: number;
}

function bad(name: string, message: string, details: Record<string, unknown> = {}): VmimgError {
  return new VmimgError('CORRUPT_IMAGE', `qcow2 image '${name}': ${message}`, { file: name, ...details });
}

/**
 * The bitmaps extension payload, or undefined when QEMU ignores it: without the autoclear bit a
 * program without bitmap support has modified the image and every bitmap is stale (QEMU warns).
 */
export function parseBitmapsExtension(name: string, header: Qcow2Header, data: Uint8Array): BitmapsExtension | undefined {
  if (data.length !== 24) throw bad(name, 'bitmaps_ext: Invalid extension length', { length: data.length });
  if ((header.autoclearFeatures & AUTOCLEAR_BITMAPS) === 0n) return undefined;
  const v = view(data);
  if (v.getUint32(4) !== 0) throw bad(name, 'bitmaps_ext: Reserved field is not zero');
  const count = v.getUint32(0);
  const directorySize = v.getBigUint64(8);
  const directoryOffset = v.getBigUint64(16);
  if (count > MAX_BITMAPS) {
    throw bad(name, `bitmaps_ext: Image has ${count} bitmaps, exceeding the QEMU supported maximum of ${MAX_BITMAPS}`, { count });
  }
  if (count === 0) throw bad(name, 'found bitmaps extension with zero bitmaps');
  if (directoryOffset % (1n << BigInt(header.clusterBits)) !== 0n) throw bad(name, 'bitmaps_ext: invalid bitmap directory offset');
  if (directorySize > BigInt(MAX_BITMAP_DIRECTORY_SIZE)) {
    throw bad(name, `bitmaps_ext: bitmap directory size (${directorySize}) exceeds the maximum supported size (${MAX_BITMAP_DIRECTORY_SIZE})`);
  }
  return { count, directoryOffset, directorySize };
}

/** bitmap_list_load(): the directory entries, each checked like check_dir_entry(). */
export async function readBitmapDirectory(storage: Storage, name: string, ext: BitmapsExtension, clusterSize: number, virtualSize: number): Promise<BitmapEntry[]> {
  const size = Number(ext.directorySize);
  if (size === 0) throw bad(name, 'Requested bitmap directory size is zero');
  const dir = await readAt(storage, ext.directoryOffset, size);
  const v = view(dir);
  const out: BitmapEntry[] = [];
  let at = 0;
  while (at < size) {
    if (at + BITMAP_DIR_ENTRY_SIZE > size) throw bad(name, 'Broken bitmap directory');
    if (out.length + 1 > ext.count) throw bad(name, 'More bitmaps found than specified in header extension');
    const nameSize = v.getUint16(at + 18);
    const extraSize = v.getUint32(at + 20);
    const next = at + Math.ceil((BITMAP_DIR_ENTRY_SIZE + nameSize + extraSize) / 8) * 8;
    if (next > size) throw bad(name, 'Broken bitmap directory');
    if (extraSize !== 0) throw bad(name, 'Bitmap extra data is not supported');
    const e: BitmapEntry = {
      tableOffset: v.getBigUint64(at),
      tableEntries: v.getUint32(at + 8),
      flags: v.getUint32(at + 12),
      granularityBits: dir[at + 17]!,
      name: new TextDecoder().decode(dir.subarray(at + BITMAP_DIR_ENTRY_SIZE, at + BITMAP_DIR_ENTRY_SIZE + nameSize)),
      nameBytes: dir.slice(at + BITMAP_DIR_ENTRY_SIZE, at + BITMAP_DIR_ENTRY_SIZE + nameSize),
    };
    const type = dir[at + 16]!;
    const physBytes = BigInt(e.tableEntries) * BigInt(clusterSize);
    const covered = (physBytes * 8n) << BigInt(Math.min(e.granularityBits, 63));
    const invalid =
      e.tableEntries === 0 ||
      e.tableOffset === 0n ||
      e.tableOffset % BigInt(clusterSize) !== 0n ||
      e.tableEntries > MAX_TABLE_ENTRIES ||
      e.granularityBits > MAX_GRANULARITY_BITS ||
      e.granularityBits < MIN_GRANULARITY_BITS ||
      (e.flags & ~(BITMAP_FLAG_IN_USE | BITMAP_FLAG_AUTO)) !== 0 ||
      nameSize > MAX_NAME_SIZE ||
      type !== 1 ||
      physBytes > MAX_PHYS_SIZE ||
      ((e.flags & BITMAP_FLAG_IN_USE) === 0 && BigInt(virtualSize) > covered);
    if (invalid) throw bad(name, `Bitmap '${e.name}' doesn't satisfy the constraints`, { bitmap: e.name });
    out.push(e);
    at = next;
  }
  if (out.length !== ext.count) throw bad(name, 'Less bitmaps found than specified in header extension');
  return out;
}

/** get_bitmap_info_flags(): "in-use" then "auto". */
export function bitmapFlagNames(flags: number): string[] {
  const out: string[] = [];
  if (flags & BITMAP_FLAG_IN_USE) out.push('in-use');
  if (flags & BITMAP_FLAG_AUTO) out.push('auto');
  return out;
}

/** Entries of a bitmap table per chunk read. */
const TABLE_CHUNK = 65536;

/**
 * Visits the non-zero entries of a bitmap table in order; `onEntry` gets the data cluster offset
 * (0 for none) or `undefined` for an invalid entry (reserved bits, "all ones" with an offset,
 * unaligned offset: check_table_entry).
 */
export async function forEachBitmapTableEntry(storage: Storage, e: BitmapEntry, clusterSize: number, onEntry: (offset: number | undefined) => void): Promise<void> {
  for (let first = 0; first < e.tableEntries; first += TABLE_CHUNK) {
    const n = Math.min(TABLE_CHUNK, e.tableEntries - first);
    const v = view(await readAt(storage, e.tableOffset + BigInt(first * 8), n * 8));
    for (let i = 0; i < n; i++) {
      const w = readWord(v, i * 8);
      const offset = entryOffset(w);
      const reserved = (w.hi & 0xff000000) !== 0 || (w.lo & 0x1fe) !== 0;
      if (reserved || (offset !== 0 && ((w.lo & 1) !== 0 || offset % clusterSize !== 0))) onEntry(undefined);
      else onEntry(offset);
    }
  }
}
