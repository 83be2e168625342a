/**
 * The contract between the generic layers and a format driver (DESIGN.md "Format driver").
 * A driver probes bytes, reads header facts from a Storage it is handed, and plans creation as
 * a pure function; it never opens files and has no I/O policy of its own.
 */
import type { Storage } from '../storage/types.js';
import type { Image, OpenOptions } from './image.js';
import type { ImageWriter } from './writer.js';
import type { CreateOptions, OptionSpec } from './options.js';

export const FORMAT_NAMES = ['raw', 'qcow2', 'vmdk', 'vpc', 'vhdx'] as const;
export type FormatName = (typeof FORMAT_NAMES)[number];

/** Facts read from an existing image's headers: enough to size and link a new image over it. */
export interface HeaderSummary {
  format: FormatName;
  /** Virtual disk size in bytes, derived exactly as qemu-img 7.2 derives it for this format. */
  virtualSize: bigint;
  /** vmdk only: the descriptor's CID, recorded as parentCID by a vmdk child. */
  vmdkCid?: number;
}

/** Everything a planner needs; it gets no clock, randomness or I/O except through this. */
export interface CreateContext {
  /** The new image's file name exactly as given (vmdk writes its basename into the descriptor). */
  filename: string;
  /** Requested virtual size in bytes (before any format rounding), 0 ≤ size ≤ INT64_MAX. */
  size: bigint;
  /** Validated-by-type options (`-o`, with -b/-F folded in as backing_file/backing_fmt). */
  options: CreateOptions;
  /** The backing image's header facts; undefined with no backing file or with -u. */
  backing?: HeaderSummary;
  /** True when `size` was taken from the backing image (errors then say BACKING_TOO_LARGE). */
  sizeFromBacking: boolean;
  /** Source of random bytes (CIDs, UUIDs, GUIDs). */
  random(length: number): Uint8Array;
  /** Wall-clock time in milliseconds since the Unix epoch (VHD timestamps). */
  now(): number;
}

/** One write of a creation plan. Plans never overlap writes. */
export interface PlannedWrite {
  offset: number;
  data: Uint8Array;
}

/** A creation plan: what to write, what to allocate, and how long the file ends up. */
export interface Layout {
  /** Final file length in bytes. */
  length: number;
  /** Metadata writes, ascending by offset. Anything not written reads as zero (sparse). */
  writes: PlannedWrite[];
  /**
   * Byte ranges that must be physically allocated: with fallocate (preallocation=falloc), or by
   * writing zeros when `write` is set (preallocation=full).
   */
  allocate: Array<{ offset: number; length: number; write?: boolean }>;
  /** Facts for `create --output=json`. */
  summary: CreatedSummary;
  /**
   * A second new file the image names (qcow2 external data file): created together with the
   * image, both or neither. `name` is the path as the user gave it (relative to the working
   * directory, as qemu-img creates it).
   */
  dataFile?: DataFileLayout;
}

/** The plan of an image's companion file: a raw file of `length` bytes. */
export interface DataFileLayout {
  name: string;
  length: number;
  writes: PlannedWrite[];
  allocate: Layout['allocate'];
}

export interface CreatedSummary {
  virtualSize: bigint;
  /** qcow2 cluster, vmdk grain, vpc/vhdx block size in bytes; absent for raw and fixed vpc. */
  clusterSize?: number;
  subformat?: string;
}

export interface FormatDriver {
  readonly name: FormatName;
  /** Creation options in the order qemu-img prints them on the Formatting line. */
  readonly createOptions: readonly OptionSpec[];
  /** qemu-img create options this driver knowingly rejects, name → reason (UNSUPPORTED_OPTION). */
  readonly unsupportedCreateOptions?: Readonly<Record<string, string>>;
  /**
   * True when creating over a backing file needs the backing image's header even with -u
   * (vmdk records the parent's CID, so qemu-img opens the parent regardless).
   */
  readonly needsBackingHeader?: boolean;
  /**
   * Scores how well the first bytes of a file (at most 512, QEMU's BLOCK_PROBE_BUF_SIZE; fewer if the file is shorter) match
   * this format, like QEMU's bdrv_probe: 0 = no, 1 = fallback (raw), 100 = certain.
   */
  probe(head: Uint8Array): number;
  /** Reads and validates the header facts of an image in `storage`. */
  readHeader(storage: Storage): Promise<HeaderSummary>;
  /** Plans a new image. Pure: no I/O, no clock, no randomness except through `ctx`. */
  planCreate(ctx: CreateContext): Layout;
  /**
   * Opens an existing image from untrusted bytes: validates the header and every table bound it
   * relies on, opens no other file (references go through `options.openReference`, lazily).
   */
  open?(storage: Storage, options: OpenOptions): Promise<Image>;
  /**
   * A streaming writer for `convert` over an empty storage, configured like `create` (ctx), with
   * compressed output when `compress` (convert -c). See src/formats/writer.ts for the contract.
   */
  createWriter?(storage: Storage, ctx: CreateContext, compress: boolean, companion?: Storage): Promise<ImageWriter>;
  /**
   * The name of a second new file the options ask for (qcow2 `data_file`), which the caller
   * creates with the image (both or neither) and hands to createWriter as `companion`.
   */
  companionFile?(ctx: CreateContext): string | undefined;
  /**
   * `measure`: the file size an image made with these options (ctx, whose size is the source's
   * virtual size) needs for the source's data, and when fully allocated. `source` is absent
   * with --size. Sizes in bytes.
   */
  measure?(ctx: CreateContext, source: MeasureSource | undefined): Promise<MeasureResult>;
}

/** What `measure` knows about the image being measured. */
export interface MeasureSource {
  virtualSize: number;
  /** Bytes of the granules (at `granule` size, aligned) that hold data anywhere in the source chain. */
  allocatedBytes(granule: number): Promise<number>;
  /**
   * The source's persistent dirty bitmaps, present exactly when the source supports them
   * (QEMU's bdrv_supports_persistent_dirty_bitmap: a qcow2 v3 image at the top of the chain),
   * possibly empty. A qcow2 v3 target then reports the space they need.
   */
  persistentBitmaps?: readonly PersistentBitmap[];
}

/** A persistent dirty bitmap, as QEMU loads it (every directory entry counts, in-use ones too). */
export interface PersistentBitmap {
  name: string;
  /**
   * The name as stored, present only when it is not valid UTF-8 (qcow2 does not check): then
   * `name` is a lossy decoding (U+FFFD for each bad sequence) that two stored names may share.
   */
  nameBytes?: Uint8Array;
  /** Bytes per bit. */
  granularity: number;
  /** Tracks guest writes (qcow2 "auto" flag); a disabled bitmap is frozen. Absent: false. */
  enabled?: boolean;
  /** Its content cannot be trusted (qcow2 "in_use" flag at open: QEMU calls it inconsistent). Absent: false. */
  inconsistent?: boolean;
}

/**
 * The content of a persistent dirty bitmap as one bit string: bit i (granule i, guest bytes
 * [i × granularity, (i+1) × granularity)) is bit (i & 7) of byte (i >> 3), least significant
 * first (qcow2 spec "Bitmaps": the serialized bitmap data).
 */
export interface BitmapBits {
  /** Number of bits: ceil(virtual size / granularity). */
  readonly bits: number;
  /** Bytes [start, start+length) of the bit string; bits at or past `bits` read as 0. */
  read(start: number, length: number): Promise<Uint8Array>;
}

export interface MeasureResult {
  required: bigint;
  fullyAllocated: bigint;
  /** Present when qemu-img prints it (qcow2 v3 target from a bitmap-capable source). */
  bitmaps?: bigint;
}
