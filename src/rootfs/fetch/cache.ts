/**
 * The fetch cache: files keyed by their SHA256, shared by `vmimg fetch` and rootfs recipes
 * (minirootfs tarballs, apk packages).
 *
 * Layout under the cache directory (see cacheDir()):
 *   sha256/<hex>          verified content, never modified once renamed into place
 *   partial/<hex>.part    an interrupted download, resumed with HTTP Range on the next attempt
 *   locks/<hex>.lock      held while <hex> is being downloaded (lock.ts)
 *
 * Contract of ensure(): returns the path of a file whose SHA256 is `sha256`.
 * - Present and hashing to `sha256` → returned without any network request.
 * - Otherwise, under the lock, it downloads to partial/, hashing while streaming, then verifies and
 *   renames into sha256/. A concurrent caller for the same digest waits on the lock and then finds
 *   the file present: one download, both succeed.
 * - A digest mismatch deletes the downloaded file and throws CHECKSUM_MISMATCH naming both digests.
 * - A transfer that fails midway keeps partial/<hex>.part; the next attempt asks for the rest
 *   (Range: bytes=N-) and restarts from zero when the server answers 200 instead of 206.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { fromSystemError, VmimgError } from '../../util/errors.js';
import { displayUrl, httpGet, type HttpOptions } from './http.js';
import { withLock } from './lock.js';

export interface FetchProgress {
  update(done: number, total: number): void;
  stop(): void;
}

export interface EnsureOptions extends HttpOptions {
  url: string;
  /** Expected SHA256, lower- or upper-case hex. */
  sha256: string;
  progress?: FetchProgress;
  lockTimeoutMs?: number;
}

export interface EnsureResult {
  path: string;
  /** False when the file was already present (no network request was made for it). */
  downloaded: boolean;
}

/** $VMIMG_CACHE_DIR, else $XDG_CACHE_HOME/vmimg, else ~/.cache/vmimg. */
export function defaultCacheDir(): string {
  const env = process.env['VMIMG_CACHE_DIR'];
  if (env) return env;
  const xdg = process.env['XDG_CACHE_HOME'];
  return join(xdg ? xdg : join(homedir(), '.cache'), 'vmimg');
}

/** Normalises and checks a SHA256 hex digest. */
export function parseSha256(value: string): string {
  const v = value.trim().toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(v)) throw new VmimgError('INVALID_OPTION', `Not a SHA256 digest (64 hex digits): '${value}'`, { value });
  return v;
}

/** SHA256 of a file, or undefined when it does not exist. */
export async function hashFile(path: string): Promise<string | undefined> {
  const hash = createHash('sha256');
  try {
    await pipeline(createReadStream(path), hash);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  return hash.digest('hex');
}

function hashing(hash: Hash, onBytes: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      onBytes(chunk.length);
      cb(null, chunk);
    },
  });
}

export class FetchCache {
  readonly dir: string;

  constructor(dir: string = defaultCacheDir()) {
    this.dir = dir;
  }

  pathFor(sha256: string): string {
    return join(this.dir, 'sha256', parseSha256(sha256));
  }

  /** The verified cached path for `sha256`, or undefined (a corrupt entry is deleted). */
  async lookup(sha256: string): Promise<string | undefined> {
    const path = this.pathFor(sha256);
    const actual = await hashFile(path);
    if (actual === undefined) return undefined;
    if (actual === parseSha256(sha256)) return path;
    await unlink(path).catch(() => undefined);
    return undefined;
  }

  /**
   * Stores bytes the caller has already verified by other means (an apk package checked against
   * a signed index) under their SHA256, atomically (temporary file + rename); returns the digest.
   * Storing bytes already present is a no-op.
   */
  async putBytes(bytes: Uint8Array): Promise<string> {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (await this.lookup(sha256)) return sha256;
    for (const sub of ['sha256', 'partial']) await mkdir(join(this.dir, sub), { recursive: true });
    const tmp = join(this.dir, 'partial', `${sha256}.${process.pid}.${Math.random().toString(36).slice(2)}.put`);
    try {
      await writeFile(tmp, bytes, { flag: 'wx' });
      await rename(tmp, this.pathFor(sha256));
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw fromSystemError(e, this.pathFor(sha256), 'write');
    }
    return sha256;
  }

  async ensure(options: EnsureOptions): Promise<EnsureResult> {
    const sha256 = parseSha256(options.sha256);
    const hit = await this.lookup(sha256);
    if (hit) return { path: hit, downloaded: false };
    for (const sub of ['sha256', 'partial', 'locks']) await mkdir(join(this.dir, sub), { recursive: true });
    return withLock(
      join(this.dir, 'locks', `${sha256}.lock`),
      async () => {
        const again = await this.lookup(sha256);
        if (again) return { path: again, downloaded: false };
        await this.#download(sha256, options);
        return { path: this.pathFor(sha256), downloaded: true };
      },
      { timeoutMs: options.lockTimeoutMs },
    );
  }

  /** Downloads into partial/ (resuming when possible), verifies, renames into sha256/. Lock held. */
  async #download(sha256: string, options: EnsureOptions): Promise<void> {
    const part = join(this.dir, 'partial', `${sha256}.part`);
    const have = await stat(part).then((s) => s.size, () => 0);
    const { res, length, partial } = await httpGet(options.url, { ...options, rangeStart: have > 0 ? have : undefined });
    const hash = createHash('sha256');
    let done = 0;
    if (partial) {
      for await (const chunk of createReadStream(part) as AsyncIterable<Buffer>) hash.update(chunk);
      done = have;
    }
    const total = length === undefined ? 0 : done + length;
    const progress = options.progress;
    try {
      await pipeline(
        res,
        hashing(hash, (n) => {
          done += n;
          progress?.update(done, Math.max(total, done));
        }),
        createWriteStream(part, { flags: partial ? 'a' : 'w', mode: 0o644 }),
      );
    } finally {
      progress?.stop();
    }
    if (length !== undefined && done !== total) {
      throw new VmimgError('FETCH_FAILED', `Download of '${displayUrl(options.url)}' ended after ${done} of ${total} bytes`, { url: displayUrl(options.url), received: done, expected: total });
    }
    const actual = hash.digest('hex');
    if (actual !== sha256) {
      await unlink(part).catch(() => undefined);
      throw new VmimgError('CHECKSUM_MISMATCH', `SHA256 mismatch for '${displayUrl(options.url)}': expected ${sha256}, got ${actual} (the downloaded file was deleted)`, { url: displayUrl(options.url), expected: sha256, actual });
    }
    await rename(part, this.pathFor(sha256));
  }
}
