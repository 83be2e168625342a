/**
 * Atomic file creation: write everything to a temporary file beside the target, flush it, then
 * rename it over the target. A failure (or SIGINT, see cleanupTemporaryFiles) removes the
 * temporary file, so a failed create or convert never leaves a half-written file and never
 * destroys a file that already existed at the target path.
 *
 * The target is found as open(2) would find it: symbolic links at its last component are
 * followed (up to 40), so a link keeps pointing at the new file, as when qemu-img or mke2fs write
 * through it. An existing target that is not a regular file (a block or character device, a
 * FIFO, a socket, a directory) is refused before anything is created: renaming over it would
 * replace a device node with a file. A regular file replaced keeps its permission bits and, when
 * run as root, its owner (hard links to the old file keep the old content: it is a new inode).
 */
import { randomBytes } from 'node:crypto';
import { chmod, chown, lstat, readlink, rename, unlink } from 'node:fs/promises';
import { unlinkSync } from 'node:fs';
import type { Stats } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fromSystemError, VmimgError } from '../util/errors.js';
import { FileStorage } from './file.js';

const pending = new Set<string>();

/** Temporary files whose open(O_CREAT) is still running on the pool (see settleCreations). */
const creating = new Set<Promise<unknown>>();

/**
 * Undefined when no temporary file is being created; else a promise that resolves once each has
 * been created (or failed), after at most `limitMs`. A signal handler that removed the files it
 * knew of waits on it and removes them again, so a file whose open was still running on a pool
 * thread is not left behind.
 */
export function settleCreations(limitMs = 1000): Promise<void> | undefined {
  if (creating.size === 0) return undefined;
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<void>((resolve) => (timer = setTimeout(resolve, limitMs)));
  return Promise.race([Promise.allSettled([...creating]).then(() => undefined), limit]).finally(() => clearTimeout(timer));
}

/**
 * Removes every temporary file still in flight (for signal handlers; synchronous). The paths stay
 * registered: a file still being created is removed by the next call (see settleCreations).
 */
export function cleanupTemporaryFiles(): void {
  for (const path of pending) {
    try {
      unlinkSync(path);
    } catch {
      /* already gone, or not created yet */
    }
  }
}

/** Registers (or forgets) another hidden file for cleanupTemporaryFiles (atomic-pair.ts's kept link). */
export function trackTemporary(path: string, tracked: boolean): void {
  if (tracked) pending.add(path);
  else pending.delete(path);
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
  const { path, existing } = await finalTarget(target);
  const tmp = temporaryPathFor(path);
  // Registered before it exists: a signal that lands while the file is being created (its open
  // and statfs take turns of the event loop) must still remove it (see settleCreations).
  pending.add(tmp);
  let storage: FileStorage;
  // Errors while it is written name the file the user asked for, not the hidden temporary one.
  const created = FileStorage.createExclusive(tmp, path);
  creating.add(created);
  try {
    storage = await created;
  } catch (e) {
    pending.delete(tmp);
    throw e;
  } finally {
    creating.delete(created);
  }
  let result: T;
  try {
    // A file replaced keeps its permissions (and, as root, its owner), as a file qemu-img or
    // mke2fs truncate and rewrite does: a 0600 image must not come back world-readable.
    if (existing) {
      await chmod(tmp, existing.mode & 0o7777);
      if (process.getuid?.() === 0) await chown(tmp, existing.uid, existing.gid);
    }
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
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw fromSystemError(e, path, 'rename');
  } finally {
    pending.delete(tmp);
  }
  return result;
}

const MAX_SYMLINK_HOPS = 40;

function kindOf(st: Stats): string {
  if (st.isBlockDevice()) return 'a block device';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isDirectory()) return 'a directory';
  return 'not a regular file';
}

/**
 * The path `target` names once symbolic links at its end are followed, checked to be writable
 * whole, and the regular file already there (if any).
 */
export async function finalTarget(target: string): Promise<{ path: string; existing?: Stats }> {
  let path = target;
  for (let hop = 0; hop <= MAX_SYMLINK_HOPS; hop++) {
    let st: Stats;
    try {
      st = await lstat(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { path };
      throw fromSystemError(e, path, 'create');
    }
    if (st.isSymbolicLink()) {
      path = resolve(dirname(path), await readlink(path));
      continue;
    }
    if (st.isFile()) return { path, existing: st };
    const what = path === target ? `'${target}'` : `'${target}' (through its links: '${path}')`;
    const hint = st.isBlockDevice() ? ' (convert -n writes into an existing block device)' : '';
    throw new VmimgError('WRITE_FAILED', `Could not create ${what}: it is ${kindOf(st)}, and vmimg only replaces regular files${hint}`, { path: target, resolved: path });
  }
  throw new VmimgError('WRITE_FAILED', `Could not create '${target}': more than ${MAX_SYMLINK_HOPS} symbolic links to follow`, { path: target });
}
