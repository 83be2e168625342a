/**
 * Superblock, group descriptors and the jbd2 journal superblock (Documentation/filesystems/
 * ext4/super.rst, group_descr.rst, journal.rst; field offsets as in e2fsprogs
 * lib/ext2fs/ext2_fs.h and kernel/jbd2.h).
 */
import {
  BLOCKS_PER_GROUP,
  BLOCK_SIZE,
  EXT4_MAGIC,
  EXTRA_ISIZE,
  FIRST_INO,
  INODE_SIZE,
  JBD2_MAGIC,
  JBD2_SUPERBLOCK_V2,
  JOURNAL_INO,
  LOG_BLOCK_SIZE,
  SUPERBLOCK_SIZE,
} from './constants.js';
import { ext4Crc, groupDescCsum } from './csum.js';

export interface SuperFields {
  inodesCount: number;
  blocksCount: number;
  freeBlocks: number;
  freeInodes: number;
  inodesPerGroup: number;
  time: number;
  compat: number;
  incompat: number;
  roCompat: number;
  uuid: Uint8Array;
  label: Buffer;
  hashSeed?: Uint8Array;
  descSize: number;
  logGroupsPerFlex: number;
  csum: boolean;
  /** Journal inode's i_block (60 bytes) and size, backed up in s_jnl_blocks. */
  journal?: { iblock: Buffer; size: number };
}

const hi32 = (n: number): number => Math.floor(n / 2 ** 32);

/** The 1024-byte superblock as stored in group `group` (s_block_group_nr). */
export function encodeSuperblock(f: SuperFields, group: number): Buffer {
  const b = Buffer.alloc(SUPERBLOCK_SIZE);
  b.writeUInt32LE(f.inodesCount, 0x00);
  b.writeUInt32LE(f.blocksCount >>> 0, 0x04);
  b.writeUInt32LE(f.freeBlocks >>> 0, 0x0c);
  b.writeUInt32LE(f.freeInodes, 0x10);
  b.writeUInt32LE(0, 0x14); // s_first_data_block: 0 with blocks larger than 1 KiB
  b.writeUInt32LE(LOG_BLOCK_SIZE, 0x18);
  b.writeUInt32LE(LOG_BLOCK_SIZE, 0x1c);
  b.writeUInt32LE(BLOCKS_PER_GROUP, 0x20);
  b.writeUInt32LE(BLOCKS_PER_GROUP, 0x24);
  b.writeUInt32LE(f.inodesPerGroup, 0x28);
  b.writeUInt32LE(f.time >>> 0, 0x30); // s_wtime; s_mtime stays 0 (never mounted)
  b.writeInt16LE(-1, 0x36); // s_max_mnt_count: no mount-count checks
  b.writeUInt16LE(EXT4_MAGIC, 0x38);
  b.writeUInt16LE(1, 0x3a); // s_state: cleanly unmounted
  b.writeUInt16LE(1, 0x3c); // s_errors: continue
  b.writeUInt32LE(f.time >>> 0, 0x40); // s_lastcheck
  b.writeUInt32LE(1, 0x4c); // s_rev_level: dynamic
  b.writeUInt32LE(FIRST_INO, 0x54);
  b.writeUInt16LE(INODE_SIZE, 0x58);
  b.writeUInt16LE(group, 0x5a);
  b.writeUInt32LE(f.compat, 0x5c);
  b.writeUInt32LE(f.incompat, 0x60);
  b.writeUInt32LE(f.roCompat, 0x64);
  Buffer.from(f.uuid).copy(b, 0x68);
  f.label.copy(b, 0x78, 0, 16);
  if (f.journal) {
    b.writeUInt32LE(JOURNAL_INO, 0xe0);
    b[0xfd] = 1; // s_jnl_backup_type: EXT3_JNL_BACKUP_BLOCKS
    f.journal.iblock.copy(b, 0x10c, 0, 60);
    b.writeUInt32LE(hi32(f.journal.size), 0x10c + 60);
    b.writeUInt32LE(f.journal.size >>> 0, 0x10c + 64);
  }
  if (f.hashSeed) {
    Buffer.from(f.hashSeed).copy(b, 0xec);
    b[0xfc] = 1; // s_def_hash_version: half_md4
    b.writeUInt32LE(1, 0x160); // s_flags: signed directory hash, as mke2fs on x86
  }
  b.writeUInt16LE(f.descSize, 0xfe);
  b.writeUInt32LE(0x0c, 0x100); // s_default_mount_opts: user_xattr, acl (mke2fs default)
  b.writeUInt32LE(f.time >>> 0, 0x108); // s_mkfs_time
  b.writeUInt32LE(hi32(f.blocksCount), 0x150);
  b.writeUInt32LE(hi32(f.freeBlocks), 0x158);
  b.writeUInt16LE(EXTRA_ISIZE, 0x15c);
  b.writeUInt16LE(EXTRA_ISIZE, 0x15e);
  b[0x174] = f.logGroupsPerFlex;
  if (f.csum) {
    b[0x175] = 1; // s_checksum_type: crc32c
    b.writeUInt32LE(ext4Crc(0xffffffff, b.subarray(0, 0x3fc)), 0x3fc);
  }
  return b;
}

export interface GroupDesc {
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: number;
  freeBlocks: number;
  freeInodes: number;
  usedDirs: number;
  flags: number;
  blockBitmapCsum: number;
  inodeBitmapCsum: number;
  itableUnused: number;
}

/** Encodes the descriptor table (padded to whole blocks); checksums use `seed` when given. */
export function encodeGdt(descs: readonly GroupDesc[], descSize: number, seed: number | undefined, blocks: number): Buffer {
  const out = Buffer.alloc(blocks * BLOCK_SIZE);
  descs.forEach((d, g) => {
    const b = out.subarray(g * descSize, (g + 1) * descSize);
    const lo = (off: number, v: number, bits: 16 | 32): void => {
      if (bits === 32) b.writeUInt32LE(v >>> 0, off);
      else b.writeUInt16LE(v & 0xffff, off);
    };
    lo(0x00, d.blockBitmap, 32);
    lo(0x04, d.inodeBitmap, 32);
    lo(0x08, d.inodeTable, 32);
    lo(0x0c, d.freeBlocks, 16);
    lo(0x0e, d.freeInodes, 16);
    lo(0x10, d.usedDirs, 16);
    lo(0x12, d.flags, 16);
    if (seed !== undefined) {
      lo(0x18, d.blockBitmapCsum, 16);
      lo(0x1a, d.inodeBitmapCsum, 16);
    }
    lo(0x1c, d.itableUnused, 16);
    if (descSize >= 64) {
      b.writeUInt32LE(hi32(d.blockBitmap), 0x20);
      b.writeUInt32LE(hi32(d.inodeBitmap), 0x24);
      b.writeUInt32LE(hi32(d.inodeTable), 0x28);
      b.writeUInt16LE(d.freeBlocks >>> 16, 0x2c);
      b.writeUInt16LE(d.freeInodes >>> 16, 0x2e);
      b.writeUInt16LE(d.usedDirs >>> 16, 0x30);
      b.writeUInt16LE(d.itableUnused >>> 16, 0x32);
      if (seed !== undefined) {
        b.writeUInt16LE(d.blockBitmapCsum >>> 16, 0x38);
        b.writeUInt16LE(d.inodeBitmapCsum >>> 16, 0x3a);
      }
    }
    if (seed !== undefined) b.writeUInt16LE(groupDescCsum(seed, g, b), 0x1e);
  });
  return out;
}

/** The jbd2 superblock v2 of an empty, clean internal journal (journal.rst "Super Block"). */
export function encodeJournalSuperblock(blocks: number, uuid: Uint8Array): Buffer {
  const b = Buffer.alloc(BLOCK_SIZE);
  b.writeUInt32BE(JBD2_MAGIC, 0x0);
  b.writeUInt32BE(JBD2_SUPERBLOCK_V2, 0x4);
  b.writeUInt32BE(BLOCK_SIZE, 0xc);
  b.writeUInt32BE(blocks, 0x10); // s_maxlen
  b.writeUInt32BE(1, 0x14); // s_first: log starts after this block
  b.writeUInt32BE(1, 0x18); // s_sequence
  // s_start 0: the journal is empty (clean), so nothing is replayed.
  Buffer.from(uuid).copy(b, 0x30);
  b.writeUInt32BE(1, 0x40); // s_nr_users
  return b;
}
