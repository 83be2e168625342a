/**
 * qcow2 on-disk constants (docs/interop/qcow2.txt in QEMU) and the implementation limits QEMU 7.2
 * applies when it creates or opens an image (block/qcow2.h).
 */

/** "QFI\xfb", big-endian. */
export const QCOW2_MAGIC = 0x514649fb;

/** Byte length of the version 2 header (everything up to `incompatible_features`). */
export const V2_HEADER_LENGTH = 72;
/** Minimum byte length of a version 3 header (up to and including `header_length`). */
export const V3_MIN_HEADER_LENGTH = 104;
/** The version 3 header QEMU 7.2 writes: 104 bytes, the compression type byte, 7 bytes padding. */
export const V3_HEADER_LENGTH = 112;
/** Offset of the one-byte compression type field (present when header_length > 104). */
export const COMPRESSION_TYPE_OFFSET = 104;

export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;
export const DEFAULT_CLUSTER_SIZE = 65536;

/** Header extension types (spec "Header extensions"). */
export const EXT_END = 0x00000000;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_TABLE = 0x6803f857;
export const EXT_CRYPTO_HEADER = 0x0537be77;
export const EXT_BITMAPS = 0x23852875;
export const EXT_DATA_FILE = 0x44415441;

/** Incompatible feature bits. */
export const INCOMPAT_DIRTY = 1n << 0n;
export const INCOMPAT_CORRUPT = 1n << 1n;
export const INCOMPAT_DATA_FILE = 1n << 2n;
export const INCOMPAT_COMPRESSION = 1n << 3n;
export const INCOMPAT_EXTL2 = 1n << 4n;
/** The incompatible bits QEMU 7.2 understands; any other set bit makes it refuse the image. */
export const INCOMPAT_KNOWN = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;

/** Compatible feature bits. */
export const COMPAT_LAZY_REFCOUNTS = 1n << 0n;

/** Autoclear feature bits. */
export const AUTOCLEAR_BITMAPS = 1n << 0n;
export const AUTOCLEAR_DATA_FILE_RAW = 1n << 1n;

export const COMPRESSION_ZLIB = 0;
export const COMPRESSION_ZSTD = 1;

export const CRYPT_NONE = 0;
export const CRYPT_AES = 1;
export const CRYPT_LUKS = 2;

/** L1/L2 entry flag: the cluster's refcount is exactly one (bit 63). */
export const OFLAG_COPIED = 1n << 63n;

/** Bytes per L1 and reftable entry; per L2 entry (8, or 16 with extended L2). */
export const L1E_SIZE = 8;
export const REFTABLE_ENTRY_SIZE = 8;
export const L2E_SIZE_NORMAL = 8;
export const L2E_SIZE_EXTENDED = 16;
/** Subclusters per cluster with extended L2 entries. */
export const EXTL2_SUBCLUSTERS = 32;

/** QEMU's caps (block/qcow2.h): table sizes in bytes, snapshot count, host offsets. */
export const MAX_L1_SIZE_BYTES = 32 * 1024 * 1024;
export const MAX_REFTABLE_SIZE_BYTES = 8 * 1024 * 1024;
export const MAX_SNAPSHOTS = 65536;
/** sizeof(QCowSnapshotHeader): the fixed part of a snapshot table entry. */
export const SNAPSHOT_HEADER_SIZE = 40;
/** Largest host offset QEMU allocates a cluster at: 2^56 - 1. */
export const MAX_CLUSTER_OFFSET = 2 ** 56 - 1;
/** A backing file name may be at most this many bytes (and must fit in cluster 0). */
export const MAX_BACKING_NAME = 1023;
/** Backing format extension payload must be shorter than this (sizeof bs->backing_format). */
export const MAX_BACKING_FORMAT = 16;

export const INT_MAX = 2 ** 31 - 1;
export const INT64_MAX = (1n << 63n) - 1n;
