/**
 * Byte storage: the only abstraction format code does I/O through. Formats never open files;
 * they are handed a Storage. Offsets and lengths are bytes.
 */
import type { VmimgError } from '../util/errors.js';

export interface Storage {
  /** A name for messages (usually the path). */
  readonly name: string;
  readonly writable: boolean;
  /** Current length in bytes. */
  size(): Promise<number>;
  /**
   * Reads `length` bytes at `offset`. Bytes past the end read as zeros, as they do from a file
   * through QEMU's file driver; callers that need the bytes to exist check `size()` first.
   */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Reads target.length bytes at `offset` into `target` (zeros past the end), allocating nothing. */
  readInto(offset: number, target: Uint8Array): Promise<void>;
  /** Writes `data` at `offset`, extending the storage if needed. */
  write(offset: number, data: Uint8Array): Promise<void>;
  /**
   * Writes `parts` back to back from `offset`, as one write of their concatenation, without
   * copying them into one buffer (pwritev). Optional: callers write the parts one by one.
   */
  writev?(offset: number, parts: readonly Uint8Array[]): Promise<void>;
  /** Sets the length (sparse extension or truncation). */
  truncate(length: number): Promise<void>;
  /** Bytes actually allocated (st_blocks × 512 for files), as qemu-img's "actual-size". */
  allocatedSize(): Promise<number>;
  flush(): Promise<void>;
  close(): Promise<void>;
  /**
   * Whether the run starting at `offset` is data or a hole, and how long it is (≤ `length`);
   * past the end counts as a hole. Optional: storages that cannot tell report everything as data.
   */
  blockStatus?(offset: number, length: number): Promise<{ data: boolean; length: number }>;
  /** Physically allocates a range (preallocation=falloc). Optional: callers write zeros instead. */
  allocate?(offset: number, length: number): Promise<void>;
  /**
   * Deallocates a range so it reads as zeros, keeping the size (fallocate PUNCH_HOLE|KEEP_SIZE).
   * Optional; resolves false when the file system cannot punch holes (callers then write zeros).
   */
  punchHole?(offset: number, length: number): Promise<boolean>;
  /**
   * Copies whole host files into the storage, each at its offset, without their bytes passing
   * through JavaScript (native copyFiles on a pool thread), and starts writing them back to disk
   * (so a later flush has little left to wait for). Optional. Resolves with undefined or the
   * error of each file (SOURCE_CHANGED when a file's length is not `size`).
   */
  copyFiles?(files: readonly FileCopy[]): Promise<Array<VmimgError | undefined>>;
}

/** One file of Storage.copyFiles: all `size` bytes of host file `fsPath` (named `path` in messages), written at `offset`. */
export interface FileCopy {
  fsPath: string | Uint8Array;
  path: string;
  size: number;
  offset: number;
}

/** Largest single read/write we issue, so a corrupt length can never size a huge buffer. */
export const MAX_IO_CHUNK = 64 * 1024 * 1024;
