/**
 * The facts an opened qcow2 image is read with (derived once from the validated header, spec
 * "Header" and "Cluster mapping"), and bounded, cached access to its L1 and L2 tables.
 *
 * Contract: the L1 table is never loaded whole; it is read in pages of L1_PAGE entries, and L2
 * tables in slices of at most SLICE_BYTES, both through byte-bounded LRUs. Every offset used
 * here comes from a validated header (L1 offset aligned, size ≤ 32 MiB) or is checked by the
 * caller before use (L2 table alignment).
 */
import type { Storage } from '../../storage/types.js';
import type { VmimgError } from '../../util/errors.js';
import type { CompressionCodec } from '../image.js';
import type { BitmapsExtension } from './bitmaps.js';
import { L1E_SIZE } from './constants.js';
import { ByteLru, readAt, view } from './io.js';
import { readWord, type Word } from './l2.js';
import type { SnapshotEntry } from './snapshots.js';
import type { ValidatedHeader } from './validate.js';

export interface Qcow2State {
  /** The image's file name, for messages. */
  name: string;
  storage: Storage;
  vh: ValidatedHeader;
  version: number;
  clusterBits: number;
  clusterSize: number;
  /** Incompatible bit 4: 16-byte L2 entries with 32 subclusters each. */
  extendedL2: boolean;
  l2EntrySize: number;
  /** Entries per L2 table (cluster size / entry size). */
  l2Entries: number;
  /** Subclusters per cluster: 32 with extended L2, else 1. */
  subclusters: number;
  subclusterSize: number;
  refcountOrder: number;
  /** Guest bytes (header size rounded down to 512, ≤ 2^53). */
  virtualSize: number;
  /** Active L1 table; the offset may exceed 2^53 only for an image whose L1 lies past any file end. */
  l1Offset: bigint;
  l1Size: number;
  reftableOffset: bigint;
  /** Refcount table entries (clusters × cluster size / 8). */
  reftableEntries: number;
  /** Incompatible bit 2: guest data lives in an external data file. */
  hasDataFile: boolean;
  /** The data file name from the header extension, if present. */
  dataFileName?: string;
  /** Autoclear bit 1: the data file is a valid raw image on its own. */
  dataFileRaw: boolean;
  codec: CompressionCodec;
  snapshots: SnapshotEntry[];
  /** Bytes of the snapshot table as read (QEMU's snapshots_size). */
  snapshotsSize: number;
  bitmaps?: BitmapsExtension;
  /** Opened for check: why the snapshot table could not be read (reported by the check). */
  snapshotError?: VmimgError;
}

/** L1 entries per cached page (32 KiB). */
const L1_PAGE = 4096;
/** Largest L2 slice read at once. */
export const SLICE_BYTES = 64 * 1024;
/** Cache budgets. */
const L1_CACHE_BYTES = 2 * 1024 * 1024;
const L2_CACHE_BYTES = 8 * 1024 * 1024;

export interface L1Page {
  view: DataView;
  /** Index of the page's first entry. */
  first: number;
  /** One past the index of its last entry. */
  end: number;
}

export interface L2Slice {
  view: DataView;
  /** Index (in the L2 table) of the slice's first entry. */
  first: number;
  /** One past the index of its last entry. */
  end: number;
}

/** Cached, bounded reads of the active (or any) L1 table and of L2 tables. */
export class TableReader {
  private readonly l1Pages = new ByteLru<string>(L1_CACHE_BYTES);
  private readonly l2Slices = new ByteLru<string>(L2_CACHE_BYTES);
  readonly sliceEntries: number;
  private lastL1: { key: string; page: L1Page } | undefined;
  private lastL2: { key: string; slice: L2Slice } | undefined;

  constructor(private readonly s: Qcow2State) {
    this.sliceEntries = Math.min(s.l2Entries, SLICE_BYTES / s.l2EntrySize);
  }

  /** Entry `index` (< l1Size) of the L1 table at `l1Offset`. */
  async l1Entry(index: number, l1Offset: bigint = this.s.l1Offset, l1Size: number = this.s.l1Size): Promise<Word> {
    const page = await this.l1Page(index, l1Offset, l1Size);
    return readWord(page.view, (index - page.first) * L1E_SIZE);
  }

  /** The cached page of the L1 table holding entry `index`: entries [first, end). */
  async l1Page(index: number, l1Offset: bigint = this.s.l1Offset, l1Size: number = this.s.l1Size): Promise<L1Page> {
    const pageNo = Math.floor(index / L1_PAGE);
    const key = `${l1Offset}:${pageNo}`;
    if (this.lastL1?.key === key) return this.lastL1.page;
    const first = pageNo * L1_PAGE;
    const end = Math.min(first + L1_PAGE, l1Size);
    let bytes = this.l1Pages.get(key);
    if (!bytes) {
      bytes = await readAt(this.s.storage, l1Offset + BigInt(first * L1E_SIZE), (end - first) * L1E_SIZE);
      this.l1Pages.set(key, bytes);
    }
    const result = { view: view(bytes), first, end };
    this.lastL1 = { key, page: result };
    return result;
  }

  /** The slice of the L2 table at `l2Offset` (cluster-aligned) holding entry `index`. */
  async l2Slice(l2Offset: number, index: number): Promise<L2Slice> {
    const first = index - (index % this.sliceEntries);
    const key = `${l2Offset}:${first}`;
    if (this.lastL2?.key === key) return this.lastL2.slice;
    let bytes = this.l2Slices.get(key);
    if (!bytes) {
      bytes = await readAt(this.s.storage, l2Offset + first * this.s.l2EntrySize, this.sliceEntries * this.s.l2EntrySize);
      this.l2Slices.set(key, bytes);
    }
    const slice = { view: view(bytes), first, end: first + this.sliceEntries };
    this.lastL2 = { key, slice };
    return slice;
  }

  /**
   * Write-path hook: the L1 table at `l1Offset` now holds `bytes` (whole 8-byte entries) from
   * entry `index` on disk; cached pages are patched in place.
   */
  patchL1(l1Offset: bigint, index: number, bytes: Uint8Array): void {
    const n = bytes.length / L1E_SIZE;
    this.lastL1 = undefined;
    for (let i = index; i < index + n; ) {
      const pageNo = Math.floor(i / L1_PAGE);
      const pageEnd = Math.min(index + n, (pageNo + 1) * L1_PAGE);
      const cached = this.l1Pages.get(`${l1Offset}:${pageNo}`);
      if (cached) cached.set(bytes.subarray((i - index) * L1E_SIZE, (pageEnd - index) * L1E_SIZE), (i - pageNo * L1_PAGE) * L1E_SIZE);
      i = pageEnd;
    }
  }

  /**
   * Write-path hook: the L2 table at `l2Offset` now holds `bytes` (whole entries) from entry
   * `index` on disk; cached slices are patched in place (also those of a table that used to live
   * at that offset, so a reused cluster never answers with stale entries).
   */
  patchL2(l2Offset: number, index: number, bytes: Uint8Array): void {
    const es = this.s.l2EntrySize;
    const n = bytes.length / es;
    this.lastL2 = undefined;
    for (let i = index; i < index + n; ) {
      const first = i - (i % this.sliceEntries);
      const sliceEnd = Math.min(index + n, first + this.sliceEntries);
      const cached = this.l2Slices.get(`${l2Offset}:${first}`);
      if (cached) cached.set(bytes.subarray((i - index) * es, (sliceEnd - index) * es), (i - first) * es);
      i = sliceEnd;
    }
  }

  /** Drops cached tables (after a repair wrote to them). */
  invalidate(): void {
    this.lastL1 = undefined;
    this.lastL2 = undefined;
    this.l1Pages.clear();
    this.l2Slices.clear();
  }
}
