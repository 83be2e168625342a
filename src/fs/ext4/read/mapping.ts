/**
 * Logical → physical block mapping of an inode for the reader: extent trees (ifork.rst "Extent
 * Tree") and ext2/ext3 block maps (ifork.rst "Direct/Indirect Block Addressing"), as runs that
 * cover the file's blocks [0, ceil(size / block size)) in order, holes and uninitialised extents
 * as zero runs.
 *
 * Bounds: the extent tree is at most 5 levels, each node's depth must be its parent's minus one,
 * no tree block is visited twice (a loop or a shared node is CORRUPT_IMAGE), index and leaf
 * entries must ascend, extents may not be empty, overlap, or point outside the filesystem, and a
 * tree holds at most one extent per file block (+ MAX_EXTRA_EXTENTS for preallocation past EOF).
 * The tree is walked depth-first as a stream, so memory stays O(depth) plus the visited set.
 * Block maps are walked lazily (nothing is materialised per block); a hole in an indirect level
 * is one zero run.
 */
import { EXTENT_ENTRY_SIZE, EXTENT_MAGIC, MAX_EXTENT_LEN } from '../constants.js';
import { ext4Crc } from '../csum.js';
import { corrupt } from './errors.js';
import { EXTENTS_FL, type Ext4Inode } from './inode.js';

export const MAX_EXTENT_DEPTH = 5;
const MAX_EXTRA_EXTENTS = 4096;
/** Tree blocks one walk may visit (a tree this large would map ~340 M extents). */
const MAX_TREE_NODES = 1 << 20;

export interface Run {
  logical: number;
  count: number;
  /** First physical block; meaningless when `zero`. */
  physical: number;
  /** A hole or an uninitialised extent: reads as zeros. */
  zero: boolean;
}

export interface MapContext {
  blockSize: number;
  blocksCount: number;
  /** Reads `count` blocks from `n`, range-checked against the filesystem. */
  readBlocks(n: number, count?: number): Promise<Buffer>;
  /** The inode's checksum seed when metadata_csum is on (extent tail). */
  inodeSeed?: number;
}

interface Extent {
  logical: number;
  length: number;
  physical: number;
  uninit: boolean;
}

export function fileBlocks(inode: Ext4Inode, blockSize: number): number {
  return Math.ceil(inode.size / blockSize);
}

/**
 * The leaf extents of an extent-mapped inode in logical order, by a depth-first walk that holds
 * only the path from the root (memory O(depth), whatever the tree's size).
 */
async function* extentLeaves(ctx: MapContext, inode: Ext4Inode): AsyncGenerator<Extent> {
  const ino = inode.ino;
  const want = fileBlocks(inode, ctx.blockSize);
  const cap = want + MAX_EXTRA_EXTENTS;
  const seen = new Set<number>();
  let leaves = 0;
  let next = 0;
  async function* visit(node: Buffer, depth: number, where: string): AsyncGenerator<Extent> {
    const magic = node.readUInt16LE(0);
    if (magic !== EXTENT_MAGIC) throw corrupt(`inode ${ino}: bad extent header magic 0x${magic.toString(16)} in ${where}`, { structure: 'extent', ino });
    const entries = node.readUInt16LE(2);
    const max = node.readUInt16LE(4);
    const d = node.readUInt16LE(6);
    if (entries > max || 12 + max * EXTENT_ENTRY_SIZE > node.length || d !== depth) {
      throw corrupt(`inode ${ino}: extent header in ${where} is inconsistent (entries ${entries}, max ${max}, depth ${d}, expected depth ${depth})`, { structure: 'extent', ino });
    }
    let prev = -1;
    for (let i = 0; i < entries; i++) {
      const e = node.subarray(12 + i * 12, 24 + i * 12);
      const logical = e.readUInt32LE(0);
      if (i > 0 && logical <= prev) throw corrupt(`inode ${ino}: extent entries in ${where} are not in ascending order (logical block ${logical})`, { structure: 'extent', ino });
      prev = logical;
      if (depth === 0) {
        const raw = e.readUInt16LE(4);
        const uninit = raw > MAX_EXTENT_LEN;
        const length = uninit ? raw - MAX_EXTENT_LEN : raw;
        const physical = e.readUInt16LE(6) * 2 ** 32 + e.readUInt32LE(8);
        if (length === 0) throw corrupt(`inode ${ino}: empty extent at logical block ${logical} in ${where}`, { structure: 'extent', ino });
        if (logical < next) throw corrupt(`inode ${ino}: extents overlap at logical block ${logical}`, { structure: 'extent', ino });
        if (physical < 1 || physical + length > ctx.blocksCount) throw corrupt(`inode ${ino}: extent at logical block ${logical} (blocks ${physical}+${length}) lies outside the filesystem`, { structure: 'extent', ino });
        if (++leaves > cap) throw corrupt(`inode ${ino} has more extents than its ${want} blocks allow`, { structure: 'extent', ino });
        next = logical + length;
        yield { logical, length, physical, uninit };
        continue;
      }
      const child = e.readUInt32LE(4) + e.readUInt16LE(8) * 2 ** 32;
      if (seen.has(child)) throw corrupt(`inode ${ino}: extent tree block ${child} is reached twice (a loop or shared node)`, { structure: 'extent', ino, block: child });
      if (seen.size >= Math.min(cap, MAX_TREE_NODES)) throw corrupt(`inode ${ino}: extent tree has more nodes than its ${want} blocks allow`, { structure: 'extent', ino });
      seen.add(child);
      const block = await ctx.readBlocks(child);
      if (ctx.inodeSeed !== undefined) {
        // struct ext4_extent_tail follows eh_max entries: crc32c(inode seed, block up to it).
        const tail = 12 + block.readUInt16LE(4) * EXTENT_ENTRY_SIZE;
        if (tail + 4 > block.length) throw corrupt(`inode ${ino}: extent block ${child} has no room for its checksum`, { structure: 'extent', ino, block: child });
        const c = ext4Crc(ctx.inodeSeed, block.subarray(0, tail));
        if (c !== block.readUInt32LE(tail)) throw corrupt(`inode ${ino}: extent block ${child} checksum mismatch`, { structure: 'extent', ino, block: child });
      }
      yield* visit(block, depth - 1, `extent block ${child}`);
    }
  }
  const depth = inode.iblock.readUInt16LE(6);
  if (depth > MAX_EXTENT_DEPTH) throw corrupt(`inode ${ino}: extent tree depth ${depth} is beyond ${MAX_EXTENT_DEPTH}`, { structure: 'extent', ino });
  yield* visit(inode.iblock, depth, `inode ${ino}`);
}

async function* extentRuns(ctx: MapContext, inode: Ext4Inode): AsyncGenerator<Run> {
  const want = fileBlocks(inode, ctx.blockSize);
  let next = 0;
  for await (const e of extentLeaves(ctx, inode)) {
    if (e.logical >= want) break;
    if (e.logical > next) yield { logical: next, count: e.logical - next, physical: 0, zero: true };
    const count = Math.min(e.length, want - e.logical);
    yield { logical: e.logical, count, physical: e.physical, zero: e.uninit };
    next = e.logical + count;
  }
  if (next < want) yield { logical: next, count: want - next, physical: 0, zero: true };
}

async function* blockMapRuns(ctx: MapContext, inode: Ext4Inode): AsyncGenerator<Run> {
  const want = fileBlocks(inode, ctx.blockSize);
  const perBlock = ctx.blockSize / 4;
  let next = 0;
  const one = (n: number): Run => {
    if (n !== 0 && n >= ctx.blocksCount) throw corrupt(`inode ${inode.ino}: block map points at block ${n}, outside the filesystem`, { structure: 'blockmap', ino: inode.ino });
    return { logical: next++, count: 1, physical: n, zero: n === 0 };
  };
  for (let i = 0; i < 12 && next < want; i++) yield one(inode.iblock.readUInt32LE(i * 4));
  async function* level(block: number, depth: number): AsyncGenerator<Run> {
    if (next >= want) return;
    if (block === 0) {
      const count = Math.min(perBlock ** depth, want - next);
      yield { logical: next, count, physical: 0, zero: true };
      next += count;
      return;
    }
    const b = await ctx.readBlocks(block);
    for (let i = 0; i < perBlock && next < want; i++) {
      const n = b.readUInt32LE(i * 4);
      if (depth === 1) yield one(n);
      else yield* level(n, depth - 1);
    }
  }
  for (let depth = 1; depth <= 3 && next < want; depth++) yield* level(inode.iblock.readUInt32LE((11 + depth) * 4), depth);
  if (next < want) throw corrupt(`inode ${inode.ino}: size ${inode.size} is beyond what a block map addresses`, { structure: 'blockmap', ino: inode.ino });
}

/** The runs covering an extent- or block-mapped inode's data, in logical order. */
export function fileRuns(ctx: MapContext, inode: Ext4Inode): AsyncGenerator<Run> {
  return inode.flags & EXTENTS_FL ? extentRuns(ctx, inode) : blockMapRuns(ctx, inode);
}
