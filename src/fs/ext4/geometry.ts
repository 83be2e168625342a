/**
 * Block-group geometry and the block allocator. Layout (docs/ext4.md "Layout"): group 0 starts
 * with the superblock (byte 1024 of block 0) and the group descriptor table; with sparse_super
 * groups 1 and powers of 3, 5, 7 carry backup copies (super.rst "sparse_super"), otherwise every
 * group does. flex_bg lets every bitmap and inode table live anywhere (group_descr.rst
 * "Flexible Block Groups"), so they are packed right after group 0's descriptors and the
 * allocator hands out the remaining blocks in ascending order, around the backup copies.
 */
import { VmimgError } from '../../util/errors.js';
import { BLOCKS_PER_GROUP, BLOCK_SIZE, INODE_SIZE, INODES_PER_BLOCK } from './constants.js';
import type { Run } from './extents.js';

export interface Geometry {
  blocksCount: number;
  groups: number;
  inodesPerGroup: number;
  /** Inode-table blocks per group. */
  itableBlocks: number;
  descSize: number;
  gdtBlocks: number;
  /** Groups holding a superblock + GDT copy (0 first), ascending. */
  backupGroups: number[];
}

function isPowerOf(n: number, base: number): boolean {
  let p = 1;
  while (p < n) p *= base;
  return p === n;
}

/** sparse_super: groups 0, 1 and powers of 3, 5 and 7 hold backups. */
export function hasBackup(group: number, sparse: boolean): boolean {
  if (!sparse || group <= 1) return true;
  if (group % 2 === 0) return false;
  return isPowerOf(group, 3) || isPowerOf(group, 5) || isPowerOf(group, 7);
}

/** Smallest last group kept; a shorter tail is left out of the filesystem (as mke2fs does). */
const MIN_LAST_GROUP = 256;

/**
 * Geometry for `blocks` blocks holding at least `inodes` inodes. The inode count is rounded up
 * so each group's table fills whole blocks (s_inodes_count = inodes_per_group × groups, which
 * the kernel insists on).
 */
export function makeGeometry(blocks: number, inodes: number, descSize: number, sparse: boolean): Geometry {
  let groups = Math.ceil(blocks / BLOCKS_PER_GROUP);
  if (groups > 1 && blocks - (groups - 1) * BLOCKS_PER_GROUP < MIN_LAST_GROUP) {
    groups--;
    blocks = groups * BLOCKS_PER_GROUP;
  }
  const perGroup = Math.ceil(inodes / groups / INODES_PER_BLOCK) * INODES_PER_BLOCK;
  const inodesPerGroup = Math.max(INODES_PER_BLOCK, perGroup);
  if (inodesPerGroup > 8 * BLOCK_SIZE) {
    throw new VmimgError('FS_TOO_SMALL', `${inodes} inodes do not fit in ${groups} block group(s) of at most ${8 * BLOCK_SIZE} inodes; the filesystem must be larger`, { inodes, groups });
  }
  if (groups * inodesPerGroup > 0xffffffff) throw new VmimgError('FS_TOO_LARGE', `too many inodes (${groups * inodesPerGroup}; ext4 holds at most 4294967295): raise the bytes per inode (-i) or give -N`, { inodes });
  const backupGroups: number[] = [];
  for (let g = 0; g < groups; g++) if (hasBackup(g, sparse)) backupGroups.push(g);
  return {
    blocksCount: blocks,
    groups,
    inodesPerGroup,
    itableBlocks: (inodesPerGroup * INODE_SIZE) / BLOCK_SIZE,
    descSize,
    gdtBlocks: Math.ceil((groups * descSize) / BLOCK_SIZE),
    backupGroups,
  };
}

/** Blocks in group `g` (the last group may be short). */
export function groupBlocks(geo: Geometry, g: number): number {
  return Math.min(BLOCKS_PER_GROUP, geo.blocksCount - g * BLOCKS_PER_GROUP);
}

/**
 * Hands out blocks in ascending order, skipping superblock/GDT copies. It never fails: blocks
 * past the end are handed out too, and `end` tells how many blocks the filesystem would need.
 */
export class Allocator {
  #next: number;
  readonly #reserved: Run[];
  #r = 0;

  constructor(geo: Geometry) {
    this.#reserved = geo.backupGroups.map((g) => ({ start: g * BLOCKS_PER_GROUP, length: 1 + geo.gdtBlocks }));
    this.#next = 0;
    this.#skip();
  }

  /** One past the highest block handed out. */
  get end(): number {
    return this.#next;
  }

  #skip(): void {
    for (;;) {
      const r = this.#reserved[this.#r];
      if (!r || this.#next < r.start) return;
      if (this.#next < r.start + r.length) this.#next = r.start + r.length;
      this.#r++;
    }
  }

  /** `n` contiguous blocks; starts after a backup copy when it would overlap one. */
  contiguous(n: number): number {
    for (;;) {
      this.#skip();
      const r = this.#reserved[this.#r];
      if (!r || this.#next + n <= r.start) break;
      this.#next = r.start;
    }
    const start = this.#next;
    this.#next += n;
    return start;
  }

  /** `n` blocks as few ascending runs as the backup copies allow. */
  runs(n: number): Run[] {
    const out: Run[] = [];
    while (n > 0) {
      this.#skip();
      const r = this.#reserved[this.#r];
      const len = r ? Math.min(n, r.start - this.#next) : n;
      out.push({ start: this.#next, length: len });
      this.#next += len;
      n -= len;
    }
    return out;
  }
}
