/**
 * The read side of the format contract (DESIGN.md "Image"): an opened image answers mapping
 * questions about its own layer with the one Extent union; the generic layers (src/chain,
 * src/ops) do read(), backing fall-through, decompression, alignment and splitting.
 *
 * Guest offsets and lengths are bytes as JS numbers; images whose virtual size exceeds 2^53
 * are refused at open (UNSUPPORTED_IMAGE).
 */
import type { Storage } from '../storage/types.js';
import type { QDict } from '../util/qjson.js';
import type { BitmapBits, FormatName, PersistentBitmap } from './types.js';
import type { BitmapToStore } from './writer.js';

export type CompressionCodec =
  /** qcow2 compression_type=zlib: raw deflate (no zlib header), window 2^12. */
  | 'qcow2-deflate'
  /** qcow2 compression_type=zstd: one or more zstd frames. */
  | 'zstd'
  /** vmdk streamOptimized grains: a zlib stream (RFC 1950). */
  | 'zlib';

/** One run of guest bytes [start, start+length) and where its content comes from, in this layer. */
export type Extent =
  /** Stored uncompressed: guest byte start+i is storage byte offset+i. */
  | { kind: 'data'; start: number; length: number; storage: Storage; offset: number }
  /**
   * Allocated in this layer and reads as zeros (qcow2 zero cluster, vhdx ZERO block, a hole in
   * a raw file). `storage`/`offset` are set when host space backs the range (raw holes, qcow2
   * zero clusters that keep their allocation), which `map` reports as the offset.
   */
  | {
      kind: 'zero';
      start: number;
      length: number;
      storage?: Storage;
      offset?: number;
      /**
       * QEMU reports the range as data as well as zero (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO): the
       * layer maps it to host bytes that are a hole in the file, found by looking below the
       * format (BDRV_BLOCK_RECURSE, e.g. a fixed VHD). `map` then prints "data": true.
       */
      data?: boolean;
    }
  /**
   * Not allocated in this layer: reads from the backing image, or zeros without one.
   * `storage`/`offset` are set when the layer still reserves host space for the range (a qcow2
   * extended-L2 cluster whose subcluster is unallocated: QEMU's BDRV_BLOCK_OFFSET_VALID without
   * DATA or ZERO); `map` prints that offset where no backing image answers the range.
   */
  | { kind: 'unallocated'; start: number; length: number; storage?: Storage; offset?: number }
  /**
   * Stored compressed: the `compressedLength` bytes at storage `offset` decode (with `codec`) to
   * the guest unit [unitStart, unitStart+unitLength), of which this extent is a part.
   */
  | {
      kind: 'compressed';
      start: number;
      length: number;
      storage: Storage;
      offset: number;
      compressedLength: number;
      codec: CompressionCodec;
      unitStart: number;
      unitLength: number;
    };

/** A reference from an image to another file (backing file, vmdk extent, qcow2 data file). */
export interface FileReference {
  kind: 'backing' | 'extent' | 'data-file';
  /** The name exactly as recorded in the image. */
  name: string;
}

/**
 * Opens a file an image refers to. Drivers receive one of these and must use it (lazily, when
 * the bytes are needed) — never open paths themselves. The chain Policy decides what is allowed.
 */
export type ReferenceOpener = (ref: FileReference) => Promise<Storage>;

export interface OpenOptions {
  /** The path the image was opened by (for resolving the names it records, and messages). */
  filename: string;
  /** Opener for files the image refers to (extents, data file). */
  openReference: ReferenceOpener;
  /**
   * Opened by `check` (QEMU's BDRV_O_CHECK): table entries that would make a plain open fail
   * (e.g. a block past the end of the file) are left for check() to report; the header and
   * the tables' own bounds are still validated.
   */
  check?: boolean;
  /**
   * Open for writing (the storage must be writable): drivers that implement `write` set
   * `Image.writable` and refuse (UNSUPPORTED_IMAGE) images they cannot update safely. Only the
   * top image of a chain is ever opened writable; backing layers are always read-only.
   */
  writable?: boolean;
  /**
   * With `writable`: make the write path's crash ordering hold across power loss by flushing the
   * storage between dependent metadata stages (default true). false keeps only the order in
   * which writes are issued (enough for a crashed or killed process; like QEMU's cache=unsafe).
   */
  writeBarriers?: boolean;
  /**
   * Read an internal snapshot instead of the active image (qemu-img's -l; QEMU's
   * bdrv_snapshot_load_tmp): the snapshot's L1 table replaces the active one, the virtual size
   * stays the image's, and the image is read-only. Only qcow2 has internal snapshots; other
   * drivers never see this option (src/chain/open.ts refuses it for them).
   */
  snapshot?: SnapshotSelector;
}

/** An internal snapshot by id and/or name (both must match when both are given). */
export interface SnapshotSelector {
  id?: string;
  name?: string;
  /** qemu-img's plain `-l NAME`: by id first, then by name (bdrv_snapshot_load_tmp_by_id_or_name). */
  idOrName?: string;
}

/**
 * What the guest currently reads below an image (its backing chain): `length` bytes at guest
 * offset `offset` of the image (zeros past the backing image's end). Supplied by the chain layer.
 */
export type BackingRead = (offset: number, length: number) => Promise<Uint8Array>;

/** Options of Image.writeZeroes. */
export interface WriteZeroesOptions {
  /**
   * QEMU's BDRV_REQ_MAY_UNMAP: whole clusters may lose their host allocation (default false:
   * a driver keeps allocations and only marks them as reading zeros where it can).
   */
  mayUnmap?: boolean;
}

/** Fields of `qemu-img info` that a driver knows about its image. */
export interface ImageInfoFields {
  clusterSize?: number;
  /**
   * qcow2 incompatible bit 0 ("cleanly shut down: no"). null when QEMU's bdrv_get_info fails
   * for the image (a vmdk whose extents differ in kind): qemu-img then prints no dirty-flag
   * (and no cluster-size).
   */
  dirty?: boolean | null;
  encrypted?: boolean;
  /** format-specific: {type, data} as qemu-img prints it (data already a QDict in QEMU order). */
  formatSpecific?: QDict;
  /** Internal snapshots (qcow2). */
  snapshots?: SnapshotInfo[];
}

/** What `check -r` may repair. */
export interface CheckFix {
  leaks: boolean;
  errors: boolean;
}

/** QEMU's BdrvCheckResult (+ fragmentation info); zero means "none" for every counter. */
export interface CheckResult {
  corruptions: number;
  leaks: number;
  checkErrors: number;
  corruptionsFixed: number;
  leaksFixed: number;
  imageEndOffset: number;
  totalClusters: number;
  allocatedClusters: number;
  fragmentedClusters: number;
  compressedClusters: number;
}

export function emptyCheckResult(): CheckResult {
  return { corruptions: 0, leaks: 0, checkErrors: 0, corruptionsFixed: 0, leaksFixed: 0, imageEndOffset: 0, totalClusters: 0, allocatedClusters: 0, fragmentedClusters: 0, compressedClusters: 0 };
}

/** One internal snapshot, as qemu-img info lists it. */
export interface SnapshotInfo {
  id: string;
  name: string;
  vmStateSize: number;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: bigint;
  icount?: bigint;
}

export interface Image {
  readonly format: FormatName;
  readonly filename: string;
  /** The image's own file. */
  readonly storage: Storage;
  /** Virtual disk size in bytes. */
  readonly virtualSize: number;
  /**
   * True when guest byte x is byte x of `storage` and nothing falls through to a layer below
   * (raw): reads then go straight to the storage, whose holes and end read as zeros, without
   * asking map() first.
   */
  readonly readsAsStorage?: boolean;
  /**
   * True when qemu-img 7.2's driver for this format has no block status (vhdx): QEMU then calls
   * every range of the layer allocated data with no host offset, and the generic map (map,
   * compare, measure, convert) reports the layer that way. map() still answers the real
   * allocation, which reads use.
   */
  readonly qemuReportsAllData?: boolean;
  /** The backing file recorded in the image, if any (never opened by the driver). */
  readonly backing?: { name: string; format?: string };
  /** Other files the image refers to (for --safety-check and info); not opened by listing them. */
  references(): FileReference[];
  /**
   * Maps [start, start+length) of this layer. Returns contiguous extents covering exactly the
   * range, in order; adjacent extents may share a kind. 0 ≤ start, start+length ≤ virtualSize.
   */
  map(start: number, length: number): Promise<Extent[]>;
  /** What `qemu-img info` shows for this image beyond sizes and backing. */
  info(): ImageInfoFields;
  /**
   * Format-specific reasons this image is unsafe to hand to a VMM or to qemu-img (OpenStack
   * format_inspector's checks: unknown features, unsafe vmdk subformats or extent names...).
   * Backing files and other references are checked generically from `references()`.
   */
  safetyIssues?(): string[];
  /** The persistent dirty bitmaps QEMU would load, when the format supports them (qcow2 v3). */
  persistentBitmaps?(): PersistentBitmap[] | undefined;
  /**
   * The content of the persistent bitmap `name` (one that persistentBitmaps() lists and that is
   * not inconsistent), its metadata checked as QEMU checks it when it loads the bitmap. With
   * `nameBytes` (from persistentBitmaps()) the bitmap stored under exactly those bytes.
   */
  readPersistentBitmap?(name: string, nameBytes?: Uint8Array): Promise<BitmapBits>;
  /**
   * Adds persistent bitmaps to a writable image that has none (qcow2 v3), after its data was
   * written; refused (UNSUPPORTED_OPTION) when the image cannot hold them.
   */
  storePersistentBitmaps?(bitmaps: readonly BitmapToStore[]): Promise<void>;
  /**
   * Throws what storePersistentBitmaps would throw for the image itself (a version without
   * bitmaps, no room for them in its header), without writing: asked before any guest data.
   */
  checkPersistentBitmaps?(): Promise<void>;
  /** Allocated bytes of the image and the files it consists of (default: its own storage). */
  allocatedSize?(): Promise<number>;
  /**
   * The change a writable open makes to the file before any guest write (qcow2: loading its
   * persistent bitmaps and marking them in use on disk). Run once, by the opener, only after
   * everything that could still refuse the open has passed (the whole backing chain opened and
   * checked), so a refused open leaves the file untouched. Writes need it to have run.
   */
  activate?(): Promise<void>;
  /**
   * Consistency check (qemu-img check). Per-problem messages go to `report` (qemu-img prints
   * them on stderr). With `fix`, repairs what it may (the image must be opened writable).
   * Absent when the format has no check (qemu-img exits 63). Throws CORRUPT_IMAGE when the
   * check cannot complete ("Check failed").
   */
  check?(fix: CheckFix, report: (line: string) => void): Promise<CheckResult>;

  // ---- The write side (optional; see docs/formats/qcow2.md "Writing") ----
  //
  // Contract for drivers that implement it:
  // - Only an image opened with OpenOptions.writable has `writable` true; write/writeZeroes
  //   throw WRITE_FAILED on any other, and OUT_OF_BOUNDS for a range past the virtual size.
  // - Offsets and lengths are guest bytes of any alignment; afterwards the guest reads exactly
  //   what was written (writeZeroes: zeros, masking any backing file).
  // - Crash ordering: new data and new metadata are written before anything refers to them,
  //   in the order data, refcounts, L2 tables, L1 table/header; a reference is dropped before
  //   the refcount it held is decremented. A crash at any point may leak clusters (refcount
  //   higher than the references) but never leaves a reference to unaccounted or reused space.
  // - After flush() resolves every completed write is durable.
  // - Calls are serialised by the driver; a read overlapping a write in flight may see either.

  /** True when the image was opened writable and its driver can write it. */
  readonly writable?: boolean;
  /** Writes guest bytes at `offset`. */
  write?(offset: number, data: Uint8Array): Promise<void>;
  /** Makes [offset, offset+length) read as zeros, masking any backing file. */
  writeZeroes?(offset: number, length: number, options?: WriteZeroesOptions): Promise<void>;
  /** Makes every completed write durable (metadata and data). */
  flush?(): Promise<void>;
  /**
   * Supplies what the layers below read, for the partial-cluster copy-on-write of a writable
   * image with a backing file (the chain layer calls it after opening the chain). Without it a
   * write that needs backing bytes fails.
   */
  setBackingReader?(read: BackingRead): void;
  /** Closes the image and every reference it opened. */
  close(): Promise<void>;
}

/** The driver half that opens images (added to FormatDriver by each format). */
export interface ImageOpener {
  open(storage: Storage, options: OpenOptions): Promise<Image>;
}
