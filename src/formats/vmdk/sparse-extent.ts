/**
 * Grain lookup in one sparse extent: the two-level grain directory (GD, QEMU's "L1") and grain
 * tables (GT, "L2") of VMware "Virtual Disk Format 5.0" ("Hosted Sparse Extent" — grain
 * directory and grain tables) and of the ESX COWD extent, answered the way QEMU 7.2's
 * get_cluster_offset answers it (block/vmdk.c):
 *
 *   GD index = sector / l1EntrySectors     (l1EntrySectors = GTEs per GT × grain, in 32 bits)
 *   GT index = (sector / grain) mod GTEs per GT
 *   GD entry 0 or GT entry 0            → unallocated (reads from the parent, or zeros)
 *   GT entry 1 with the zeroed-grain flag → a zeroed grain (reads as zeros, hides the parent)
 *   any other GT entry e                → the grain at byte e × 512 of the extent file
 *   GD index ≥ GD size                  → an I/O error in QEMU (CORRUPT_IMAGE here)
 *
 * In a compressed extent (streamOptimized) a grain is a zlib stream; with the marker flag it is
 * preceded by a 12-byte grain marker {lba u64, size u32} whose size QEMU requires to be in
 * 1..2 × grain bytes. Every table is read on demand, in bounded pieces: the GD in 64 KiB chunks
 * and GTs one at a time, both through small LRU caches; a table (or its part) past the end of
 * the file reads as zeros without being read, as QEMU's file driver returns zeros there.
 */
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import { SECTOR_SIZE } from '../../util/units.js';
import type { Extent } from '../image.js';

/** Where one sparse extent keeps its tables and how to read them (all in 512-byte sectors unless named). */
export interface SparseGeometry {
  /** Extent size in sectors (header capacity, COWD disk sectors). */
  capacitySectors: number;
  grainSectors: number;
  /** Grain table entries per grain table. */
  gtesPerGt: number;
  /** Sectors covered by one GD entry, as QEMU stores it (uint32, never 0). */
  l1EntrySectors: number;
  /** GD entries. */
  l1Size: number;
  /** Byte offset of the GD in the extent file (may lie past its end). */
  l1OffsetBytes: number;
  /** Byte offset of the redundant GD (0: none), which QEMU keeps for writes only. */
  rgdOffsetBytes: number;
  compressed: boolean;
  hasMarker: boolean;
  zeroGrain: boolean;
  /** Fixed metadata of the file besides the tables (header, embedded descriptor, footer), for check. */
  metadata: MetadataRegion[];
  /** What the write path needs to know about the extent's header (write.ts decides from it). */
  header: SparseHeaderFacts;
}

/** The header facts that decide whether (and where) an extent may be written. */
export interface SparseHeaderFacts {
  /** 'vmdk4' (KDMV) or 'cowd' (ESX vmfsSparse). */
  magic: 'vmdk4' | 'cowd';
  /** VMDK4 header version (0 for COWD). */
  version: number;
  /** VMDK4 overHead: sectors before the first grain, where every table lies (0 for COWD). */
  overheadSectors: number;
  /** The header's gdOffset is GD_AT_END (the tables are described by a footer). */
  gdAtEnd: boolean;
}

/** A byte range of an extent file holding metadata. */
export interface MetadataRegion {
  offset: number;
  length: number;
  what: string;
}

/** GT entry value meaning "zeroed grain" (with the zeroed-grain flag). */
export const GTE_ZEROED = 1;
/** Bytes of a grain marker before the compressed data. */
export const GRAIN_MARKER_BYTES = 12;

const L1_CHUNK_ENTRIES = 16384;
const L1_CACHE_CHUNKS = 64;
const GT_CACHE_TABLES = 256;
const MARKER_WINDOW = 64 * 1024;

interface GrainTable {
  entries: Uint32Array;
  allZero: boolean;
}

const ZERO_TABLE: GrainTable = { entries: new Uint32Array(0), allZero: true };

/** What one grain of the extent is. */
export type GrainState =
  | { kind: 'unallocated' }
  | { kind: 'zero' }
  /** `sector`: the GT entry (grain start in the extent file, in sectors). */
  | { kind: 'allocated'; sector: number };

/** A grain's state; `skipTo` when the whole run up to that extent sector is unallocated. */
export type GrainLookup = GrainState & { skipTo?: number };

const UNALLOCATED: GrainLookup = { kind: 'unallocated' };
const ZEROED: GrainLookup = { kind: 'zero' };

export class SparseExtent {
  readonly grainBytes: number;
  readonly capacityBytes: number;
  private readonly l1Cache = new Map<number, Uint32Array>();
  private readonly gtCache = new Map<number, GrainTable>();
  private markerWindow: { offset: number; bytes: Uint8Array } | undefined;
  /** Counts the write path's changes (grow, noteGte), so reads racing them are retried. */
  private writes = 0;

  constructor(
    readonly storage: Storage,
    /** The file's length (moved on by grow() as the write path appends grains). */
    public fileLength: number,
    readonly geometry: SparseGeometry,
  ) {
    this.grainBytes = geometry.grainSectors * SECTOR_SIZE;
    this.capacityBytes = geometry.capacitySectors * SECTOR_SIZE;
  }

  /**
   * The write path appended to the file up to `length` bytes: tables there no longer read as
   * zeros, and the marker window (which may hold zeros read past the old end) is dropped.
   */
  grow(length: number): void {
    if (length > this.fileLength) this.fileLength = length;
    this.markerWindow = undefined;
    this.writes++;
  }

  /** The write path set entry `index` of the grain table at `gtSector` to `value`: keeps the cache true. */
  noteGte(gtSector: number, index: number, value: number): void {
    this.writes++;
    const gt = this.gtCache.get(gtSector);
    if (!gt || gt === ZERO_TABLE) return;
    gt.entries[index] = value;
    if (value !== 0) gt.allZero = false;
  }

  // Lookups run synchronously on cached tables and return a promise only when a table must be
  // read first: a map or check visits every grain, and an await per grain dominates its cost.

  /** The cached GD chunk (its LRU position refreshed), or undefined. */
  private cachedChunk(chunk: number): Uint32Array | undefined {
    const table = this.l1Cache.get(chunk);
    if (table) {
      this.l1Cache.delete(chunk);
      this.l1Cache.set(chunk, table);
    }
    return table;
  }

  private async loadChunk(chunk: number): Promise<void> {
    const first = chunk * L1_CHUNK_ENTRIES;
    const count = Math.max(0, Math.min(L1_CHUNK_ENTRIES, this.geometry.l1Size - first));
    const table = await readU32Table(this.storage, this.fileLength, this.geometry.l1OffsetBytes + first * 4, count);
    if (this.l1Cache.size >= L1_CACHE_CHUNKS) this.l1Cache.delete(this.l1Cache.keys().next().value!);
    this.l1Cache.set(chunk, table);
  }

  /** The cached grain table at `sector` (one past the end of the file is all zeros, never read), or undefined. */
  private cachedTable(sector: number): GrainTable | undefined {
    if (sector * SECTOR_SIZE >= this.fileLength) return ZERO_TABLE;
    const gt = this.gtCache.get(sector);
    if (gt) {
      this.gtCache.delete(sector);
      this.gtCache.set(sector, gt);
    }
    return gt;
  }

  private async loadTable(sector: number): Promise<void> {
    let entries: Uint32Array;
    // A write that lands while the table is read may not be in what was read: read it again.
    for (let gen = -1; gen !== this.writes; ) {
      gen = this.writes;
      entries = await readU32Table(this.storage, this.fileLength, sector * SECTOR_SIZE, this.geometry.gtesPerGt);
    }
    entries = entries!;
    if (this.gtCache.size >= GT_CACHE_TABLES) this.gtCache.delete(this.gtCache.keys().next().value!);
    this.gtCache.set(sector, { entries, allZero: entries.every((e) => e === 0) });
  }

  /** The GD entry `index` (< l1Size): a GT's sector, or 0. */
  async gdEntry(index: number): Promise<number> {
    const chunk = Math.floor(index / L1_CHUNK_ENTRIES);
    let table = this.cachedChunk(chunk);
    if (!table) {
      await this.loadChunk(chunk);
      table = this.cachedChunk(chunk)!;
    }
    return table[index - chunk * L1_CHUNK_ENTRIES] ?? 0;
  }

  /** The grain table at `sector` (a non-zero GD entry). */
  async grainTable(sector: number): Promise<GrainTable> {
    let gt = this.cachedTable(sector);
    if (!gt) {
      await this.loadTable(sector);
      gt = this.cachedTable(sector)!;
    }
    return gt;
  }

  /**
   * The first GD index in (index, limit) whose entry names a grain table that starts inside
   * the file, or `limit`: every entry before it is 0 or names a table that reads as zeros.
   * Scans the directory's chunks directly, so long unallocated runs cost no table lookups.
   */
  nextLiveL1(index: number, limit: number): number | Promise<number> {
    const fileSectors = this.fileLength / SECTOR_SIZE;
    for (let i = index + 1; i < limit; ) {
      const chunk = Math.floor(i / L1_CHUNK_ENTRIES);
      const first = chunk * L1_CHUNK_ENTRIES;
      const table = this.cachedChunk(chunk);
      if (!table) return this.loadChunk(chunk).then(() => this.nextLiveL1(i - 1, limit));
      const stop = Math.min(limit, first + table.length);
      for (; i < stop; i++) {
        const gt = table[i - first]!;
        if (gt !== 0 && gt < fileSectors) return i;
      }
      if (table.length < L1_CHUNK_ENTRIES) return limit;
    }
    return limit;
  }

  /** GD index of a sector of this extent; throws where QEMU's lookup fails (index ≥ GD size). */
  l1IndexOf(sector: number): number {
    const index = Math.floor(sector / this.geometry.l1EntrySectors);
    if (index >= this.geometry.l1Size) {
      throw new VmimgError('CORRUPT_IMAGE', `vmdk extent '${this.storage.name}': sector ${sector} lies beyond the grain directory (${this.geometry.l1Size} entries of ${this.geometry.l1EntrySectors} sectors)`, {
        sector,
        l1Size: this.geometry.l1Size,
      });
    }
    return index;
  }

  /** First extent sector with a GD index above `l1Index` (the end of a GD entry's coverage). */
  nextL1Boundary(l1Index: number): number {
    return (l1Index + 1) * this.geometry.l1EntrySectors;
  }

  /**
   * The state of the grain holding `sector` (an extent sector below `endSector`, the end of the
   * caller's range), or, when the whole GD entry around it is unallocated (entry 0, a grain
   * table past the end of the file or all zeros), `{ kind: 'unallocated' }` with `skipTo` set
   * to the first sector past the run of such entries (at most the GD entry holding endSector−1).
   */
  grainAt(sector: number, endSector: number): GrainLookup | Promise<GrainLookup> {
    const l1Index = this.l1IndexOf(sector);
    const chunkIndex = Math.floor(l1Index / L1_CHUNK_ENTRIES);
    const chunk = this.cachedChunk(chunkIndex);
    if (!chunk) return this.loadChunk(chunkIndex).then(() => this.grainAt(sector, endSector));
    const gtSector = chunk[l1Index - chunkIndex * L1_CHUNK_ENTRIES] ?? 0;
    let gt: GrainTable | undefined;
    if (gtSector !== 0) {
      gt = this.cachedTable(gtSector);
      if (!gt) return this.loadTable(gtSector).then(() => this.grainAt(sector, endSector));
    }
    if (!gt || gt.allZero) {
      const limit = Math.min(this.geometry.l1Size, Math.floor((endSector - 1) / this.geometry.l1EntrySectors) + 1);
      const next = this.nextLiveL1(l1Index, limit);
      const skip = (n: number): GrainLookup => ({ kind: 'unallocated', skipTo: this.nextL1Boundary(n - 1) });
      return typeof next === 'number' ? skip(next) : next.then(skip);
    }
    const gte = gt.entries[Math.floor(sector / this.geometry.grainSectors) % this.geometry.gtesPerGt]!;
    if (gte === 0) return UNALLOCATED;
    if (gte === GTE_ZEROED && this.geometry.zeroGrain) return ZEROED;
    return { kind: 'allocated', sector: gte };
  }

  /**
   * Appends the extents of [rel, rel+length) (bytes within this extent) to `out`, at guest
   * offset `base` + rel. Adjacent pieces of one kind merge (data only when contiguous on disk).
   */
  async map(rel: number, length: number, base: number, out: Extent[]): Promise<void> {
    const end = rel + length;
    for (let pos = rel; pos < end; ) {
      const sector = Math.floor(pos / SECTOR_SIZE);
      const grain = Math.floor(sector / this.geometry.grainSectors);
      const grainStart = grain * this.grainBytes;
      let n = Math.min(grainStart + this.grainBytes, end) - pos;
      let state = this.grainAt(sector, Math.ceil(end / SECTOR_SIZE));
      if (state instanceof Promise) state = await state;
      if (state.skipTo !== undefined) n = Math.min(state.skipTo * SECTOR_SIZE, end) - pos;
      const start = base + pos;
      if (state.kind === 'unallocated' || state.kind === 'zero') {
        push(out, { kind: state.kind, start, length: n });
      } else if (!this.geometry.compressed) {
        push(out, { kind: 'data', start, length: n, storage: this.storage, offset: state.sector * SECTOR_SIZE + (pos - grainStart) });
      } else {
        const unitLength = Math.min(this.grainBytes, this.capacityBytes - grainStart);
        const { offset, compressedLength } = await this.compressedGrain(state.sector);
        out.push({ kind: 'compressed', start, length: n, storage: this.storage, offset, compressedLength, codec: 'zlib', unitStart: base + grainStart, unitLength });
      }
      pos += n;
    }
  }

  /**
   * Where the zlib stream of the compressed grain at `sector` lies. With markers, the marker's
   * size must be 1..2 × grain bytes (QEMU fails the read otherwise): an invalid size gives a
   * zero-length stream, which fails to decode when the grain is read, as in QEMU, while map
   * still reports the grain. Without markers QEMU decodes one grain's worth of bytes.
   */
  async compressedGrain(sector: number): Promise<{ offset: number; compressedLength: number }> {
    const at = sector * SECTOR_SIZE;
    if (!this.geometry.hasMarker) return { offset: at, compressedLength: this.grainBytes };
    const size = await this.markerSize(at);
    const valid = size > 0 && size <= 2 * this.grainBytes;
    return { offset: at + GRAIN_MARKER_BYTES, compressedLength: valid ? size : 0 };
  }

  /** The size field of the grain marker at byte `at` (zeros past the end of the file). */
  markerSize(at: number): number | Promise<number> {
    const w = this.markerWindow;
    if (w && at >= w.offset && at + GRAIN_MARKER_BYTES <= w.offset + w.bytes.length) {
      return new DataView(w.bytes.buffer, w.bytes.byteOffset + (at - w.offset) + 8, 4).getUint32(0, true);
    }
    const offset = at - (at % SECTOR_SIZE);
    const read = offset >= this.fileLength ? Promise.resolve(new Uint8Array(MARKER_WINDOW)) : this.storage.read(offset, MARKER_WINDOW);
    const gen = this.writes;
    return read.then((bytes) => {
      // A grain appended while the window was read may be missing from it: read again.
      if (gen !== this.writes) return this.markerSize(at);
      this.markerWindow = { offset, bytes };
      return this.markerSize(at);
    });
  }
}

function push(out: Extent[], e: Extent): void {
  const prev = out[out.length - 1];
  if (prev && prev.kind === e.kind && prev.start + prev.length === e.start) {
    if (e.kind === 'unallocated' || e.kind === 'zero') {
      prev.length += e.length;
      return;
    }
    if (e.kind === 'data' && prev.kind === 'data' && prev.storage === e.storage && prev.offset + prev.length === e.offset) {
      prev.length += e.length;
      return;
    }
  }
  out.push(e);
}

/** Reads `count` little-endian u32 entries at byte `offset`; the part past `fileLength` is zeros. */
export async function readU32Table(storage: Storage, fileLength: number, offset: number, count: number): Promise<Uint32Array> {
  const out = new Uint32Array(count);
  const inFile = Math.max(0, Math.min(count * 4, fileLength - offset));
  if (inFile <= 0) return out;
  const bytes = await storage.read(offset, inFile);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i * 4 + 4 <= inFile; i++) out[i] = view.getUint32(i * 4, true);
  return out;
}
