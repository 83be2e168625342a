/**
 * Plans a newc archive from a Tree: one member per entry in the Tree's order (sorted by path
 * bytes, the root first as "."), inode numbers 0, 1, 2, ... in that order as GNU cpio
 * --reproducible renumbers them (hard-link members share their group's number), every field
 * checked against newc's 8-hex-digit limits and the kernel unpacker's name/symlink limits
 * (CPIO_LIMIT) before a byte is written.
 *
 * Hard links follow the newc convention both GNU cpio and the kernel unpacker rely on: every
 * member of a group carries the same c_ino and c_nlink (the group size); a regular file's data
 * travels only on the LAST member of its group in archive order, the others have c_filesize 0
 * (GNU cpio -i defers size-0 links until the data arrives; the kernel links later members to the
 * first name and writes the data through the last one). Symlink members each carry the target.
 */
import { showPath } from '../../tree/path.js';
import { FILE_TYPE_BITS, type ContentSource, type EntryType, type Tree, type TreeEntry } from '../../tree/types.js';
import { VmimgError } from '../../util/errors.js';
import { FIELD_MAX, headerBlockSize, NAME_SIZE_MAX, pad4, SYMLINK_TARGET_MAX, type NewcHeader, encodeTrailer } from './format.js';

export interface CpioMember {
  readonly header: NewcHeader;
  /** Archive name without the NUL: "." for the root, else the tree path. */
  readonly name: Buffer;
  /** Regular-file data (only on the member that carries the group's data). */
  readonly content?: ContentSource;
  /** Symlink target (the member's data). */
  readonly symlinkTarget?: Buffer;
}

export interface CpioPlan {
  readonly members: readonly CpioMember[];
  /** Bytes of the uncompressed archive, trailer included. */
  readonly size: number;
  /** Entries whose extended attributes newc cannot carry (they are left out). */
  readonly droppedXattrs: number;
  /** Regular-file data bytes stored (hard-linked content counted once). */
  readonly dataBytes: number;
}

const ROOT_NAME = Buffer.from('.', 'latin1');
const SLASH = 0x2f;

function limit(path: Uint8Array, what: string, value: number | bigint, max: number): never {
  throw new VmimgError('CPIO_LIMIT', `'${showPath(path) || '.'}': ${what} ${value} does not fit a newc archive (at most ${max})`, { path: showPath(path), field: what, value: String(value), max });
}

function field(path: Uint8Array, what: string, value: number, max = FIELD_MAX): number {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) limit(path, what, value, max);
  return value;
}

function parentKey(path: Buffer): string {
  const i = path.lastIndexOf(SLASH);
  return i < 0 ? '' : path.subarray(0, i).toString('latin1');
}

/** Whole seconds of an ns timestamp (floor), checked against the unsigned 32-bit c_mtime. */
function mtimeSeconds(e: TreeEntry): number {
  const s = e.mtimeNs / 1_000_000_000n - (e.mtimeNs % 1_000_000_000n < 0n ? 1n : 0n);
  if (s < 0n || s > BigInt(FIELD_MAX)) limit(e.path, 'mtime (seconds)', s, FIELD_MAX);
  return Number(s);
}

export function planCpio(tree: Tree): CpioPlan {
  const entries = tree.entries;
  // Directory link counts: 2 + direct subdirectories (what stat reports and GNU cpio stores).
  const subdirs = new Map<string, number>();
  for (const e of entries) {
    if (e.type === 'dir' && e.path.length > 0) {
      const k = parentKey(e.path);
      subdirs.set(k, (subdirs.get(k) ?? 0) + 1);
    }
  }
  // Hard-link groups: type and ino of the first member, member count, index of the last member.
  const groups = new Map<number, { type: Exclude<EntryType, 'hardlink'>; ino: number | undefined; count: number; last: number }>();
  entries.forEach((e, i) => {
    if (e.linkGroup === undefined) return;
    const g = groups.get(e.linkGroup);
    if (g) {
      g.count++;
      g.last = i;
    } else {
      if (e.type === 'hardlink') throw new VmimgError('INTERNAL', `'${showPath(e.path)}': hard link before the first member of its group`, { path: showPath(e.path) });
      groups.set(e.linkGroup, { type: e.type, ino: undefined, count: 1, last: i });
    }
  });

  const members: CpioMember[] = [];
  let nextIno = 0;
  let size = 0;
  let droppedXattrs = 0;
  let dataBytes = 0;
  entries.forEach((e, i) => {
    const group = e.linkGroup === undefined ? undefined : groups.get(e.linkGroup);
    let type: Exclude<EntryType, 'hardlink'>;
    if (e.type === 'hardlink') {
      if (!group) throw new VmimgError('INTERNAL', `'${showPath(e.path)}': hard link without a group`, { path: showPath(e.path) });
      type = group.type;
    } else {
      type = e.type;
    }
    let ino: number;
    if (group && group.ino !== undefined) ino = group.ino;
    else {
      ino = field(e.path, 'inode number', nextIno++);
      if (group) group.ino = ino;
    }
    const name = e.path.length === 0 ? ROOT_NAME : Buffer.from(e.path);
    if (name.length + 1 > NAME_SIZE_MAX) limit(e.path, 'name size (with NUL)', name.length + 1, NAME_SIZE_MAX);
    const nlink = type === 'dir' ? 2 + (subdirs.get(e.path.toString('latin1')) ?? 0) : (group?.count ?? 1);
    let filesize = 0;
    let content: ContentSource | undefined;
    let symlinkTarget: Buffer | undefined;
    if (type === 'file' && (!group || group.last === i)) {
      if (!e.content) throw new VmimgError('INTERNAL', `'${showPath(e.path)}': file without content`, { path: showPath(e.path) });
      filesize = field(e.path, 'file size', e.size);
      content = e.content;
      dataBytes += filesize;
    } else if (type === 'symlink') {
      symlinkTarget = e.symlinkTarget ?? Buffer.alloc(0);
      filesize = field(e.path, 'symlink target length', symlinkTarget.length, SYMLINK_TARGET_MAX);
    }
    const rdev = type === 'char' || type === 'block' ? e.rdev : undefined;
    if (e.xattrs.size > 0) droppedXattrs++;
    const header: NewcHeader = {
      ino,
      mode: FILE_TYPE_BITS[type] | (e.mode & 0o7777),
      uid: field(e.path, 'uid', e.uid),
      gid: field(e.path, 'gid', e.gid),
      nlink: field(e.path, 'link count', nlink),
      mtime: mtimeSeconds(e),
      filesize,
      devmajor: 0,
      devminor: 0,
      rdevmajor: field(e.path, 'device major', rdev?.major ?? 0),
      rdevminor: field(e.path, 'device minor', rdev?.minor ?? 0),
      namesize: name.length + 1,
      check: 0,
    };
    members.push({ header, name, content, symlinkTarget });
    size += headerBlockSize(name.length) + filesize + pad4(filesize);
  });
  size += encodeTrailer().length;
  return { members, size, droppedXattrs, dataBytes };
}
