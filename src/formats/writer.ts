/**
 * The write side used by `convert` (and later by builders that target an image format): a
 * streaming writer that receives guest data in ascending order and lays out the format around
 * it, writing metadata last (DESIGN.md: "reserve metadata, stream data, write metadata last").
 *
 * Contract for callers (src/ops/convert):
 * - `write`/`writeCompressed`/`writeZeroes` ranges never overlap and arrive in ascending guest
 *   order unless the writer says `outOfOrder` is fine; offsets and lengths are multiples of
 *   `granularity` except a final run ending at virtualSize.
 * - Anything never written reads as zeros (or, when the image has a backing file, falls through
 *   to it) — writers start from an empty, zero-initialised file.
 * - `finish` writes the metadata and flushes; after an error the caller discards the file
 *   (atomic temp + rename), so writers need no rollback.
 */
import type { FileCopy } from '../storage/types.js';
import type { BitmapBits } from './types.js';
import type { VmimgError } from '../util/errors.js';

export interface ImageWriter {
  readonly virtualSize: number;
  /** Preferred unit of writes: cluster/grain/block size (bytes). */
  readonly granularity: number;
  /** How compressed clusters must be produced, when the target stores compressed data. */
  readonly compression?: WriterCompression;
  /** Stores uncompressed guest data. */
  write(offset: number, data: Uint8Array): Promise<void>;
  /**
   * Stores one compressed unit (exactly `granularity` guest bytes at `offset`, or the tail);
   * `compressed` is the codec output for it. Only when `compression` is set.
   */
  writeCompressed?(offset: number, length: number, compressed: Uint8Array): Promise<void>;
  /**
   * Records that [offset, offset+length) reads as zeros where the default would not (the image
   * has a backing file whose data must be masked). Formats without a zero marker write zeros.
   */
  writeZeroes(offset: number, length: number): Promise<void>;
  /** Writes remaining metadata; after this the file is a complete image. */
  finish(): Promise<void>;
  /**
   * Stores whole host files as guest data at their offsets (each offset + size within the
   * image), without their bytes passing through JavaScript. Optional: only writers whose guest
   * bytes are file bytes (raw) offer it. Ranges follow the rules of `write` except ordering:
   * calls may overlap each other and later writes of other ranges.
   */
  copyFiles?(files: readonly FileCopy[]): Promise<Array<VmimgError | undefined>>;
  /**
   * Stores persistent dirty bitmaps (convert --bitmaps), in this order, after all guest data
   * and before `finish`; at most one call. Only writers of formats that keep them (qcow2 v3).
   */
  writeBitmaps?(bitmaps: readonly BitmapToStore[]): Promise<void>;
  /**
   * Throws when `writeBitmaps` could not store any bitmap in this target (e.g. no room for the
   * bitmaps extension in a qcow2 header cluster); called before any guest data is copied.
   */
  checkBitmaps?(): void | Promise<void>;
}

/** A persistent dirty bitmap for a writer to store. */
export interface BitmapToStore {
  name: string;
  /** The name's bytes as the source stores them (kept as they are; default: `name` in UTF-8). */
  nameBytes?: Uint8Array;
  /** Bytes per bit: a power of two. */
  granularity: number;
  /** Tracks guest writes once opened by QEMU (qcow2 "auto" flag). */
  enabled: boolean;
  /** Loads the bits (over the writer's virtual size at this granularity); called once, when stored. */
  load(): Promise<BitmapBits>;
}

export interface WriterCompression {
  /** qcow2 zlib: raw deflate, window 2^12; qcow2 zstd; vmdk: zlib stream. */
  codec: 'qcow2-deflate' | 'zstd' | 'zlib';
  /** Compressed output at least this long is stored uncompressed instead (QEMU's rule). */
  maxCompressed: number;
}
