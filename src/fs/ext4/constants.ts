/**
 * ext4 on-disk constants used by the writer. Sources: Linux Documentation/filesystems/ext4/
 * (super.rst, group_descr.rst, inodes.rst, ifork.rst, directory.rst, attributes.rst,
 * journal.rst) and e2fsprogs lib/ext2fs/ext2_fs.h. The writer supports 4 KiB blocks only.
 */

export const BLOCK_SIZE = 4096;
export const LOG_BLOCK_SIZE = 2; // block size = 1024 << 2 (super.rst s_log_block_size)
export const BLOCKS_PER_GROUP = 8 * BLOCK_SIZE; // one block bitmap block covers a group
export const INODE_SIZE = 256;
export const INODES_PER_BLOCK = BLOCK_SIZE / INODE_SIZE;
/** Fields past the 128-byte base inode we fill: through i_projid (inodes.rst), as mke2fs. */
export const EXTRA_ISIZE = 32;
export const GOOD_OLD_INODE_SIZE = 128;
export const SUPERBLOCK_OFFSET = 1024;
export const SUPERBLOCK_SIZE = 1024;
export const EXT4_MAGIC = 0xef53;

/** Reserved inode numbers (super.rst "s_first_ino"; inodes.rst "Special inodes"). */
export const ROOT_INO = 2;
export const JOURNAL_INO = 8;
export const FIRST_INO = 11;
export const LOST_FOUND_INO = 11;

/** Feature bits (super.rst "s_feature_compat" etc.). */
export const COMPAT_HAS_JOURNAL = 0x4;
export const COMPAT_EXT_ATTR = 0x8;
export const COMPAT_RESIZE_INODE = 0x10;
export const COMPAT_DIR_INDEX = 0x20;
export const INCOMPAT_FILETYPE = 0x2;
export const INCOMPAT_EXTENTS = 0x40;
export const INCOMPAT_64BIT = 0x80;
export const INCOMPAT_FLEX_BG = 0x200;
export const RO_COMPAT_SPARSE_SUPER = 0x1;
export const RO_COMPAT_LARGE_FILE = 0x2;
export const RO_COMPAT_HUGE_FILE = 0x8;
export const RO_COMPAT_DIR_NLINK = 0x20;
export const RO_COMPAT_EXTRA_ISIZE = 0x40;
export const RO_COMPAT_METADATA_CSUM = 0x400;

/** Inode flags (inodes.rst "i_flags"). */
export const EXT4_EXTENTS_FL = 0x80000;

/** Group descriptor flags (group_descr.rst "bg_flags"). */
export const BG_INODE_ZEROED = 0x4;

/** Extents (ifork.rst). */
export const EXTENT_MAGIC = 0xf30a;
export const EXTENT_ENTRY_SIZE = 12;
export const MAX_EXTENT_LEN = 32768; // ee_len > 32768 marks an uninitialised extent
export const EXTENTS_IN_INODE = 4; // (60 - 12) / 12
/** Entries in one tree block: (block - header) / 12, leaving room for the 4-byte tail. */
export const EXTENTS_PER_BLOCK = (BLOCK_SIZE - 12) / EXTENT_ENTRY_SIZE | 0;

/** Directory entry file types (directory.rst "ext4_dir_entry_2"). */
export const FT_REG = 1;
export const FT_DIR = 2;
export const FT_CHR = 3;
export const FT_BLK = 4;
export const FT_FIFO = 5;
export const FT_SOCK = 6;
export const FT_SYMLINK = 7;
export const DIR_TAIL_SIZE = 12;
export const DIR_TAIL_FT = 0xde;
export const MAX_NAME_LEN = 255;
/** Largest i_links_count (EXT4_LINK_MAX); a directory past it counts 1 with dir_nlink. */
export const LINK_MAX = 65000;

/** Fast symlinks keep the target in i_block when shorter than 60 bytes (ifork.rst). */
export const FAST_SYMLINK_MAX = 59;

/** Extended attributes (attributes.rst). */
export const XATTR_MAGIC = 0xea020000;
export const XATTR_HEADER_SIZE = 32;
export const XATTR_ENTRY_SIZE = 16;

/** jbd2 (journal.rst): big-endian superblock v2 in the journal's first block. */
export const JBD2_MAGIC = 0xc03b3998;
export const JBD2_SUPERBLOCK_V2 = 4;
