/**
 * qcow2 table entries (QEMU docs/interop/qcow2.txt, "Cluster mapping"): L1 entries, L2 entries
 * (standard and compressed cluster descriptors), the extended-L2 subcluster bitmap, and the
 * cluster/subcluster classification QEMU 7.2 applies to them (qcow2_get_cluster_type,
 * qcow2_get_subcluster_type, qcow2_get_subcluster_range_type). Pure decoding: no I/O.
 *
 * A 64-bit entry is handled as two big-endian 32-bit words (hi = bits 63..32, lo = bits 31..0),
 * so no BigInt is needed on the hot path. Offsets are rebuilt as JS numbers; an offset above
 * 2^53 (no real file is that large) is reported as such by the callers, never silently rounded.
 */

/** Bit 63 of L1/L2 entries: the cluster's refcount is exactly one. */
export const COPIED_HI = 0x80000000;
/** Bit 62 of L2 entries: compressed cluster descriptor. */
export const COMPRESSED_HI = 0x40000000;
/** Bit 0 of standard L2 entries: reads as zeros (without extended L2). */
export const ZERO_LO = 0x1;

/** Offset bits 9..55 of L1 and standard L2 entries (L1E_OFFSET_MASK / L2E_OFFSET_MASK). */
const OFFSET_HI = 0x00ffffff;
const OFFSET_LO = 0xfffffe00;
/** L1E_RESERVED_MASK 0x7f000000000001ff. */
const L1_RESERVED_HI = 0x7f000000;
const L1_RESERVED_LO = 0x1ff;
/** L2E_STD_RESERVED_MASK 0x3f000000000001fe. */
const L2_RESERVED_HI = 0x3f000000;
const L2_RESERVED_LO = 0x1fe;

export const TWO32 = 2 ** 32;

/** One 64-bit table word. */
export interface Word {
  hi: number;
  lo: number;
}

export function readWord(v: DataView, at: number): Word {
  return { hi: v.getUint32(at), lo: v.getUint32(at + 4) };
}

export function isZeroWord(w: Word): boolean {
  return w.hi === 0 && w.lo === 0;
}

/** The word as an exact bigint (for messages that print it, like QEMU's PRIx64). */
export function wordBig(w: Word): bigint {
  return (BigInt(w.hi) << 32n) | BigInt(w.lo);
}

export function hex(w: Word | bigint | number): string {
  const b = typeof w === 'bigint' ? w : typeof w === 'number' ? BigInt(w) : wordBig(w);
  return b.toString(16);
}

/** C's "%#x": "0" for zero, else 0x-prefixed lowercase hex. */
export function altHex(n: number | bigint): string {
  return n === 0 || n === 0n ? '0' : '0x' + hex(n);
}

/** Bits 9..55 of an L1 or standard L2 entry as a byte offset (0 = none). */
export function entryOffset(w: Word): number {
  return (w.hi & OFFSET_HI) * TWO32 + ((w.lo & OFFSET_LO) >>> 0);
}

export function l1Reserved(w: Word): boolean {
  return (w.hi & L1_RESERVED_HI) !== 0 || (w.lo & L1_RESERVED_LO) !== 0;
}

export function l2Reserved(w: Word): boolean {
  return (w.hi & L2_RESERVED_HI) !== 0 || (w.lo & L2_RESERVED_LO) !== 0;
}

export function isCopied(w: Word): boolean {
  return (w.hi & COPIED_HI) !== 0;
}

export function isCompressed(w: Word): boolean {
  return (w.hi & COMPRESSED_HI) !== 0;
}

/** QCow2ClusterType: what a whole L2 entry describes. */
export type ClusterType = 'unallocated' | 'zero-plain' | 'zero-alloc' | 'normal' | 'compressed';

/**
 * qcow2_get_cluster_type(): the compressed bit wins; the zero bit counts only without extended
 * L2; offset 0 is unallocated except in an image with an external data file, where offset 0 with
 * COPIED is a normal cluster (spec: data file clusters always have refcount 1).
 */
export function clusterType(w: Word, extendedL2: boolean, hasDataFile: boolean): ClusterType {
  if (isCompressed(w)) return 'compressed';
  const offset = (w.hi & OFFSET_HI) !== 0 || (w.lo & OFFSET_LO) !== 0;
  if ((w.lo & ZERO_LO) !== 0 && !extendedL2) return offset ? 'zero-alloc' : 'zero-plain';
  if (!offset) return hasDataFile && isCopied(w) ? 'normal' : 'unallocated';
  return 'normal';
}

/** QCow2SubclusterType: what one subcluster (the whole cluster without extended L2) reads as. */
export type SubclusterType =
  | 'normal'
  | 'compressed'
  | 'zero-plain'
  | 'zero-alloc'
  | 'unallocated-plain'
  | 'unallocated-alloc'
  | 'invalid';

/** The extended L2 bitmap: bit i of `alloc` = subcluster i allocated, bit i of `zero` = reads as zero. */
export interface SubclusterBitmap {
  alloc: number;
  zero: number;
}

export const NO_BITMAP: SubclusterBitmap = { alloc: 0, zero: 0 };

/** The bitmap word following an extended L2 entry (bits 0..31 allocation, 32..63 zero). */
export function readBitmap(v: DataView, at: number): SubclusterBitmap {
  return { zero: v.getUint32(at), alloc: v.getUint32(at + 4) };
}

/** qcow2_get_subcluster_type() for subcluster `sc` of an entry. */
export function subclusterType(type: ClusterType, bitmap: SubclusterBitmap, extendedL2: boolean, sc: number): SubclusterType {
  if (!extendedL2) {
    if (type === 'unallocated') return 'unallocated-plain';
    return type;
  }
  const bit = 2 ** sc;
  switch (type) {
    case 'compressed':
      return 'compressed';
    case 'normal':
      if ((bitmap.alloc & bitmap.zero) !== 0) return 'invalid';
      if ((Math.floor(bitmap.zero / bit) & 1) !== 0) return 'zero-alloc';
      if ((Math.floor(bitmap.alloc / bit) & 1) !== 0) return 'normal';
      return 'unallocated-alloc';
    case 'unallocated':
      if (bitmap.alloc !== 0) return 'invalid';
      if ((Math.floor(bitmap.zero / bit) & 1) !== 0) return 'zero-plain';
      return 'unallocated-plain';
    default:
      // zero-plain / zero-alloc cannot occur: the zero bit is ignored with extended L2.
      return 'invalid';
  }
}

/** Count of trailing one bits of a u32 (cto32), 32 for all ones. */
function cto32(x: number): number {
  let n = 0;
  while (n < 32 && ((x >>> n) & 1) === 1) n++;
  return n;
}

/** Count of trailing zero bits of a u32 (ctz32), 32 for zero. */
function ctz32(x: number): number {
  let n = 0;
  while (n < 32 && ((x >>> n) & 1) === 0) n++;
  return n;
}

/** Bits [0, n) set, as a u32. */
function lowBits(n: number): number {
  return n >= 32 ? 0xffffffff : (2 ** n - 1) >>> 0;
}

/**
 * qcow2_get_subcluster_range_type(): the type of subcluster `from` and how many subclusters,
 * starting there, share it within this cluster (`perCluster` without extended L2).
 */
export function subclusterRun(type: ClusterType, bitmap: SubclusterBitmap, extendedL2: boolean, from: number, perCluster: number): { type: SubclusterType; count: number } {
  const t = subclusterType(type, bitmap, extendedL2, from);
  if (t === 'invalid' || !extendedL2 || t === 'compressed') return { type: t, count: perCluster - from };
  switch (t) {
    case 'normal':
      return { type: t, count: cto32((bitmap.alloc | lowBits(from)) >>> 0) - from };
    case 'zero-plain':
    case 'zero-alloc':
      return { type: t, count: cto32((bitmap.zero | lowBits(from)) >>> 0) - from };
    default:
      return { type: t, count: ctz32(((bitmap.zero | bitmap.alloc) & ~lowBits(from)) >>> 0) - from };
  }
}

/** A compressed cluster descriptor, decoded (qcow2_parse_compressed_l2_entry). */
export interface CompressedRef {
  /** Host byte offset of the compressed data. */
  offset: number;
  /** Bytes to read: whole 512-byte sectors from the sector holding `offset`, less the lead-in. */
  length: number;
}

/**
 * Spec "Compressed Clusters Descriptor": with x = 62 - (cluster_bits - 8), bits 0..x-1 hold the
 * host offset and bits x..61 the number of additional 512-byte sectors.
 */
export function compressedRef(w: Word, clusterBits: number): CompressedRef {
  const x = 62 - (clusterBits - 8);
  // x is 49..61 (cluster_bits 9..21): the split falls inside the high word.
  const offsetBitsInHi = x - 32;
  const offset = (w.hi & lowBits(offsetBitsInHi)) * TWO32 + w.lo;
  const sectors = (((w.hi & 0x3fffffff) >>> offsetBitsInHi) & lowBits(clusterBits - 8)) + 1;
  return { offset, length: sectors * 512 - (offset % 512) };
}
