/**
 * A directory on disk as a tree source. Every entry is lstat'ed (symlinks are recorded, never
 * followed; only the root the user named is stat'ed through a symlink), names are read as raw
 * bytes, hard links are recognised by (st_dev, st_ino) for non-directories with st_nlink > 1,
 * and file content is read later, on demand, through O_NOFOLLOW opens (content.ts).
 *
 * Extended attributes are read through the native helper (llistxattr/lgetxattr, links not
 * followed, one call for the whole walk), as mke2fs -d copies them: user.*, security.* (file
 * capabilities, SELinux labels), system.posix_acl_* (ACLs), and trusted.* when run as root.
 * Without the native helper a directory's entries carry none (tar sources carry theirs in pax
 * records either way).
 */
import { lstatSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import { errnoError, native } from '../storage/native.js';
import { fromSystemError, VmimgError } from '../util/errors.js';
import { fileContent } from './content.js';
import { childPath, MAX_PATH_BYTES, showPath } from './path.js';
import { PERMISSION_MASK, type DeviceNumber, type EntryType, type RawEntry } from './types.js';

/** Linux dev_t → major/minor (glibc gnu_dev_major/gnu_dev_minor bit layout). */
export function splitDev(rdev: bigint): DeviceNumber {
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return { major, minor };
}

function typeOf(st: BigIntStats): EntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return 'socket';
}

/** Joins a host directory path (string or bytes) with a raw name, as bytes. */
function hostJoin(dir: Buffer, name: Buffer): Buffer {
  return Buffer.concat([dir, Buffer.from('/'), name]);
}

/**
 * Reads the directory `root` recursively into raw entries (root first, then in walk order).
 * The walk uses synchronous metadata calls: one thread-pool round trip per entry costs far more
 * than the lstat itself (10k entries: ~0.5 s against ~50 ms).
 * Throws FILE_NOT_FOUND / READ_FAILED naming the path that could not be read.
 */
export async function readDirectory(root: string): Promise<RawEntry[]> {
  let rootStat: BigIntStats;
  try {
    rootStat = statSync(root, { bigint: true });
  } catch (e) {
    throw fromSystemError(e, root, 'open');
  }
  if (!rootStat.isDirectory()) throw new VmimgError('READ_FAILED', `'${root}' is not a directory`, { path: root });
  const entries: RawEntry[] = [entryFrom(Buffer.alloc(0), rootStat)];
  const hosts: Buffer[] = [Buffer.from(root)];
  const pending: Array<{ host: Buffer; tree: Buffer }> = [{ host: Buffer.from(root), tree: Buffer.alloc(0) }];
  while (pending.length > 0) {
    const dir = pending.pop()!;
    let names: Buffer[];
    try {
      names = readdirSync(dir.host, { encoding: 'buffer' });
    } catch (e) {
      throw fromSystemError(e, showPath(dir.host), 'read');
    }
    for (const name of names) {
      const host = hostJoin(dir.host, name);
      const tree = childPath(dir.tree, name);
      if (tree.length > MAX_PATH_BYTES) {
        throw new VmimgError('PATH_TOO_LONG', `Path '${showPath(tree.subarray(0, 64))}...' in '${root}' is longer than ${MAX_PATH_BYTES} bytes`, { root });
      }
      let st: BigIntStats;
      try {
        st = lstatSync(host, { bigint: true });
      } catch (e) {
        throw fromSystemError(e, showPath(host), 'read');
      }
      const entry = entryFrom(tree, st);
      if (entry.type === 'file') entry.content = fileContent(host, entry.size);
      if (entry.type === 'symlink') {
        try {
          entry.symlinkTarget = readlinkSync(host, { encoding: 'buffer' });
        } catch (e) {
          throw fromSystemError(e, showPath(host), 'read');
        }
        entry.size = entry.symlinkTarget.length;
      }
      entries.push(entry);
      hosts.push(host);
      if (entry.type === 'dir') pending.push({ host, tree });
    }
  }
  readXattrsInto(entries, hosts);
  return entries;
}

/** Fills each entry's xattrs from its host path (hosts[i] for entries[i]) through the native helper. */
function readXattrsInto(entries: RawEntry[], hosts: Buffer[]): void {
  if (!native?.readXattrs) return;
  const found = native.readXattrs(hosts);
  for (let i = 0; i < entries.length; i++) {
    const r = found[i];
    if (r === undefined) continue;
    if (typeof r === 'number') throw errnoError(r, showPath(hosts[i]!), 'read').within('while reading extended attributes');
    const xattrs = entries[i]!.xattrs;
    for (let k = 0; k + 1 < r.length; k += 2) xattrs.set(r[k]!.toString('utf8'), r[k + 1]!);
  }
}

function entryFrom(path: Buffer, st: BigIntStats): RawEntry {
  const type = typeOf(st);
  const entry: RawEntry = {
    path,
    type,
    mode: Number(st.mode) & PERMISSION_MASK,
    uid: Number(st.uid),
    gid: Number(st.gid),
    mtimeNs: st.mtimeNs,
    size: type === 'file' ? Number(st.size) : 0,
    xattrs: new Map(),
  };
  if (type === 'char' || type === 'block') entry.rdev = splitDev(st.rdev);
  if (type !== 'dir' && st.nlink > 1n) entry.inodeKey = `${st.dev}:${st.ino}`;
  return entry;
}
