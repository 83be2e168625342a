/**
 * `flist unpack` and `flist cat`: recreating files from a manifest and its blobs (docs/flist.md
 * "Unpack").
 *
 * Every block is fetched through an optional local cache (rfs's layout:
 * `CACHE/<hex[0..2]>/<hex[2..4]>/<hex>`, plaintext) or the stores, and verified (codec.ts:
 * id, GCM tag, key) before a byte is written; a file's total must equal its recorded size.
 *
 * Safety: names are validated by the reader (no '/', '.', '..', NUL, duplicates), every path is
 * created fresh (O_EXCL files, mkdir, symlink) so nothing existing is followed or overwritten, and
 * symlink targets are written as recorded, never resolved (rfs rewrites absolute targets into the
 * target folder; vmimg keeps them, so the tree reads the same wherever it is unpacked). Device
 * nodes need root: without it they are skipped with a warning; sockets are always skipped.
 * Directory modes and times are applied last, deepest first. The manifest's whole tree is
 * checked before the first write, and a failure removes everything the unpack created (the
 * target folder, or the entries of the empty folder it was).
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, lchown, lstat, lutimes, mkdir, open, readdir, readFile, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fromSystemError, VmimgError } from '../util/errors.js';
import { decodeBlock } from './codec.js';
import { blake2b256, initHash } from './hash.js';
import { ManifestReader, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type BlockRef, type InodeRow } from './manifest.js';
import type { Router } from './store/router.js';

const execFileAsync = promisify(execFile);

/** Blocks fetched ahead of the one being written. */
const READ_AHEAD = 8;

export interface BlockSourceOptions {
  router: Router;
  /** Local plaintext cache folder (rfs layout). */
  cache?: string;
}

/** Fetches and verifies blocks, through the cache when one is given. */
export class BlockSource {
  readonly #router: Router;
  readonly #cache: string | undefined;

  constructor(options: BlockSourceOptions) {
    this.#router = options.router;
    this.#cache = options.cache;
  }

  static async create(options: BlockSourceOptions): Promise<BlockSource> {
    await initHash();
    return new BlockSource(options);
  }

  #cachePath(id: Buffer): string {
    const hex = id.toString('hex');
    return join(this.#cache!, hex.slice(0, 2), hex.slice(2, 4), hex);
  }

  async get(b: BlockRef): Promise<Buffer> {
    if (this.#cache) {
      try {
        const plain = await readFile(this.#cachePath(b.id));
        // A cached block must still hash to its key (BLAKE2b-256, or SHA-256 for old blobs).
        if (blake2b256(plain).equals(b.key) || createHash('sha256').update(plain).digest().equals(b.key)) return plain;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(e, this.#cachePath(b.id), 'read');
      }
    }
    const plain = decodeBlock(await this.#router.get(b.id), b.id, b.key);
    if (this.#cache) {
      const path = this.#cachePath(b.id);
      const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
      try {
        await mkdir(join(path, '..'), { recursive: true });
        await writeFile(tmp, plain);
        await rename(tmp, path);
      } catch (e) {
        throw fromSystemError(e, path, 'write');
      }
    }
    return plain;
  }

  /** The blocks' plaintexts in order, `READ_AHEAD` in flight; checks the total against `size`. */
  async *content(blocks: BlockRef[], size: number, what: string): AsyncGenerator<Buffer> {
    const pending: Promise<Buffer>[] = [];
    let next = 0;
    let total = 0;
    const fill = (): void => {
      while (next < blocks.length && pending.length < READ_AHEAD) {
        const p = this.get(blocks[next++]!);
        p.catch(() => undefined);
        pending.push(p);
      }
    };
    fill();
    while (pending.length > 0) {
      const plain = await pending.shift()!;
      fill();
      total += plain.length;
      if (total > size) break;
      yield plain;
    }
    if (total !== size) throw new VmimgError('CORRUPT_MANIFEST', `${what}: its blocks hold ${total > size ? 'more than' : total} bytes, the manifest says ${size}`, { path: what, size });
  }
}

export interface UnpackOptions extends BlockSourceOptions {
  preserveOwnership?: boolean;
  onWarning?: (message: string) => void;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface UnpackSummary {
  target: string;
  files: number;
  directories: number;
  symlinks: number;
  special: number;
  skipped: number;
  bytes: number;
}

function major(rdev: bigint): number {
  return Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
}
function minor(rdev: bigint): number {
  return Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
}

/** Whether `target` exists; it must be absent or an empty directory (not a symlink to one). */
async function checkTarget(target: string): Promise<boolean> {
  try {
    const st = await lstat(target);
    if (!st.isDirectory()) throw new VmimgError('USAGE', `unpack target '${target}' exists and is not a directory`, { path: target });
    if ((await readdir(target)).length > 0) throw new VmimgError('USAGE', `unpack target '${target}' is not empty`, { path: target });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    if (e instanceof VmimgError) throw e;
    throw fromSystemError(e, target, 'open');
  }
}

/** Removes what a failed unpack created: the target itself, or the entries of the empty folder it was. */
async function removeCreated(target: string, existed: boolean): Promise<void> {
  try {
    if (!existed) await rm(target, { recursive: true, force: true });
    else for (const name of await readdir(target)) await rm(join(target, name), { recursive: true, force: true });
  } catch {
    // Best effort: the original error is what the caller needs.
  }
}

export async function unpackFlist(manifest: string, target: string, options: UnpackOptions): Promise<UnpackSummary> {
  const reader = ManifestReader.open(manifest);
  const warn = options.onWarning ?? (() => undefined);
  const summary: UnpackSummary = { target, files: 0, directories: 0, symlinks: 0, special: 0, skipped: 0, bytes: 0 };
  const isRoot = process.getuid?.() === 0;
  let existed: boolean | undefined;
  try {
    // The whole tree is walked (names, loops, symlink targets checked) before anything is written.
    for (const { path, row } of reader.walk()) {
      if ((row.mode & S_IFMT) === S_IFLNK) {
        const t = reader.extra(row.ino);
        if (!t || t.length === 0 || t.includes(0)) throw new VmimgError('CORRUPT_MANIFEST', `manifest '${manifest}': symlink '${path}' has no target`, { path });
      }
    }
    existed = await checkTarget(target);
    const source = await BlockSource.create(options);
    const total = reader.counts().bytes;
    const dirs: Array<{ path: string; row: InodeRow }> = [];
    const chown = async (path: string, row: InodeRow): Promise<void> => {
      if (options.preserveOwnership) await lchown(path, row.uid, row.gid).catch((e: unknown) => Promise.reject(fromSystemError(e, path, 'write')));
    };
    for (const { path, row } of reader.walk()) {
      const host = path === '/' ? target : join(target, path);
      const type = row.mode & S_IFMT;
      const perm = row.mode & 0o7777;
      try {
        if (type === S_IFDIR) {
          await mkdir(host, { recursive: path === '/', mode: 0o700 });
          dirs.push({ path: host, row });
          summary.directories++;
        } else if (type === S_IFREG) {
          const fh = await open(host, 'wx', 0o600);
          try {
            for await (const plain of source.content(reader.blocks(row.ino, row.size), row.size, path)) {
              await fh.write(plain);
              summary.bytes += plain.length;
              options.onProgress?.(summary.bytes, total);
            }
          } finally {
            await fh.close();
          }
          await chown(host, row);
          await chmod(host, perm);
          await utimes(host, row.mtime, row.mtime);
          summary.files++;
        } else if (type === S_IFLNK) {
          const target = reader.extra(row.ino);
          if (!target || target.length === 0 || target.includes(0)) throw new VmimgError('CORRUPT_MANIFEST', `manifest '${manifest}': symlink '${path}' has no target`, { path });
          await symlink(target, host);
          await chown(host, row);
          await lutimes(host, row.mtime, row.mtime);
          summary.symlinks++;
        } else if (type === 0o020000 || type === 0o060000 || type === 0o010000) {
          if (type !== 0o010000 && !isRoot) {
            warn(`${path}: device node skipped (creating one needs root)`);
            summary.skipped++;
            continue;
          }
          // mknod/mkfifo -m take permission bits only; setuid/setgid/sticky follow with chmod.
          const args = type === 0o010000 ? ['-m', '600', host] : ['-m', '600', host, type === 0o020000 ? 'c' : 'b', String(major(row.rdev)), String(minor(row.rdev))];
          await execFileAsync(type === 0o010000 ? 'mkfifo' : 'mknod', args);
          await chown(host, row);
          await chmod(host, perm);
          await utimes(host, row.mtime, row.mtime);
          summary.special++;
        } else {
          warn(`${path}: ${type === 0o140000 ? 'socket' : `entry of type 0${type.toString(8)}`} skipped`);
          summary.skipped++;
        }
      } catch (e) {
        if (e instanceof VmimgError) throw e;
        throw fromSystemError(e, host, 'create');
      }
    }
    for (const d of dirs.reverse()) {
      await chown(d.path, d.row);
      await chmod(d.path, d.row.mode & 0o7777);
      await utimes(d.path, d.row.mtime, d.row.mtime);
    }
    return summary;
  } catch (e) {
    if (existed !== undefined) await removeCreated(target, existed);
    throw e;
  } finally {
    reader.close();
  }
}

/** Streams the content of the regular file at `path` in the manifest. */
export async function* catFile(manifest: string, path: string, options: BlockSourceOptions): AsyncGenerator<Buffer> {
  const reader = ManifestReader.open(manifest);
  try {
    const row = reader.lookup(path);
    if (!row) throw new VmimgError('FLIST_PATH_NOT_FOUND', `'${path}' is not in manifest '${manifest}'`, { path, manifest });
    const type = row.mode & S_IFMT;
    if (type === S_IFLNK) throw new VmimgError('USAGE', `'${path}' is a symlink to '${reader.extra(row.ino)?.toString() ?? ''}' (cat that path instead)`, { path });
    if (type !== S_IFREG) throw new VmimgError('USAGE', `'${path}' is not a regular file`, { path });
    const source = await BlockSource.create(options);
    yield* source.content(reader.blocks(row.ino, row.size), row.size, path);
  } finally {
    reader.close();
  }
}
