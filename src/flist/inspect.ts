/**
 * `flist inspect` and `flist tree`: what a manifest holds, read without any store.
 */
import { ManifestReader, S_IFMT, type InodeRow, type Route } from './manifest.js';

export interface FlistInspection {
  manifest: string;
  tags: Record<string, string>;
  routes: Route[];
  entries: { directories: number; files: number; symlinks: number; special: number };
  /** Sum of regular file sizes. */
  bytes: number;
  blocks: number;
  uniqueBlobs: number;
}

const KINDS: Record<number, keyof FlistInspection['entries']> = { 0o040000: 'directories', 0o100000: 'files', 0o120000: 'symlinks' };

export function inspectFlist(manifest: string): FlistInspection {
  const r = ManifestReader.open(manifest);
  try {
    const entries = { directories: 0, files: 0, symlinks: 0, special: 0 };
    for (const { row } of r.walk()) entries[KINDS[row.mode & S_IFMT] ?? 'special']++;
    const c = r.counts();
    return { manifest, tags: Object.fromEntries(r.tags()), routes: r.routes(), entries, bytes: c.bytes, blocks: c.blocks, uniqueBlobs: c.uniqueBlobs };
  } finally {
    r.close();
  }
}

export interface TreeLine {
  path: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  target?: string;
}

const TYPE_CHAR: Record<number, string> = { 0o040000: 'd', 0o100000: '-', 0o120000: 'l', 0o020000: 'c', 0o060000: 'b', 0o010000: 'p', 0o140000: 's' };

/** `ls -l`-style mode string: type and rwx bits with setuid/setgid/sticky. */
export function modeString(mode: number): string {
  const rwx = (bits: number, special: boolean, ch: string): string =>
    (bits & 4 ? 'r' : '-') + (bits & 2 ? 'w' : '-') + (special ? (bits & 1 ? ch : ch.toUpperCase()) : bits & 1 ? 'x' : '-');
  return (TYPE_CHAR[mode & S_IFMT] ?? '?') + rwx((mode >> 6) & 7, (mode & 0o4000) !== 0, 's') + rwx((mode >> 3) & 7, (mode & 0o2000) !== 0, 's') + rwx(mode & 7, (mode & 0o1000) !== 0, 't');
}

/** Every entry, parents first and siblings by name. */
export function* flistTree(manifest: string): Generator<TreeLine> {
  const r = ManifestReader.open(manifest);
  try {
    for (const { path, row } of r.walk()) yield line(r, path, row);
  } finally {
    r.close();
  }
}

function line(r: ManifestReader, path: string, row: InodeRow): TreeLine {
  const out: TreeLine = { path, mode: row.mode, uid: row.uid, gid: row.gid, size: row.size, mtime: row.mtime };
  if ((row.mode & S_IFMT) === 0o120000) out.target = r.extra(row.ino)?.toString('utf8') ?? '';
  return out;
}
