/**
 * What one write or zeroing does to one guest cluster's L2 entry (spec "Cluster mapping",
 * "Extended L2 Entries", "Compressed Clusters Descriptor"): pure decisions, no I/O.
 *
 * - A cluster is written in place only when its entry has OFLAG_COPIED (refcount exactly 1) and
 *   host space (normal, or allocated zero); everything else gets a new host cluster, and the old
 *   one (a shared cluster without COPIED, a zero cluster's allocation, the host clusters a
 *   compressed descriptor spans) is freed once the entry no longer points at it.
 * - Copy-on-write (QEMU's COW regions): bytes of the written region the request does not cover
 *   are filled with what the guest reads there now (backing chain, zeros, the decompressed
 *   cluster). Without extended L2 the region is the whole cluster (unless written in place over
 *   data). With extended L2 it is the touched subclusters only, and only their allocation bits
 *   are set; the whole cluster is copied when its old host cluster holds data the new one must
 *   keep (a shared normal cluster, or a compressed one, which becomes fully allocated).
 */
import { VmimgError } from '../../util/errors.js';
import type { Qcow2State } from './state.js';
import {
  clusterType,
  compressedRef,
  COPIED_HI,
  entryOffset,
  isCopied,
  l2Reserved,
  TWO32,
  ZERO_LO,
  type ClusterType,
  type SubclusterBitmap,
  type Word,
} from './l2.js';

export interface L2Entry {
  entry: Word;
  bitmap: SubclusterBitmap;
}

export interface HostRange {
  offset: number;
  length: number;
}

export interface WriteDecision {
  /** Written into the existing host cluster `host`; otherwise into a newly allocated one. */
  inPlace: boolean;
  host: number;
  /** The region of the cluster written: [ra, rb) ⊇ [a, b). */
  ra: number;
  rb: number;
  /** The entry afterwards, given the host cluster; undefined when it does not change. */
  entry?: (host: number) => L2Entry;
  /** Host bytes whose clusters lose this reference once the entry changed. */
  free?: HostRange;
}

const ALL = 0xffffffff;

function corrupt(s: Qcow2State, message: string): VmimgError {
  return new VmimgError('CORRUPT_IMAGE', `qcow2 image '${s.name}' is corrupt: ${message}`, { file: s.name });
}

/** A standard L2 (or L1) entry word. */
export function makeEntry(host: number, copied: boolean, zero = false): Word {
  return { hi: ((copied ? COPIED_HI : 0) | Math.floor(host / TWO32)) >>> 0, lo: ((host % TWO32) | (zero ? ZERO_LO : 0)) >>> 0 };
}

/** Bits of subclusters [from, to) as a u32. */
export function subclusterMask(from: number, to: number): number {
  let m = 0;
  for (let i = from; i < to; i++) m = (m | (1 << i)) >>> 0;
  return m;
}

/** Checks an entry before the write path changes it (the cases map.ts reports as corrupt). */
export function checkEntry(s: Qcow2State, e: L2Entry, where: string): ClusterType {
  const type = clusterType(e.entry, s.extendedL2, s.hasDataFile);
  if (type !== 'compressed') {
    if (l2Reserved(e.entry)) throw corrupt(s, `L2 entry with reserved bits set ${where}`);
    if (entryOffset(e.entry) % s.clusterSize !== 0) throw corrupt(s, `Cluster allocation offset ${entryOffset(e.entry)} unaligned ${where}`);
    if (!Number.isSafeInteger(entryOffset(e.entry) + s.clusterSize)) throw corrupt(s, `cluster offset beyond what vmimg can address ${where}`);
  }
  if (s.version < 3 && (type === 'zero-plain' || type === 'zero-alloc')) throw corrupt(s, `Zero cluster entry found in pre-v3 image ${where}`);
  if (s.extendedL2) {
    const { alloc, zero } = e.bitmap;
    if (type === 'compressed' ? alloc !== 0 || zero !== 0 : (alloc & zero) !== 0 || (type === 'unallocated' && alloc !== 0)) {
      throw corrupt(s, `Invalid cluster entry found ${where}`);
    }
  }
  return type;
}

function freedBy(s: Qcow2State, type: ClusterType, e: L2Entry): HostRange | undefined {
  if (type === 'compressed') return compressedRef(e.entry, s.clusterBits);
  if (type === 'normal' || type === 'zero-alloc') return { offset: entryOffset(e.entry), length: s.clusterSize };
  return undefined;
}

/** Writing bytes [a, b) of a cluster whose entry is `e`. */
export function planWrite(s: Qcow2State, e: L2Entry, type: ClusterType, a: number, b: number): WriteDecision {
  const cs = s.clusterSize;
  const ss = s.subclusterSize;
  const host = entryOffset(e.entry);
  const inPlace = (type === 'normal' || type === 'zero-alloc') && isCopied(e.entry);
  const free = inPlace ? undefined : freedBy(s, type, e);
  if (!s.extendedL2) {
    if (inPlace && type === 'normal') return { inPlace, host, ra: a, rb: b };
    return { inPlace, host, ra: 0, rb: cs, entry: (h) => ({ entry: makeEntry(h, true), bitmap: e.bitmap }), free };
  }
  const wa = Math.floor(a / ss) * ss;
  const wb = Math.ceil(b / ss) * ss;
  const w = subclusterMask(wa / ss, wb / ss);
  let bitmap: SubclusterBitmap;
  let ra = wa;
  let rb = wb;
  if (type === 'compressed') {
    bitmap = { alloc: ALL, zero: 0 };
    ra = 0;
    rb = cs;
  } else if (type === 'normal') {
    bitmap = { alloc: (e.bitmap.alloc | w) >>> 0, zero: (e.bitmap.zero & ~w) >>> 0 };
    if (!inPlace) {
      ra = 0;
      rb = cs;
    } else if (((e.bitmap.alloc & w) >>> 0) === w) {
      ra = a;
      rb = b;
    }
  } else {
    bitmap = { alloc: w, zero: (e.bitmap.zero & ~w) >>> 0 };
  }
  const same = inPlace && bitmap.alloc === e.bitmap.alloc && bitmap.zero === e.bitmap.zero;
  return { inPlace, host, ra, rb, entry: same ? undefined : (h) => ({ entry: makeEntry(h, true), bitmap }), free };
}

export interface ZeroDecision {
  entry?: L2Entry;
  free?: HostRange;
}

/**
 * A whole cluster made to read zeros on a v3 image (QEMU 7.2 zero_in_l2_slice): compressed
 * clusters always lose their allocation, other allocated clusters only with `mayUnmap`; kept
 * allocations get the zero flag (or all subcluster zero bits) and keep their COPIED flag.
 */
export function planZeroCluster(s: Qcow2State, e: L2Entry, type: ClusterType, mayUnmap: boolean): ZeroDecision {
  const unmap = type === 'compressed' || (mayUnmap && (type === 'normal' || type === 'zero-alloc'));
  const free = unmap ? freedBy(s, type, e) : undefined;
  if (!s.extendedL2) {
    if (!unmap && (type === 'zero-plain' || type === 'zero-alloc')) return {};
    const entry = unmap ? makeEntry(0, false, true) : { hi: e.entry.hi, lo: (e.entry.lo | ZERO_LO) >>> 0 };
    return { entry: { entry, bitmap: e.bitmap }, free };
  }
  const entry = unmap ? { hi: 0, lo: 0 } : e.entry;
  if (!unmap && e.bitmap.alloc === 0 && e.bitmap.zero === ALL) return {};
  return { entry: { entry, bitmap: { alloc: 0, zero: ALL } }, free };
}

/** Subclusters `mask` of an extended-L2 cluster (not compressed) made to read zeros. */
export function planZeroSubclusters(e: L2Entry, mask: number): L2Entry | undefined {
  const bitmap = { alloc: (e.bitmap.alloc & ~mask) >>> 0, zero: (e.bitmap.zero | mask) >>> 0 };
  if (bitmap.alloc === e.bitmap.alloc && bitmap.zero === e.bitmap.zero) return undefined;
  return { entry: e.entry, bitmap };
}

/** An entry in on-disk form (8 bytes, or 16 with extended L2). */
export function encodeEntry(s: Qcow2State, e: L2Entry): Uint8Array {
  const out = new Uint8Array(s.l2EntrySize);
  const v = new DataView(out.buffer);
  v.setUint32(0, e.entry.hi);
  v.setUint32(4, e.entry.lo);
  if (s.extendedL2) {
    v.setUint32(8, e.bitmap.zero);
    v.setUint32(12, e.bitmap.alloc);
  }
  return out;
}
