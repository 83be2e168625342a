/**
 * Persistent dirty bitmaps of a qcow2 image opened for writing, kept the way QEMU 7.2 keeps them
 * (block/qcow2-bitmap.c, block/dirty-bitmap.c, block/io.c; spec "Bitmaps extension"):
 *
 * - open (qcow2_load_dirty_bitmaps): every bitmap that is not in use is loaded into memory (its
 *   table checked as load_bitmap does) and marked in use: the directory is rewritten in place
 *   while the header's "bitmaps" autoclear bit is clear (update_ext_header_and_dir_in_place). A
 *   process that dies from then on leaves the bitmaps in use, as QEMU's crash does. A bitmap that
 *   is in use already is inconsistent: not loaded, never written, left in the directory as it is.
 * - writes (bdrv_co_write_req_finish → bdrv_set_dirty): a write or write-zeroes of [o, o+n),
 *   n > 0, sets bits ⌊o/g⌋ … ⌊(o+n−1)/g⌋ of every enabled ("auto") loaded bitmap of granularity
 *   g (hbitmap_set); disabled bitmaps do not change.
 * - close (qcow2_store_persistent_dirty_bitmaps): when any bitmap is loaded or added, each one,
 *   in directory order then the added ones, gets new data clusters and a new table (layout of
 *   bitmap-store.ts), flags "auto" when enabled and in-use cleared; then a new directory (the
 *   inconsistent entries copied as they are), the header switched to it (update_ext_header_and_dir),
 *   then the old directory, and the old tables with their data clusters, freed.
 *
 * Bounds: the loaded and added bitmaps together hold at most MAX_LIVE_BYTES in memory (QEMU keeps
 * them in RAM too; a single bitmap is at most 512 MiB by the directory checks).
 */
import { VmimgError } from '../../util/errors.js';
import type { BitmapToStore } from '../writer.js';
import type { Allocator } from './alloc.js';
import { bitmapGeometry, loadBitmapBits } from './bitmap-data.js';
import { switchBitmapsHeader } from './bitmap-inplace.js';
import { checkConstraints, storeBitmapData, type BitmapSpace } from './bitmap-store.js';
import {
  BITMAP_FLAG_AUTO,
  BITMAP_FLAG_IN_USE,
  directoryEntrySize,
  encodeDirectoryEntry,
  forEachBitmapTableEntry,
  MAX_BITMAP_DIRECTORY_SIZE,
  MAX_BITMAPS,
  type BitmapEntry,
  type BitmapsExtension,
} from './bitmaps.js';
import { AUTOCLEAR_BITMAPS } from './constants.js';
import { readAt } from './io.js';
import type { Qcow2State } from './state.js';

/** Bitmap bytes held in memory at most (all bitmaps of one image together). */
export const MAX_LIVE_BYTES = 512 * 1024 * 1024;
/** Header offset of autoclear_features (u64, version 3). */
const HEADER_AUTOCLEAR = 88;

interface Live {
  /** The directory entry (updated when stored); undefined for a bitmap added in this session. */
  entry?: BitmapEntry;
  nameBytes: Uint8Array;
  granularity: number;
  enabled: boolean;
  /** The bit string (LSB first, as serialised on disk); undefined when inconsistent (in use at open). */
  bits?: Uint8Array;
}

/**
 * The memory the bitmaps of `entries` that would be loaded (those not in use) take, refused
 * (UNSUPPORTED_IMAGE) above MAX_LIVE_BYTES from the directory alone, before anything is read.
 */
export function checkLiveMemory(s: Qcow2State, entries: readonly BitmapEntry[]): number {
  let bytes = 0;
  for (const e of entries) {
    if ((e.flags & BITMAP_FLAG_IN_USE) !== 0) continue;
    bytes += bitmapGeometry(s.virtualSize, 2 ** e.granularityBits, s.clusterSize).bytes;
    if (bytes > MAX_LIVE_BYTES) {
      throw new VmimgError('UNSUPPORTED_IMAGE', `qcow2 image '${s.name}': its persistent bitmaps need more than ${MAX_LIVE_BYTES} bytes of memory to be kept up to date`, { file: s.name, bytes });
    }
  }
  return bytes;
}

export class LiveBitmaps {
  private constructor(
    private readonly s: Qcow2State,
    private readonly list: Live[],
    private bytes: number,
  ) {}

  /**
   * Loads the bitmaps of `entries` (the directory as opened) and marks the loaded ones in use
   * on disk. Fails (CORRUPT_IMAGE, nothing written) on a bitmap QEMU cannot load either.
   */
  static async open(s: Qcow2State, entries: BitmapEntry[], barrier: () => Promise<void>): Promise<LiveBitmaps> {
    const bytes = checkLiveMemory(s, entries);
    const list: Live[] = [];
    for (const e of entries) {
      const live: Live = { entry: e, nameBytes: e.nameBytes, granularity: 2 ** e.granularityBits, enabled: (e.flags & BITMAP_FLAG_AUTO) !== 0 };
      if ((e.flags & BITMAP_FLAG_IN_USE) === 0) {
        const content = await loadBitmapBits(s.storage, s.name, e, s.clusterSize, s.virtualSize);
        live.bits = await content.read(0, bitmapGeometry(s.virtualSize, live.granularity, s.clusterSize).bytes);
      }
      list.push(live);
    }
    const live = new LiveBitmaps(s, list, bytes);
    await live.markInUse(barrier);
    return live;
  }

  /** update_ext_header_and_dir_in_place with the in-use flag added to every loaded bitmap. */
  private async markInUse(barrier: () => Promise<void>): Promise<void> {
    const ext = this.s.bitmaps;
    const loaded = this.list.filter((b) => b.bits && b.entry);
    if (!ext || loaded.length === 0) return;
    const dir = await readAt(this.s.storage, ext.directoryOffset, Number(ext.directorySize));
    const v = new DataView(dir.buffer, dir.byteOffset, dir.byteLength);
    let at = 0;
    for (const b of this.list) {
      if (b.bits) v.setUint32(at + 12, b.entry!.flags | BITMAP_FLAG_IN_USE);
      at += directoryEntrySize(b.nameBytes.length);
    }
    const h = this.s.vh.header;
    await this.writeAutoclear(h.autoclearFeatures & ~AUTOCLEAR_BITMAPS);
    await barrier();
    await this.s.storage.write(Number(ext.directoryOffset), dir);
    await barrier();
    await this.writeAutoclear(h.autoclearFeatures | AUTOCLEAR_BITMAPS);
    await barrier();
    for (const b of loaded) b.entry!.flags |= BITMAP_FLAG_IN_USE;
  }

  private async writeAutoclear(value: bigint): Promise<void> {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, value);
    await this.s.storage.write(HEADER_AUTOCLEAR, bytes);
  }

  /** bdrv_set_dirty: guest bytes [offset, offset+length) were written, zeroed or discarded. */
  dirty(offset: number, length: number): void {
    if (length <= 0) return;
    for (const b of this.list) {
      if (!b.bits || !b.enabled) continue;
      setBits(b.bits, Math.floor(offset / b.granularity), Math.floor((offset + length - 1) / b.granularity));
    }
  }

  /**
   * Adds bitmaps to be stored at close (convert -n --bitmaps into an image with bitmaps), as
   * img_convert's convert_copy_bitmaps creates them: in reverse order, each refused when a bitmap
   * of its name exists ("Bitmap already exists"), the ones created before the refusal kept.
   * Their content is read now; the writes before this call do not dirty them.
   */
  async add(bitmaps: readonly BitmapToStore[]): Promise<void> {
    const s = this.s;
    const created: Live[] = [];
    try {
      for (const b of [...bitmaps].reverse()) {
        const nameBytes = b.nameBytes ?? new TextEncoder().encode(b.name);
        const all = [...this.list, ...created];
        if (all.some((x) => sameBytes(x.nameBytes, nameBytes))) {
          throw new VmimgError('INVALID_OPTION', `Failed to create bitmap ${b.name}: Bitmap already exists: ${b.name}`, { file: s.name, bitmap: b.name });
        }
        checkConstraints([b], s.virtualSize, s.clusterSize, s.name);
        const dirSize = [...all.map((x) => x.nameBytes), nameBytes].reduce((n, x) => n + directoryEntrySize(x.length), 0);
        if (all.length + 1 > MAX_BITMAPS || dirSize > MAX_BITMAP_DIRECTORY_SIZE) {
          throw new VmimgError('UNSUPPORTED_OPTION', `Failed to create bitmap ${b.name}: Can't make bitmap '${b.name}' persistent in '${s.name}': ${all.length + 1 > MAX_BITMAPS ? 'Maximum number of persistent bitmaps is already reached' : 'Not enough space in the bitmap directory'}`, { bitmap: b.name });
        }
        const n = bitmapGeometry(s.virtualSize, b.granularity, s.clusterSize).bytes;
        if (this.bytes + n > MAX_LIVE_BYTES) {
          throw new VmimgError('UNSUPPORTED_OPTION', `Failed to create bitmap ${b.name}: more than ${MAX_LIVE_BYTES} bytes of bitmaps to keep in memory`, { bitmap: b.name });
        }
        const bits = await (await b.load()).read(0, n);
        this.bytes += n;
        created.push({ nameBytes, granularity: b.granularity, enabled: b.enabled, bits });
      }
    } finally {
      // Stored in the order QEMU's list gives them: the last created first.
      this.list.push(...created.reverse());
    }
  }

  /** Whether close() has anything to write (QEMU's need_write). */
  get needsStore(): boolean {
    return this.list.some((b) => b.bits);
  }

  /** qcow2_store_persistent_dirty_bitmaps (release_stored): see the file comment. */
  async store(alloc: Allocator, barrier: () => Promise<void>): Promise<void> {
    const s = this.s;
    if (!this.needsStore) return;
    const cs = s.clusterSize;
    const space: BitmapSpace = { allocClusters: (n) => alloc.alloc(n), append: (at, data) => s.storage.write(at, data) };
    const stored = new Map<Live, { offset: number; entries: number }>();
    for (const b of this.list) {
      if (!b.bits) continue;
      const bits = b.bits;
      const source: BitmapToStore = {
        name: new TextDecoder().decode(b.nameBytes),
        granularity: b.granularity,
        enabled: b.enabled,
        load: async () => ({ bits: Math.ceil(s.virtualSize / b.granularity), read: async (start, length) => bits.slice(start, start + length) }),
      };
      stored.set(b, await storeBitmapData(source, s.virtualSize, cs, space));
    }
    const dirSize = this.list.reduce((n, b) => n + directoryEntrySize(b.nameBytes.length), 0);
    const dir = new Uint8Array(dirSize);
    let at = 0;
    for (const b of this.list) {
      const t = stored.get(b);
      at = encodeDirectoryEntry(dir, at, {
        tableOffset: t ? BigInt(t.offset) : b.entry!.tableOffset,
        tableEntries: t ? t.entries : b.entry!.tableEntries,
        flags: t ? (b.enabled ? BITMAP_FLAG_AUTO : 0) : b.entry!.flags,
        granularityBits: Math.log2(b.granularity),
        nameBytes: b.nameBytes,
      });
    }
    const dirOffset = await alloc.alloc(Math.ceil(dirSize / cs));
    await s.storage.write(dirOffset, dir);
    await alloc.writeDirty();
    if ((await s.storage.size()) < alloc.fileEnd) await s.storage.truncate(alloc.fileEnd);
    await barrier();

    const old = s.bitmaps;
    const ext: BitmapsExtension = { count: this.list.length, directoryOffset: BigInt(dirOffset), directorySize: BigInt(dirSize) };
    await switchBitmapsHeader(s, ext, barrier);

    // The old structures lost their references: directory, then each rewritten bitmap's clusters.
    if (old) await alloc.free(Number(old.directoryOffset), Math.ceil(Number(old.directorySize) / cs) * cs);
    for (const b of this.list) {
      const e = b.entry;
      if (!e || !stored.has(b)) continue;
      const data: number[] = [];
      await forEachBitmapTableEntry(s.storage, e, cs, (offset) => {
        if (offset) data.push(offset);
      });
      for (const offset of data) await alloc.free(offset, cs);
      await alloc.free(Number(e.tableOffset), Math.ceil((e.tableEntries * 8) / cs) * cs);
    }
    await alloc.writeDirty();

    for (const b of this.list) {
      const t = stored.get(b);
      if (!t) continue;
      const flags = b.enabled ? BITMAP_FLAG_AUTO : 0;
      if (b.entry) Object.assign(b.entry, { tableOffset: BigInt(t.offset), tableEntries: t.entries, flags });
    }
  }
}

/** Sets bits first..last (inclusive) of an LSB-first bit string. */
export function setBits(bits: Uint8Array, first: number, last: number): void {
  const a = first >> 3;
  const z = last >> 3;
  if (a === z) {
    bits[a]! |= (0xff << (first & 7)) & (0xff >> (7 - (last & 7)));
    return;
  }
  bits[a]! |= (0xff << (first & 7)) & 0xff;
  if (z > a + 1) bits.fill(0xff, a + 1, z);
  bits[z]! |= 0xff >> (7 - (last & 7));
}

function sameBytes(x: Uint8Array, y: Uint8Array): boolean {
  return x.length === y.length && x.every((v, i) => v === y[i]);
}
