/**
 * Extent trees (Documentation/filesystems/ext4/ifork.rst "Extent Tree"): leaves of at most
 * 32768 blocks each; up to 4 entries live in i_block, more go into tree blocks of 340 entries
 * with a 4-byte ext4_extent_tail (crc32c(inode seed, block up to the tail) with metadata_csum),
 * adding levels until the root fits in the inode.
 */
import { BLOCK_SIZE, EXTENT_ENTRY_SIZE, EXTENT_MAGIC, EXTENTS_IN_INODE, EXTENTS_PER_BLOCK, MAX_EXTENT_LEN } from './constants.js';
import { ext4Crc } from './csum.js';

/** A run of physical blocks. */
export interface Run {
  start: number;
  length: number;
}

interface Entry {
  /** First logical block covered. */
  logical: number;
  /** Leaf: physical start and length; index: child node block. */
  physical: number;
  length: number;
}

/** Leaf extents for runs that map logical blocks 0.. in order. */
function leaves(runs: readonly Run[]): Entry[] {
  const out: Entry[] = [];
  let logical = 0;
  for (const r of runs) {
    for (let done = 0; done < r.length; done += MAX_EXTENT_LEN) {
      const n = Math.min(MAX_EXTENT_LEN, r.length - done);
      out.push({ logical: logical + done, physical: r.start + done, length: n });
    }
    logical += r.length;
  }
  return out;
}

/** Tree blocks needed beyond the inode for these runs. */
export function extentTreeBlocks(runs: readonly Run[]): number {
  let n = leaves(runs).length;
  let blocks = 0;
  while (n > EXTENTS_IN_INODE) {
    n = Math.ceil(n / EXTENTS_PER_BLOCK);
    blocks += n;
  }
  return blocks;
}

function writeHeader(buf: Buffer, at: number, entries: number, max: number, depth: number): void {
  buf.writeUInt16LE(EXTENT_MAGIC, at);
  buf.writeUInt16LE(entries, at + 2);
  buf.writeUInt16LE(max, at + 4);
  buf.writeUInt16LE(depth, at + 6);
  buf.writeUInt32LE(0, at + 8);
}

function writeEntry(buf: Buffer, at: number, e: Entry, leaf: boolean): void {
  buf.writeUInt32LE(e.logical, at);
  if (leaf) {
    buf.writeUInt16LE(e.length, at + 4);
    buf.writeUInt16LE(Math.floor(e.physical / 2 ** 32), at + 6);
    buf.writeUInt32LE(e.physical >>> 0, at + 8);
  } else {
    buf.writeUInt32LE(e.physical >>> 0, at + 4);
    buf.writeUInt16LE(Math.floor(e.physical / 2 ** 32), at + 8);
  }
}

export interface ExtentTree {
  /** The 60-byte i_block. */
  iblock: Buffer;
  /** Tree blocks (block number, bytes), as many as extentTreeBlocks(runs). */
  nodes: Array<{ block: number; data: Buffer }>;
}

/**
 * Encodes the tree for `runs`, placing its nodes in `nodeBlocks` (bottom level first).
 * `seed` is the inode checksum seed when metadata_csum is on.
 */
export function encodeExtentTree(runs: readonly Run[], nodeBlocks: readonly number[], seed: number | undefined): ExtentTree {
  let level = leaves(runs);
  let depth = 0;
  let used = 0;
  const nodes: Array<{ block: number; data: Buffer }> = [];
  while (level.length > EXTENTS_IN_INODE) {
    const up: Entry[] = [];
    for (let i = 0; i < level.length; i += EXTENTS_PER_BLOCK) {
      const chunk = level.slice(i, i + EXTENTS_PER_BLOCK);
      const block = nodeBlocks[used++]!;
      const data = Buffer.alloc(BLOCK_SIZE);
      writeHeader(data, 0, chunk.length, EXTENTS_PER_BLOCK, depth);
      chunk.forEach((e, j) => writeEntry(data, 12 + j * EXTENT_ENTRY_SIZE, e, depth === 0));
      if (seed !== undefined) {
        const tail = 12 + EXTENTS_PER_BLOCK * EXTENT_ENTRY_SIZE;
        data.writeUInt32LE(ext4Crc(seed, data.subarray(0, tail)), tail);
      }
      nodes.push({ block, data });
      up.push({ logical: chunk[0]!.logical, physical: block, length: 0 });
    }
    level = up;
    depth++;
  }
  const iblock = Buffer.alloc(60);
  writeHeader(iblock, 0, level.length, EXTENTS_IN_INODE, depth);
  level.forEach((e, j) => writeEntry(iblock, 12 + j * EXTENT_ENTRY_SIZE, e, depth === 0));
  return { iblock, nodes };
}
