/**
 * Loader for vmimg's native helpers (native/vmimg_native.c, built by node-gyp at install):
 * SEEK_DATA/SEEK_HOLE and posix_fallocate, which Node.js does not expose. When the addon is
 * missing, callers fall back (every byte counts as data; allocation writes zeros).
 */
import { createRequire } from 'node:module';

export interface NativeHelpers {
  /** lseek(fd, offset, SEEK_DATA); -1 when no data follows. */
  seekData(fd: number, offset: number): number;
  /** lseek(fd, offset, SEEK_HOLE). */
  seekHole(fd: number, offset: number): number;
  /** posix_fallocate(fd, offset, length). */
  allocate(fd: number, offset: number, length: number): void;
  /** fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length). */
  punchHole?(fd: number, offset: number, length: number): void;
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
