/**
 * Directory blocks for the reader (Documentation/filesystems/ext4/directory.rst). Every block is
 * read linearly: hash-tree (dir_index) interior blocks hold no live entries (the root's ".."
 * record spans the dx data; a node is one empty record spanning the block), so a linear scan
 * lists every name. With metadata_csum, leaf blocks end in a 12-byte tail (inode 0, rec_len 12,
 * file type 0xde) holding crc32c(inode seed, block before the tail), and dx blocks end their
 * count/limit array with struct dx_tail (checksums.rst "Directory Entries" / "Hash Tree").
 *
 * Record checks (as the kernel's __ext4_check_dir_entry): rec_len ≥ 12, a multiple of 4, large
 * enough for the name, inside the block; inode numbers within s_inodes_count.
 */
import { DIR_TAIL_FT, DIR_TAIL_SIZE } from '../constants.js';
import { ext4Crc } from '../csum.js';
import { corrupt } from './errors.js';

export interface DirEntry {
  name: Buffer;
  ino: number;
  /** dirent file type (0 when the filesystem has no filetype feature). */
  type: number;
}

export interface DirBlockContext {
  ino: number;
  blockSize: number;
  inodesCount: number;
  /** The directory inode's checksum seed when metadata_csum is on. */
  inodeSeed?: number;
  /** The directory is hash-indexed (EXT4_INDEX_FL). */
  indexed: boolean;
}

const recLen = (raw: number, blockSize: number): number => (blockSize >= 65536 && (raw === 0 || raw === 65535) ? 65536 : raw);

/** Parses records in `data[start, end)` (a block, or an inline-data region) into `out`. */
export function parseEntries(data: Buffer, start: number, end: number, ctx: DirBlockContext, where: string, out: DirEntry[]): void {
  let p = start;
  while (p < end) {
    if (p + 8 > end) throw corrupt(`directory inode ${ctx.ino}: ${where}: record at byte ${p - start} runs past the end`, { structure: 'dirent', ino: ctx.ino });
    const ino = data.readUInt32LE(p);
    const len = recLen(data.readUInt16LE(p + 4), ctx.blockSize);
    const nameLen = data[p + 6]!;
    if (len < 12 || len % 4 !== 0 || p + len > end || nameLen + 8 > len) {
      throw corrupt(`directory inode ${ctx.ino}: ${where}: bad record at byte ${p - start} (rec_len ${len}, name_len ${nameLen})`, { structure: 'dirent', ino: ctx.ino });
    }
    if (ino > ctx.inodesCount) throw corrupt(`directory inode ${ctx.ino}: ${where}: entry names inode ${ino}, beyond ${ctx.inodesCount}`, { structure: 'dirent', ino: ctx.ino });
    if (ino !== 0 && nameLen > 0) out.push({ name: Buffer.from(data.subarray(p + 8, p + 8 + nameLen)), ino, type: data[p + 7]! });
    p += len;
  }
}

/** The count/limit offset of a dx block, or undefined when `block` is a leaf. */
function dxCountOffset(block: Buffer, logical: number, ctx: DirBlockContext): number | undefined {
  if (!ctx.indexed) return undefined;
  if (logical === 0) return 0x18 + block[0x18 + 5]!; // dx_root: "." (12) + ".." (12) + dx_root_info
  const firstLen = recLen(block.readUInt16LE(4), ctx.blockSize);
  return block.readUInt32LE(0) === 0 && firstLen === ctx.blockSize && block[6] === 0 ? 8 : undefined;
}

function checkLeafTail(block: Buffer, logical: number, ctx: DirBlockContext, seed: number): void {
  const t = ctx.blockSize - DIR_TAIL_SIZE;
  if (block.readUInt32LE(t) !== 0 || block.readUInt16LE(t + 4) !== DIR_TAIL_SIZE || block[t + 6] !== 0 || block[t + 7] !== DIR_TAIL_FT) {
    throw corrupt(`directory inode ${ctx.ino}: block ${logical} has no checksum tail`, { structure: 'dirblock', ino: ctx.ino, block: logical });
  }
  const c = ext4Crc(seed, block.subarray(0, t));
  if (c !== block.readUInt32LE(t + 8)) throw corrupt(`directory inode ${ctx.ino}: block ${logical} checksum mismatch`, { structure: 'dirblock', ino: ctx.ino, block: logical });
}

function checkDxTail(block: Buffer, logical: number, countOffset: number, ctx: DirBlockContext, seed: number): void {
  const limit = block.readUInt16LE(countOffset);
  const count = block.readUInt16LE(countOffset + 2);
  const tail = countOffset + limit * 8;
  if (count > limit || tail + 8 > ctx.blockSize) throw corrupt(`directory inode ${ctx.ino}: hash-tree block ${logical} has a bad count/limit (${count}/${limit})`, { structure: 'dxblock', ino: ctx.ino, block: logical });
  // crc32c over the entries in use, dt_reserved, then dt_checksum as zero (ext4_dx_csum).
  const c = ext4Crc(ext4Crc(ext4Crc(seed, block.subarray(0, countOffset + count * 8)), block.subarray(tail, tail + 4)), new Uint8Array(4));
  if (c !== block.readUInt32LE(tail + 4)) throw corrupt(`directory inode ${ctx.ino}: hash-tree block ${logical} checksum mismatch`, { structure: 'dxblock', ino: ctx.ino, block: logical });
}

/** Parses directory block `logical`, verifying its checksum when the context has a seed. */
export function parseDirBlock(block: Buffer, logical: number, ctx: DirBlockContext, out: DirEntry[]): void {
  const dx = dxCountOffset(block, logical, ctx);
  let end = ctx.blockSize;
  if (ctx.inodeSeed !== undefined) {
    if (dx !== undefined) {
      if (dx + 4 > ctx.blockSize) throw corrupt(`directory inode ${ctx.ino}: hash-tree root has a bad info length`, { structure: 'dxblock', ino: ctx.ino, block: logical });
      checkDxTail(block, logical, dx, ctx, ctx.inodeSeed);
    } else {
      checkLeafTail(block, logical, ctx, ctx.inodeSeed);
      end -= DIR_TAIL_SIZE;
    }
  }
  parseEntries(block, 0, end, ctx, `block ${logical}`, out);
}
