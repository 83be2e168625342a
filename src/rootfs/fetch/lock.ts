/**
 * Cross-process lock files for the fetch cache.
 *
 * Contract: `withLock(path, fn)` runs `fn` while holding `path`, which it creates with O_EXCL
 * (open 'wx') and fills with `{pid, host, nonce, created}`. A caller that finds the file present
 * waits (polling, 25 → 250 ms) until it is gone or, after `timeoutMs` (default 10 minutes), fails
 * with LOCK_TIMEOUT. A lock is *stale* — and is removed so the waiter can take it — when its
 * holder is on this host and its pid no longer exists (kill(pid, 0) → ESRCH), or when the file
 * stays empty/unparsable for more than 10 s (a holder that died between create and write).
 * Locks from another host (shared cache on NFS) are never judged stale; they only time out.
 * Removal re-reads the file and removes it only if it still holds the same nonce, so a waiter
 * cannot delete a lock another waiter has just taken (the remaining window is one read+unlink).
 * The lock is released (unlinked) when `fn` settles, and on SIGINT/SIGTERM via the process exit.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { readFileSync, unlinkSync } from 'node:fs';
import { open, readFile, stat, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { fromSystemError, VmimgError } from '../../util/errors.js';

export interface LockOptions {
  timeoutMs?: number;
  /** Called once when the lock is busy and this caller starts waiting. */
  onWait?: (holder: LockInfo | undefined) => void;
}

export interface LockInfo {
  pid: number;
  host: string;
  nonce: string;
  created: string;
}

const held = new Map<string, string>();
let exitHook = false;

function releaseAllSync(): void {
  for (const [path, nonce] of held) {
    try {
      if (JSON.parse(readFileSync(path, 'utf8')).nonce === nonce) unlinkSync(path);
    } catch {
      /* gone or not ours */
    }
  }
  held.clear();
}

async function readLock(path: string): Promise<LockInfo | undefined | 'gone'> {
  try {
    const v = JSON.parse(await readFile(path, 'utf8')) as LockInfo;
    return typeof v.pid === 'number' && typeof v.nonce === 'string' ? v : undefined;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'gone' : undefined;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** Removes `path` when it is stale (see the file comment); true when removed or already gone. */
async function breakIfStale(path: string): Promise<boolean> {
  const info = await readLock(path);
  if (info === 'gone') return true;
  if (info === undefined) {
    const age = await stat(path).then((s) => Date.now() - s.mtimeMs, () => Infinity);
    if (age < 10000) return false;
    await unlink(path).catch(() => undefined);
    return true;
  }
  if (info.host !== hostname() || pidAlive(info.pid)) return false;
  const again = await readLock(path);
  if (again !== 'gone' && again?.nonce === info.nonce) await unlink(path).catch(() => undefined);
  return true;
}

async function tryCreate(path: string, info: LockInfo): Promise<boolean> {
  try {
    const fh = await open(path, 'wx', 0o644);
    try {
      await fh.writeFile(JSON.stringify(info));
    } finally {
      await fh.close();
    }
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw fromSystemError(e, path, 'create');
  }
}

/** Runs `fn` holding the lock file `path` (its directory must exist). */
export async function withLock<T>(path: string, fn: () => Promise<T>, options: LockOptions = {}): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 600000;
  const info: LockInfo = { pid: process.pid, host: hostname(), nonce: randomBytes(8).toString('hex'), created: new Date().toISOString() };
  const deadline = Date.now() + timeoutMs;
  let delay = 25;
  let waited = false;
  while (!(await tryCreate(path, info))) {
    if (await breakIfStale(path)) continue;
    if (!waited) {
      waited = true;
      const holder = await readLock(path);
      options.onWait?.(holder === 'gone' ? undefined : holder);
    }
    if (Date.now() >= deadline) {
      const holder = await readLock(path);
      const who = holder && holder !== 'gone' ? ` (held by pid ${holder.pid} on ${holder.host} since ${holder.created})` : '';
      throw new VmimgError('LOCK_TIMEOUT', `Timed out after ${timeoutMs} ms waiting for lock '${path}'${who}`, { path, timeoutMs });
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 250);
  }
  held.set(path, info.nonce);
  if (!exitHook) {
    exitHook = true;
    process.on('exit', releaseAllSync);
  }
  try {
    return await fn();
  } finally {
    held.delete(path);
    const now = await readLock(path);
    if (now !== 'gone' && now?.nonce === info.nonce) await unlink(path).catch(() => undefined);
  }
}
