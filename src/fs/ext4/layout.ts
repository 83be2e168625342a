/**
 * Placement: given the inode model and a geometry, decides the block of every bitmap, inode
 * table, journal block, directory block, extent-tree node, xattr block and file data run. Pure
 * and cheap (no bytes are encoded here), so sizing can try several geometries.
 */
import { BLOCK_SIZE, FAST_SYMLINK_MAX, LOST_FOUND_INO } from './constants.js';
import { dirBlockCount } from './dir.js';
import { extentTreeBlocks, type Run } from './extents.js';
import { Allocator, type Geometry } from './geometry.js';
import type { InodeModel } from './inodes.js';
import type { XattrPlacement } from './xattr.js';

/** What an inode needs, independent of where it goes. */
export interface InodeNeeds {
  model: InodeModel;
  /** Data blocks mapped by extents (file data, directory blocks, slow symlink target). */
  dataBlocks: number;
  /** Uses an extent tree (regular files, directories, slow symlinks). */
  extents: boolean;
  xattrs: XattrPlacement;
}

export interface PlacedInode extends InodeNeeds {
  runs: Run[];
  /** Extent-tree node blocks, bottom level first. */
  nodeBlocks: number[];
  xattrBlock?: number;
  /** Blocks charged to the inode (i_blocks / 8). */
  blocksUsed: number;
}

export interface Placement {
  blockBitmaps: number[];
  inodeBitmaps: number[];
  inodeTables: number[];
  journal: Run[];
  /** Extent-tree node blocks of the journal inode (a journal of more than 4 extents). */
  journalNodes: number[];
  inodes: PlacedInode[];
  /** One past the highest block used: the filesystem needs at least this many blocks. */
  end: number;
}

/** The per-inode needs (dir blocks with or without checksum tails). */
export function inodeNeeds(model: InodeModel, csum: boolean, xattrs: XattrPlacement): InodeNeeds {
  const e = model.entry;
  switch (model.kind) {
    case 'dir':
      return { model, dataBlocks: dirBlockCount(model.children, csum, model.ino === LOST_FOUND_INO ? 4 : 1), extents: true, xattrs };
    case 'file':
      return { model, dataBlocks: Math.ceil((e?.size ?? 0) / BLOCK_SIZE), extents: true, xattrs };
    case 'symlink': {
      const slow = (e?.symlinkTarget?.length ?? 0) > FAST_SYMLINK_MAX;
      return { model, dataBlocks: slow ? 1 : 0, extents: slow, xattrs };
    }
    default:
      return { model, dataBlocks: 0, extents: false, xattrs };
  }
}

/** `n` single blocks for extent-tree nodes. */
function nodes(alloc: Allocator, n: number): number[] {
  return n > 0 ? alloc.runs(n).flatMap((r) => Array.from({ length: r.length }, (_, i) => r.start + i)) : [];
}

/** Places everything for `geo`; `journalBlocks` 0 means no journal. */
export function place(needs: readonly InodeNeeds[], geo: Geometry, journalBlocks: number): Placement {
  const alloc = new Allocator(geo);
  const blockBitmaps: number[] = [];
  const inodeBitmaps: number[] = [];
  const inodeTables: number[] = [];
  for (let g = 0; g < geo.groups; g++) blockBitmaps.push(alloc.contiguous(1));
  for (let g = 0; g < geo.groups; g++) inodeBitmaps.push(alloc.contiguous(1));
  for (let g = 0; g < geo.groups; g++) inodeTables.push(alloc.contiguous(geo.itableBlocks));
  const journal = journalBlocks > 0 ? alloc.runs(journalBlocks) : [];
  const journalNodes = nodes(alloc, extentTreeBlocks(journal));
  const inodes: PlacedInode[] = needs.map((n) => {
    const runs = n.dataBlocks > 0 ? alloc.runs(n.dataBlocks) : [];
    const treeBlocks = n.extents ? extentTreeBlocks(runs) : 0;
    const nodeBlocks = nodes(alloc, treeBlocks);
    // Named fields, not a spread: spreading 10k objects costs V8's slow clone path (~15 ms).
    const p: PlacedInode = { model: n.model, dataBlocks: n.dataBlocks, extents: n.extents, xattrs: n.xattrs, runs, nodeBlocks, blocksUsed: n.dataBlocks + treeBlocks };
    if (n.xattrs.block) {
      p.xattrBlock = alloc.contiguous(1);
      p.blocksUsed++;
    }
    return p;
  });
  return { blockBitmaps, inodeBitmaps, inodeTables, journal, journalNodes, inodes, end: alloc.end };
}
