/**
 * Loader for vmimg's native helpers (native/vmimg_native.c, built by node-gyp at install):
 * SEEK_DATA/SEEK_HOLE and posix_fallocate, which Node.js does not expose. When the addon is
 * missing, callers fall back (every byte counts as data; allocation writes zeros).
 */
import { createRequire } from 'node:module';
import { getSystemErrorMap } from 'node:util';
import { fromSystemError, VmimgError } from '../util/errors.js';

export interface NativeHelpers {
  /** lseek(fd, offset, SEEK_DATA); -1 when no data follows. */
  seekData(fd: number, offset: number): number;
  /** lseek(fd, offset, SEEK_HOLE). */
  seekHole(fd: number, offset: number): number;
  /** lseek(fd, offset, SEEK_END): with offset 0, a block device's length (fstat says 0). */
  seekEnd?(fd: number, offset: number): number;
  /** posix_fallocate(fd, offset, length). */
  allocate(fd: number, offset: number, length: number): void;
  /** fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length). */
  punchHole?(fd: number, offset: number, length: number): void;
  /**
   * Reads whole small files in one call (native/vmimg_native.c read_files_sync): [status, bytes
   * read] per file; status 0 = exactly sizes[i] bytes, > 0 = errno, -1 = ended early, -2 = longer,
   * -3 = no longer a regular file (opened O_NOFOLLOW | O_NONBLOCK, so a FIFO cannot block it).
   */
  readFilesSync?(paths: Array<string | Uint8Array>, sizes: number[], buffers: Uint8Array[]): Float64Array;
  /**
   * Copies whole files into dstFd at the given offsets on a libuv pool thread: resolves with
   * [status, bytes copied, write errno] per file (status as readFilesSync, write errno 0 = none).
   */
  copyFiles?(dstFd: number, paths: Array<string | Uint8Array>, sizes: number[], offsets: number[]): Promise<Float64Array>;
  /**
   * The extended attributes of each path, symbolic links not followed (llistxattr/lgetxattr):
   * undefined when none (or the file system keeps none), [name, value, ...] when some, or the
   * errno when they could not be read. Names and values at most 64 KiB each (Linux's limits).
   */
  readXattrs?(paths: Array<string | Uint8Array>): Array<Buffer[] | number | undefined>;
  /**
   * fallocate(fd, 0, offset, data.length) and then pwrite of all of `data` at `offset`, on a libuv
   * pool thread: resolves with [write errno, fallocate errno] (0 = none; the write is attempted
   * whatever fallocate answered).
   */
  writeAllocating?(fd: number, data: Uint8Array, offset: number): Promise<Float64Array>;
}

function load(): NativeHelpers | undefined {
  const require = createRequire(import.meta.url);
  // dist/src/storage/native.js → <package root>/build/Release
  for (const rel of ['../../../build/Release/vmimg_native.node', '../../build/Release/vmimg_native.node']) {
    try {
      return require(rel) as NativeHelpers;
    } catch {
      /* try the next location */
    }
  }
  return undefined;
}

export const native: NativeHelpers | undefined = load();

/**
 * The error of one file of readFilesSync/copyFiles from its status and bytes done (undefined when
 * status is 0): SOURCE_CHANGED for a file shorter or longer than `size` or no longer a regular
 * file, else the errno as Node's fs would report it for reading `path`.
 */
export function nativeReadError(status: number, done: number, path: string, size: number): VmimgError | undefined {
  if (status === 0) return undefined;
  if (status === -1) return new VmimgError('SOURCE_CHANGED', `'${path}' ended after ${done} of ${size} bytes at 0 (changed while being read?)`, { position: 0, length: size });
  if (status === -2) return new VmimgError('SOURCE_CHANGED', `'${path}' grew past ${size} bytes while being read`, { path, size });
  if (status === -3) return new VmimgError('SOURCE_CHANGED', `'${path}' is no longer a regular file`, { path });
  return errnoError(status, path, 'read');
}

/** A system errno (positive) as fromSystemError makes it of a Node fs error. */
export function errnoError(errno: number, path: string, action: 'read' | 'write'): VmimgError {
  // libuv's errno numbers are the negated system ones; its map gives name and description.
  const [code, text] = getSystemErrorMap().get(-errno) ?? [`errno ${errno}`, 'system error'];
  return fromSystemError(Object.assign(new Error(`${code}: ${text}`), { code, errno: -errno }), path, action);
}
