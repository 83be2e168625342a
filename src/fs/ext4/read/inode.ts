/**
 * Inode decoding for the reader (Documentation/filesystems/ext4/inodes.rst, struct ext4_inode):
 * the fields stat needs, timestamps with their extra (epoch bits + nanoseconds) words when
 * i_extra_isize covers them, and the inode checksum (checksums.rst "Inode": crc32c over the whole
 * on-disk inode with i_checksum_lo/hi zeroed, from the per-inode seed).
 */
import { ext4Crc, inodeSeed } from '../csum.js';
import { GOOD_OLD_INODE_SIZE } from '../constants.js';
import { corrupt } from './errors.js';

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;

/** i_flags bits the reader acts on (inodes.rst "i_flags"). */
export const INDEX_FL = 0x1000;
export const HUGE_FILE_FL = 0x40000;
export const EXTENTS_FL = 0x80000;
export const EA_INODE_FL = 0x200000;
export const INLINE_DATA_FL = 0x10000000;

export interface Ext4Time {
  /** Seconds since the epoch (the 32-bit field sign-extended, plus the extra epoch bits). */
  sec: number;
  nsec: number;
}

export interface Ext4Inode {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  links: number;
  /** Seconds of mtime (kept for callers that need no more). */
  mtime: number;
  atimeFull: Ext4Time;
  mtimeFull: Ext4Time;
  ctimeFull: Ext4Time;
  /** Creation time, when the inode is large enough to hold it. */
  crtime?: Ext4Time;
  flags: number;
  generation: number;
  /** i_blocks in 512-byte units (i_blocks_hi included; HUGE_FILE_FL scaled). */
  blocks512: number;
  /** i_file_acl: the xattr block, 0 when none. */
  fileAcl: number;
  /** The 60 bytes of i_block (extent root, block map, fast symlink target or inline data). */
  iblock: Buffer;
  /** The in-inode xattr area (after i_extra_isize), empty when the inode has none. */
  xattrArea: Buffer;
}

function time(raw: Buffer, at: number, extraAt: number | undefined): Ext4Time {
  const base = raw.readInt32LE(at);
  if (extraAt === undefined) return { sec: base, nsec: 0 };
  const extra = raw.readUInt32LE(extraAt);
  return { sec: base + (extra & 3) * 2 ** 32, nsec: Math.min(extra >>> 2, 999_999_999) };
}

/**
 * Decodes inode `ino` from its `raw` on-disk bytes (s_inode_size long). `seed` is the
 * filesystem checksum seed, or undefined without metadata_csum.
 */
export function decodeInode(ino: number, raw: Buffer, seed: number | undefined, blockSize: number): Ext4Inode {
  const size = raw.length;
  const extra = size > GOOD_OLD_INODE_SIZE ? raw.readUInt16LE(0x80) : 0;
  if (GOOD_OLD_INODE_SIZE + extra > size || extra % 4 !== 0) throw corrupt(`inode ${ino}: i_extra_isize ${extra} does not fit a ${size}-byte inode`, { structure: 'inode', ino });
  const has = (fieldEnd: number): boolean => size > GOOD_OLD_INODE_SIZE && GOOD_OLD_INODE_SIZE + extra >= fieldEnd;
  // An all-zero inode (never written: uninitialised table) carries no checksum; e2fsprogs accepts it.
  if (seed !== undefined && raw.some((b) => b !== 0)) {
    const hasHi = has(0x84);
    const copy = Buffer.from(raw);
    copy.writeUInt16LE(0, 0x7c);
    if (hasHi) copy.writeUInt16LE(0, 0x82);
    const c = ext4Crc(inodeSeed(seed, ino, raw.readUInt32LE(0x64)), copy);
    const want = hasHi ? c : c & 0xffff;
    const stored = (raw.readUInt16LE(0x7c) | (hasHi ? raw.readUInt16LE(0x82) << 16 : 0)) >>> 0;
    if (want !== stored) throw corrupt(`inode ${ino} checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${want.toString(16)})`, { structure: 'inode', ino });
  }
  const flags = raw.readUInt32LE(0x20);
  const blocksRaw = raw.readUInt32LE(0x1c) + raw.readUInt16LE(0x74) * 2 ** 32;
  const crtime = has(0x98) ? time(raw, 0x90, 0x94) : undefined;
  let xattrArea: Buffer = Buffer.alloc(0);
  if (size > GOOD_OLD_INODE_SIZE) xattrArea = raw.subarray(GOOD_OLD_INODE_SIZE + extra);
  const mtimeFull = time(raw, 0x10, has(0x8c) ? 0x88 : undefined);
  return {
    ino,
    mode: raw.readUInt16LE(0),
    uid: raw.readUInt16LE(2) + raw.readUInt16LE(0x78) * 0x10000,
    gid: raw.readUInt16LE(0x18) + raw.readUInt16LE(0x7a) * 0x10000,
    size: raw.readUInt32LE(4) + raw.readUInt32LE(0x6c) * 2 ** 32,
    links: raw.readUInt16LE(0x1a),
    mtime: mtimeFull.sec,
    atimeFull: time(raw, 0x08, has(0x90) ? 0x8c : undefined),
    mtimeFull,
    ctimeFull: time(raw, 0x0c, has(0x88) ? 0x84 : undefined),
    ...(crtime ? { crtime } : {}),
    flags,
    generation: raw.readUInt32LE(0x64),
    blocks512: flags & HUGE_FILE_FL ? blocksRaw * (blockSize / 512) : blocksRaw,
    fileAcl: raw.readUInt32LE(0x68) + raw.readUInt16LE(0x76) * 2 ** 32,
    iblock: Buffer.from(raw.subarray(0x28, 0x28 + 60)),
    xattrArea: Buffer.from(xattrArea),
  };
}
