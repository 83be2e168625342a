/**
 * The file-tree model every filesystem builder consumes (DESIGN.md "Tree"). A source (a directory,
 * a tar stream, an overlay of several) yields raw entries in source order; normaliseTree turns them
 * into a Tree: one entry per path, parents present, sorted by path bytes, hard links grouped.
 */

/** Entry types. 'hardlink' names another entry of the same Tree whose inode it shares. */
export type EntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo' | 'socket';

/** Permission bits kept in `mode`: rwx for user/group/other plus setuid, setgid and sticky. */
export const PERMISSION_MASK = 0o7777;
export const S_ISUID = 0o4000;
export const S_ISGID = 0o2000;
export const S_ISVTX = 0o1000;

/** POSIX st_mode file-type bits (<sys/stat.h>), for builders that store a full st_mode. */
export const S_IFMT = 0o170000;
export const FILE_TYPE_BITS: Readonly<Record<Exclude<EntryType, 'hardlink'>, number>> = {
  socket: 0o140000,
  symlink: 0o120000,
  file: 0o100000,
  block: 0o060000,
  dir: 0o040000,
  char: 0o020000,
  fifo: 0o010000,
};

/**
 * A regular file's bytes, readable any number of times without holding the file in memory.
 * Contract: `stream()` yields exactly `size` bytes in order, or throws SOURCE_CHANGED if the
 * underlying bytes no longer have that length; `read` returns exactly `length` bytes of
 * [offset, offset+length) ⊆ [0, size) (OUT_OF_BOUNDS otherwise), length ≤ MAX_CONTENT_READ.
 */
export interface ContentSource {
  readonly size: number;
  /**
   * Set when the content is exactly the whole regular file at this host path (opened with
   * O_NOFOLLOW); readers may then read it straight into their own buffers (readSmallFileInto).
   */
  readonly fsPath?: string | Buffer;
  stream(): AsyncIterable<Uint8Array>;
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** Largest single ContentSource.read (streams use smaller chunks). */
export const MAX_CONTENT_READ = 16 * 1024 * 1024;

/** Device numbers of a char/block node (Linux major/minor). */
export interface DeviceNumber {
  readonly major: number;
  readonly minor: number;
}

/**
 * One entry, as a source reports it (before normalisation). Paths are relative, '/'-separated
 * bytes with no '.', '..' or empty components; the root directory is the empty path.
 */
export interface RawEntry {
  path: Buffer;
  type: EntryType;
  /** Permission bits only (PERMISSION_MASK); the type lives in `type`. */
  mode: number;
  uid: number;
  gid: number;
  /** Modification time in nanoseconds since the Unix epoch (whole seconds where the source has no more). */
  mtimeNs: bigint;
  /** file: content length; symlink: target length; everything else 0. */
  size: number;
  content?: ContentSource;
  /** symlink: the target bytes, never interpreted or followed. */
  symlinkTarget?: Buffer;
  /** hardlink: the path (same rules as `path`) of the entry whose inode it shares. */
  linkTarget?: Buffer;
  rdev?: DeviceNumber;
  /** Extended attributes, name → value bytes ("security.capability", "user.x", ...). */
  xattrs: Map<string, Buffer>;
  /** Source-local identity of a hard-linked inode (dev:ino from a directory); grouped by normaliseTree. */
  inodeKey?: string;
}

/**
 * A normalised entry. Hard links: every member of a group has the same `linkGroup` (numbered
 * 0, 1, ... in path order of the groups' first members); the first member by path keeps its own
 * type (file, symlink, ...), later members have type 'hardlink', `linkTarget` = the first
 * member's path, and carry the first member's metadata, size and content (an inode is shared).
 */
export interface TreeEntry extends Readonly<Omit<RawEntry, 'inodeKey' | 'xattrs'>> {
  readonly xattrs: ReadonlyMap<string, Buffer>;
  readonly linkGroup?: number;
}

/** A normalised tree: entries sorted by path bytes, root ('' path, a dir) first. */
export interface Tree {
  readonly entries: readonly TreeEntry[];
  /** Releases what the sources hold (spool files, open tar files). Idempotent. */
  close(): Promise<void>;
}
