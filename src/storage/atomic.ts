/**
 * Atomic file creation: write everything to a temporary file beside the target, flush it, then
 * rename it over the target. A failure (or SIGINT, see cleanupTemporaryFiles) removes the
 * temporary file, so a failed create or convert never leaves a half-written file and never
 * destroys a file that already existed at the target path.
 */
import { randomBytes } from 'node:crypto';
import { rename, unlink } from 'node:fs/promises';
import { unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fromSystemError, VmimgError } from '../util/errors.js';
import { FileStorage } from './file.js';

const pending = new Set<string>();

/** Removes every temporary file still in flight (for signal handlers; synchronous). */
export function cleanupTemporaryFiles(): void {
  for (const path of pending) {
    try {
      unlinkSync(path);
    } catch {
      /* already gone */
    }
  }
  pending.clear();
}

/** The temporary path used for `target`: hidden, in the same directory, short. */
export function temporaryPathFor(target: string): string {
  return join(dirname(target), `.vmimg-${randomBytes(6).toString('hex')}.tmp`);
}

/**
 * Creates `target` atomically: `fill` writes the content into a fresh temporary file; on success
 * the file is flushed (unless `sync` is false: convert's default "unsafe" cache mode) and
 * renamed to `target`.
 */
export async function createAtomically<T>(target: string, fill: (storage: FileStorage) => Promise<T>, options: { sync?: boolean } = {}): Promise<T> {
  if (basename(target) === '' || target.endsWith('/')) {
    throw new VmimgError('WRITE_FAILED', `Could not create '${target}': not a file name`, { path: target });
  }
  const tmp = temporaryPathFor(target);
  const storage = await FileStorage.createExclusive(tmp);
  pending.add(tmp);
  let result: T;
  try {
    result = await fill(storage);
    if (options.sync ?? true) await storage.flush();
    await storage.close();
  } catch (e) {
    await storage.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    pending.delete(tmp);
    throw e;
  }
  try {
    await rename(tmp, target);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw fromSystemError(e, target, 'rename');
  } finally {
    pending.delete(tmp);
  }
  return result;
}
