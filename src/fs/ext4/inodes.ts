/**
 * Tree → inode model: numbering, directory children, link counts. Numbering is deterministic:
 * root is inode 2, lost+found 11 (mke2fs's convention), every other inode gets the next number
 * in path order (the Tree is sorted by path bytes), so a directory's children have ascending
 * numbers. Hard-link members share the first member's inode (docs/tree.md "Hard links").
 */
import { showPath } from '../../tree/path.js';
import type { TreeEntry } from '../../tree/types.js';
import { VmimgError } from '../../util/errors.js';
import { FIRST_INO, FT_BLK, FT_CHR, FT_DIR, FT_FIFO, FT_REG, FT_SOCK, FT_SYMLINK, LINK_MAX, LOST_FOUND_INO, MAX_NAME_LEN, ROOT_INO } from './constants.js';

export type InodeKind = 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';

export interface DirChild {
  name: Buffer;
  ino: number;
  fileType: number;
}

export interface InodeModel {
  ino: number;
  kind: InodeKind;
  /** The entry whose metadata the inode carries; undefined for a synthesised lost+found. */
  entry: TreeEntry | undefined;
  /** Directory entries naming this inode (files), or 2 + subdirectories (directories). */
  links: number;
  /** Directories: children in path order; `parent` is '..'. */
  children: DirChild[];
  parent: number;
}

export interface InodeTable {
  /** Used inodes from 2 upward, sorted by number (11 is lost+found when present). */
  inodes: InodeModel[];
  /** Highest inode number in use. */
  lastIno: number;
}

const FILE_TYPES: Record<InodeKind, number> = { file: FT_REG, dir: FT_DIR, symlink: FT_SYMLINK, char: FT_CHR, block: FT_BLK, fifo: FT_FIFO, socket: FT_SOCK };

export function fileTypeOf(kind: InodeKind): number {
  return FILE_TYPES[kind];
}

const key = (p: Buffer): string => p.toString('latin1');

function splitPath(path: Buffer): { parent: Buffer; name: Buffer } {
  const slash = path.lastIndexOf(0x2f);
  return slash < 0 ? { parent: Buffer.alloc(0), name: path } : { parent: path.subarray(0, slash), name: path.subarray(slash + 1) };
}

/** Builds the inode model of a normalised Tree (root first, sorted by path bytes). */
export function assignInodes(entries: readonly TreeEntry[], withLostFound = true): InodeTable {
  const root = entries[0];
  if (!root || root.path.length !== 0 || root.type !== 'dir') throw new VmimgError('INTERNAL', 'tree has no root directory entry', {});
  const lf = entries.find((e) => e.path.length === 10 && key(e.path) === 'lost+found');
  const makeLostFound = withLostFound && (lf === undefined || lf.type === 'dir');
  const byIno = new Map<number, InodeModel>();
  const dirIno = new Map<string, number>();
  const groupIno = new Map<number, number>();
  const newInode = (ino: number, kind: InodeKind, entry: TreeEntry | undefined): InodeModel => {
    const m: InodeModel = { ino, kind, entry, links: kind === 'dir' ? 2 : 0, children: [], parent: ROOT_INO };
    byIno.set(ino, m);
    return m;
  };
  newInode(ROOT_INO, 'dir', root);
  dirIno.set('', ROOT_INO);
  if (makeLostFound) {
    newInode(LOST_FOUND_INO, 'dir', lf);
    dirIno.set('lost+found', LOST_FOUND_INO);
  }
  let next = FIRST_INO + (makeLostFound ? 1 : 0);
  for (let i = 1; i < entries.length; i++) {
    const e = entries[i]!;
    const { parent, name } = splitPath(e.path);
    if (name.length > MAX_NAME_LEN) {
      throw new VmimgError('UNSUPPORTED_ENTRY', `'${showPath(e.path)}': a name is ${name.length} bytes; ext4 names are at most ${MAX_NAME_LEN}`, { path: showPath(e.path) });
    }
    const parentIno = dirIno.get(key(parent));
    if (parentIno === undefined) throw new VmimgError('INTERNAL', `'${showPath(e.path)}' has no parent directory in the tree`, { path: showPath(e.path) });
    let inode: InodeModel;
    if (e.type === 'hardlink') {
      const ino = e.linkGroup === undefined ? undefined : groupIno.get(e.linkGroup);
      if (ino === undefined) throw new VmimgError('INTERNAL', `hard link '${showPath(e.path)}' precedes its target`, { path: showPath(e.path) });
      inode = byIno.get(ino)!;
    } else if (e.type === 'dir' && makeLostFound && parentIno === ROOT_INO && key(name) === 'lost+found') {
      inode = byIno.get(LOST_FOUND_INO)!;
    } else {
      inode = newInode(next++, e.type, e);
      if (e.linkGroup !== undefined) groupIno.set(e.linkGroup, inode.ino);
    }
    if (inode.kind === 'dir') {
      dirIno.set(key(e.path), inode.ino);
      inode.parent = parentIno;
    } else {
      inode.links++;
      if (inode.links > LINK_MAX) throw new VmimgError('UNSUPPORTED_ENTRY', `'${showPath(e.path)}': more than ${LINK_MAX} hard links to one inode`, { path: showPath(e.path) });
    }
    const parentInode = byIno.get(parentIno)!;
    parentInode.children.push({ name: Buffer.from(name), ino: inode.ino, fileType: fileTypeOf(inode.kind) });
    if (inode.kind === 'dir') parentInode.links++;
  }
  if (makeLostFound && lf === undefined) {
    const r = byIno.get(ROOT_INO)!;
    // lost+found sorts among root's children by name, as if it were in the tree.
    r.children.push({ name: Buffer.from('lost+found'), ino: LOST_FOUND_INO, fileType: FT_DIR });
    r.children.sort((a, b) => Buffer.compare(a.name, b.name));
    r.links++;
  }
  const inodes = [...byIno.values()].sort((a, b) => a.ino - b.ino);
  return { inodes, lastIno: next - 1 };
}
