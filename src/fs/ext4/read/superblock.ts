/**
 * Superblock decoding for the reader (Documentation/filesystems/ext4/super.rst): geometry checked
 * against the image size, feature bits checked against what the reader interprets, and the
 * metadata_csum seed (checksums.rst). Offsets are the kernel's struct ext4_super_block.
 */
import { VmimgError } from '../../../util/errors.js';
import { EXT4_MAGIC, INCOMPAT_64BIT, INCOMPAT_EXTENTS, INCOMPAT_FILETYPE, INCOMPAT_FLEX_BG, RO_COMPAT_METADATA_CSUM, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE } from '../constants.js';
import { ext4Crc, fsSeed } from '../csum.js';
import { corrupt } from './errors.js';

/** Incompatible features beyond the writer's set (super.rst "s_feature_incompat"). */
export const INCOMPAT_RECOVER = 0x4;
export const INCOMPAT_MMP = 0x100;
export const INCOMPAT_EA_INODE = 0x400;
export const INCOMPAT_CSUM_SEED = 0x2000;
export const INCOMPAT_LARGEDIR = 0x4000;
export const INCOMPAT_INLINE_DATA = 0x8000;
export const INCOMPAT_META_BG = 0x10;
const COMPAT_SPARSE_SUPER2 = 0x200;

/**
 * What the reader interprets. RECOVER: a journal needing replay is read as it stands (what a
 * read-only mount with noload sees); MMP and LARGEDIR change nothing a reader looks at.
 */
const SUPPORTED_INCOMPAT =
  INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_MMP | INCOMPAT_FLEX_BG | INCOMPAT_EA_INODE | INCOMPAT_CSUM_SEED | INCOMPAT_LARGEDIR | INCOMPAT_INLINE_DATA | INCOMPAT_META_BG;

const INCOMPAT_NAMES: ReadonlyArray<[number, string]> = [
  [0x1, 'compression'],
  [0x8, 'journal_dev'],
  [0x1000, 'dirdata'],
  [0x10000, 'encrypt'],
  [0x20000, 'casefold'],
];

/** The filesystem geometry the reader works from; every field already range-checked. */
export interface Geometry {
  blockSize: number;
  inodeSize: number;
  inodesPerGroup: number;
  inodesCount: number;
  blocksCount: number;
  groups: number;
  firstDataBlock: number;
  descSize: number;
  bit64: boolean;
  incompat: number;
  roCompat: number;
  /** metadata_csum on: every checked structure's checksum is verified. */
  csum: boolean;
  /** The checksum seed (0 without metadata_csum). */
  seed: number;
  /** Byte offset of group descriptor 0 (the block after the superblock's). */
  gdtOffset: number;
  blocksPerGroup: number;
  /** meta_bg: the first meta group whose descriptors live in their own groups (∞ without meta_bg). */
  firstMetaBg: number;
  /** Groups holding a superblock backup (and, with meta_bg, the descriptor block after it). */
  hasSuper(group: number): boolean;
}

const isPowerOf = (n: number, base: number): boolean => {
  let x = base;
  while (x < n) x *= base;
  return x === n;
};

const u32 = (sb: Buffer, at: number): number => sb.readUInt32LE(at);

/** Decodes and checks the 1024-byte superblock of a filesystem whose image is `imageSize` bytes. */
export function parseSuperblock(sb: Buffer, imageSize: number): Geometry {
  const magic = sb.readUInt16LE(56);
  if (magic !== EXT4_MAGIC) throw corrupt(`no ext2/3/4 superblock (magic 0x${magic.toString(16)} at byte ${SUPERBLOCK_OFFSET + 56})`, { structure: 'superblock', magic });
  const incompat = u32(sb, 96);
  const roCompat = u32(sb, 100);
  const csum = (roCompat & RO_COMPAT_METADATA_CSUM) !== 0;
  if (csum) {
    if (sb[0x175] !== 1) throw corrupt(`superblock checksum type ${sb[0x175]} is not crc32c (1)`, { structure: 'superblock' });
    const want = ext4Crc(0xffffffff, sb.subarray(0, SUPERBLOCK_SIZE - 4));
    if (want !== u32(sb, SUPERBLOCK_SIZE - 4)) throw corrupt(`superblock checksum mismatch (stored 0x${u32(sb, SUPERBLOCK_SIZE - 4).toString(16)}, computed 0x${want.toString(16)})`, { structure: 'superblock' });
  }
  const unknown = (incompat & ~SUPPORTED_INCOMPAT) >>> 0;
  if (unknown !== 0) {
    const names = INCOMPAT_NAMES.filter(([bit]) => (unknown & bit) !== 0).map(([, n]) => n);
    const named = names.length > 0 ? `${names.join(', ')} ` : '';
    throw new VmimgError('UNSUPPORTED_IMAGE', `ext4: incompatible feature(s) ${named}(s_feature_incompat bits 0x${unknown.toString(16)}) are not supported by vmimg's reader`, { incompat: unknown, features: names });
  }
  const logBlock = u32(sb, 24);
  if (logBlock > 6) throw corrupt(`block size 1024 << ${logBlock} is beyond 64 KiB`, { structure: 'superblock' });
  const blockSize = 1024 << logBlock;
  const rev = u32(sb, 76);
  const inodeSize = rev === 0 ? 128 : sb.readUInt16LE(88);
  if (inodeSize < 128 || inodeSize > blockSize || (inodeSize & (inodeSize - 1)) !== 0) throw corrupt(`inode size ${inodeSize} is invalid`, { structure: 'superblock' });
  const bit64 = (incompat & INCOMPAT_64BIT) !== 0;
  const blocksCount = u32(sb, 4) + (bit64 ? u32(sb, 0x150) * 2 ** 32 : 0);
  const firstDataBlock = u32(sb, 20);
  const bpg = u32(sb, 32);
  const ipg = u32(sb, 40);
  const inodesCount = u32(sb, 0);
  if (bpg === 0 || ipg === 0 || ipg > 8 * blockSize || firstDataBlock >= blocksCount || firstDataBlock > 1) {
    throw corrupt(`geometry is invalid (blocks per group ${bpg}, inodes per group ${ipg}, first data block ${firstDataBlock}, ${blocksCount} blocks)`, { structure: 'superblock' });
  }
  if (blocksCount * blockSize > imageSize) throw corrupt(`the filesystem claims ${blocksCount} blocks of ${blockSize} bytes, more than the ${imageSize}-byte image`, { structure: 'superblock' });
  const groups = Math.ceil((blocksCount - firstDataBlock) / bpg);
  if (inodesCount < 11 || groups * ipg < inodesCount) throw corrupt(`${inodesCount} inodes do not fit ${groups} groups of ${ipg}`, { structure: 'superblock' });
  const descSize = bit64 ? sb.readUInt16LE(254) : 32;
  if (descSize < 32 || descSize > 1024 || (descSize & (descSize - 1)) !== 0 || (bit64 && descSize < 64)) throw corrupt(`group descriptor size ${descSize} is invalid`, { structure: 'superblock' });
  const gdtOffset = (firstDataBlock + 1) * blockSize;
  const metaBg = (incompat & INCOMPAT_META_BG) !== 0;
  const firstMetaBg = metaBg ? u32(sb, 0x104) : Infinity;
  const classic = Math.min(groups, firstMetaBg * (blockSize / descSize));
  if (gdtOffset + classic * descSize > blocksCount * blockSize) throw corrupt(`${classic} group descriptors do not fit the filesystem`, { structure: 'superblock' });
  const compat = u32(sb, 92);
  const backups = [u32(sb, 0x24c), u32(sb, 0x250)];
  // ext2fs_bg_has_super: group 0 always; sparse_super2 names two groups; sparse_super keeps 1 and powers of 3, 5, 7.
  const hasSuper = (g: number): boolean => {
    if (g === 0) return true;
    if (compat & COMPAT_SPARSE_SUPER2) return g === backups[0] || g === backups[1];
    if (!(roCompat & 0x1)) return true;
    return g === 1 || isPowerOf(g, 3) || isPowerOf(g, 5) || isPowerOf(g, 7);
  };
  const seed = csum ? ((incompat & INCOMPAT_CSUM_SEED) !== 0 ? u32(sb, 0x270) : fsSeed(sb.subarray(104, 120))) : 0;
  return { blockSize, inodeSize, inodesPerGroup: ipg, inodesCount, blocksCount, groups, firstDataBlock, descSize, bit64, incompat, roCompat, csum, seed, gdtOffset, blocksPerGroup: bpg, firstMetaBg, hasSuper };
}
