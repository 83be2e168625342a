/**
 * VMDK constants: the hosted sparse extent header (VMware "Virtual Disk Format 5.0", §"Hosted
 * Sparse Extent Header"), the older COWD (VMDK3 / ESX "vmfsSparse") magic, and the limits
 * QEMU 7.2's block/vmdk.c applies when it creates and opens images. All sector values are in
 * 512-byte units, as in the format.
 */

/** "KDMV" read big-endian: the magic of a hosted sparse extent (VMDK4). */
export const VMDK4_MAGIC = 0x4b444d56;
/** "COWD" read big-endian: the magic of an ESX vmfsSparse extent (QEMU calls it VMDK3). */
export const VMDK3_MAGIC = 0x434f5744;

/** Header flag bits (spec: "flags"). */
export const FLAG_NL_DETECT = 1 << 0;
/** A redundant grain directory is present at rgdOffset. */
export const FLAG_RGD = 1 << 1;
/** Grain table entry 1 means "zeroed grain" (QEMU's zeroed_grain option; needs version 2). */
export const FLAG_ZERO_GRAIN = 1 << 2;
/** Grains are compressed (streamOptimized). */
export const FLAG_COMPRESS = 1 << 16;
/** The stream carries markers (streamOptimized). */
export const FLAG_MARKER = 1 << 17;

export const COMPRESSION_NONE = 0;
export const COMPRESSION_DEFLATE = 1;

/** gdOffset value meaning "the grain directory location is in the footer" (streamOptimized). */
export const GD_AT_END = 0xffffffffffffffffn;

/** Stream marker types (spec: "Stream-Optimized Compressed Sparse Extents"). */
export const MARKER_EOS = 0;
export const MARKER_GT = 1;
export const MARKER_GD = 2;
export const MARKER_FOOTER = 3;

/** Bytes of the VMDK4 header including the magic: 4 + 75 (packed C struct). */
export const VMDK4_HEADER_BYTES = 79;
/** Bytes of the VMDK3 (COWD) header fields QEMU reads, after the magic. */
export const VMDK3_HEADER_BYTES = 4 + 40;

/** The "\n \r\n" line-ending check bytes every VMDK4 header carries (NL_DETECT). */
export const CHECK_BYTES = [0x0a, 0x20, 0x0d, 0x0a] as const;

// --- What qemu-img 7.2 writes on create (vmdk_init_extent / vmdk_co_do_create) ---

/** Grain size in sectors (64 KiB grains). */
export const CREATE_GRAIN_SECTORS = 128;
/** Grain table entries per grain table. */
export const CREATE_GTES_PER_GT = 512;
/** Embedded descriptor position and size, in sectors. */
export const CREATE_DESC_OFFSET = 1;
export const CREATE_DESC_SECTORS = 20;
/** Bytes available to the embedded descriptor (QEMU's DESC_SIZE). */
export const DESC_SIZE = CREATE_DESC_SECTORS * 512;
/** Byte offset at which QEMU reads the CID of a sparse image, whatever descriptorOffset says. */
export const SPARSE_DESC_BYTE_OFFSET = 0x200;

// --- Limits QEMU 7.2 applies when opening (block/vmdk.c, block.c) ---

/** vmdk_read_desc reads at most this many descriptor bytes. */
export const MAX_DESCRIPTOR_READ = (1 << 20) - 1;
/** numGTEsPerGT above this: "L2 table size too big". */
export const MAX_GTES_PER_GT = 512;
/** Grain size in sectors above this: "Invalid granularity, image may be corrupt". */
export const MAX_GRAIN_SECTORS = 0x200000;
/** Grain directory entries above this: "L1 size too big". */
export const MAX_L1_ENTRIES = 32 * 1024 * 1024;
/** Largest image length QEMU's block layer accepts (BDRV_MAX_LENGTH = INT64_MAX aligned to 1 GiB). */
export const BDRV_MAX_LENGTH = (1n << 63n) - (1n << 30n);
/** parentFileNameHint values longer than this make vmdk_parent_open fail (PATH_MAX - 1). */
export const MAX_PARENT_HINT_BYTES = 4095;
/** QEMU formats the parentFileNameHint line into a 4096-byte buffer (BUF_SIZE), truncating it. */
export const PARENT_LINE_BUFFER = 4096;
/** Longest extent file name the descriptor parser reads (%511[...]). */
export const MAX_EXTENT_NAME = 511;

/**
 * vmimg's cap on extents in one descriptor (QEMU has none): 65536 × 2 GiB twoGbMaxExtent
 * extents is 128 TiB, past any real image.
 */
export const MAX_EXTENTS = 65536;
/** Extent types vmdk_parse_extents accepts. */
export const EXTENT_TYPES = ['FLAT', 'SPARSE', 'VMFS', 'VMFSSPARSE', 'SESPARSE'] as const;
/** createType values a descriptor *file* may carry (vmdk_open_desc_file). */
export const DESCRIPTOR_FILE_CREATE_TYPES = ['monolithicFlat', 'vmfs', 'vmfsSparse', 'seSparse', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat'] as const;
