/**
 * qcow2 header codec: the fixed header (spec "Header", big-endian), header extensions and the
 * cluster-0 image QEMU 7.2's qcow2_update_header() writes. Pure struct ↔ bytes; range checks on
 * untrusted values live in validate.ts.
 */
import {
  COMPRESSION_TYPE_OFFSET,
  EXT_BACKING_FORMAT,
  EXT_DATA_FILE,
  EXT_BITMAPS,
  EXT_END,
  EXT_FEATURE_TABLE,
  V2_HEADER_LENGTH,
  V3_HEADER_LENGTH,
} from './constants.js';
import type { BitmapsExtension } from './bitmaps.js';

export interface Qcow2Header {
  magic: number;
  version: number;
  backingFileOffset: bigint;
  backingFileSize: number;
  clusterBits: number;
  /** Virtual size in bytes as stored (QEMU exposes it rounded down to 512). */
  size: bigint;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: bigint;
  refcountTableOffset: bigint;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: bigint;
  /** Version 3 fields; a version 2 header decodes with QEMU's implied values (0, 0, 0, 4, 72). */
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  refcountOrder: number;
  headerLength: number;
  /** 0 = zlib, 1 = zstd; read only when header_length > 104, else zlib. */
  compressionType: number;
}

export interface HeaderExtension {
  type: number;
  /** Byte offset of the extension's 8-byte type/length prefix in cluster 0. */
  offset: number;
  data: Uint8Array;
}

/** Bytes decodeHeader needs; shorter input is treated as zero-padded (QEMU reads past EOF as 0). */
export const HEADER_READ_SIZE = V3_HEADER_LENGTH;

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function padded(bytes: Uint8Array, length: number): Uint8Array {
  if (bytes.length >= length) return bytes;
  const out = new Uint8Array(length);
  out.set(bytes);
  return out;
}

/** Decodes the fixed header fields. Performs no validation beyond reading. */
export function decodeHeader(input: Uint8Array): Qcow2Header {
  const b = padded(input, HEADER_READ_SIZE);
  const v = view(b);
  const version = v.getUint32(4);
  const h: Qcow2Header = {
    magic: v.getUint32(0),
    version,
    backingFileOffset: v.getBigUint64(8),
    backingFileSize: v.getUint32(16),
    clusterBits: v.getUint32(20),
    size: v.getBigUint64(24),
    cryptMethod: v.getUint32(32),
    l1Size: v.getUint32(36),
    l1TableOffset: v.getBigUint64(40),
    refcountTableOffset: v.getBigUint64(48),
    refcountTableClusters: v.getUint32(56),
    nbSnapshots: v.getUint32(60),
    snapshotsOffset: v.getBigUint64(64),
    incompatibleFeatures: 0n,
    compatibleFeatures: 0n,
    autoclearFeatures: 0n,
    refcountOrder: 4,
    headerLength: V2_HEADER_LENGTH,
    compressionType: 0,
  };
  if (version >= 3) {
    h.incompatibleFeatures = v.getBigUint64(72);
    h.compatibleFeatures = v.getBigUint64(80);
    h.autoclearFeatures = v.getBigUint64(88);
    h.refcountOrder = v.getUint32(96);
    h.headerLength = v.getUint32(100);
    if (h.headerLength > COMPRESSION_TYPE_OFFSET) h.compressionType = b[COMPRESSION_TYPE_OFFSET]!;
  }
  return h;
}

/**
 * Encodes the fixed header as QEMU writes it: 72 bytes for version 2 (the version 3 fields are
 * not written), 112 bytes otherwise (104 + compression type byte + 7 zero bytes).
 */
export function encodeHeader(h: Qcow2Header): Uint8Array {
  const out = new Uint8Array(h.version === 2 ? V2_HEADER_LENGTH : V3_HEADER_LENGTH);
  const v = view(out);
  v.setUint32(0, h.magic);
  v.setUint32(4, h.version);
  v.setBigUint64(8, h.backingFileOffset);
  v.setUint32(16, h.backingFileSize);
  v.setUint32(20, h.clusterBits);
  v.setBigUint64(24, h.size);
  v.setUint32(32, h.cryptMethod);
  v.setUint32(36, h.l1Size);
  v.setBigUint64(40, h.l1TableOffset);
  v.setBigUint64(48, h.refcountTableOffset);
  v.setUint32(56, h.refcountTableClusters);
  v.setUint32(60, h.nbSnapshots);
  v.setBigUint64(64, h.snapshotsOffset);
  if (h.version !== 2) {
    v.setBigUint64(72, h.incompatibleFeatures);
    v.setBigUint64(80, h.compatibleFeatures);
    v.setBigUint64(88, h.autoclearFeatures);
    v.setUint32(96, h.refcountOrder);
    v.setUint32(100, h.headerLength);
    out[COMPRESSION_TYPE_OFFSET] = h.compressionType;
  }
  return out;
}

/** One header extension: type, length, payload, zero padding to a multiple of 8 (spec). */
export function encodeExtension(type: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + Math.ceil(data.length / 8) * 8);
  const v = view(out);
  v.setUint32(0, type);
  v.setUint32(4, data.length);
  out.set(data, 8);
  return out;
}

export interface FeatureName {
  /** 0 = incompatible, 1 = compatible, 2 = autoclear. */
  type: number;
  bit: number;
  name: string;
}

/** The feature name table QEMU 7.2 writes, in its order. */
export const QEMU_FEATURE_NAMES: readonly FeatureName[] = [
  { type: 0, bit: 0, name: 'dirty bit' },
  { type: 0, bit: 1, name: 'corrupt bit' },
  { type: 0, bit: 2, name: 'external data file' },
  { type: 0, bit: 3, name: 'compression type' },
  { type: 0, bit: 4, name: 'extended L2 entries' },
  { type: 1, bit: 0, name: 'lazy refcounts' },
  { type: 2, bit: 0, name: 'bitmaps' },
  { type: 2, bit: 1, name: 'raw external data' },
];

/** Bytes per feature name table entry: type, bit number, 46-byte zero-padded name. */
export const FEATURE_ENTRY_SIZE = 48;

export function encodeFeatureTable(features: readonly FeatureName[]): Uint8Array {
  const out = new Uint8Array(features.length * FEATURE_ENTRY_SIZE);
  features.forEach((f, i) => {
    const at = i * FEATURE_ENTRY_SIZE;
    out[at] = f.type;
    out[at + 1] = f.bit;
    out.set(new TextEncoder().encode(f.name).subarray(0, FEATURE_ENTRY_SIZE - 2), at + 2);
  });
  return out;
}

export function decodeFeatureTable(data: Uint8Array): FeatureName[] {
  const out: FeatureName[] = [];
  for (let at = 0; at + FEATURE_ENTRY_SIZE <= data.length; at += FEATURE_ENTRY_SIZE) {
    const raw = data.subarray(at + 2, at + FEATURE_ENTRY_SIZE);
    const nul = raw.indexOf(0);
    out.push({ type: data[at]!, bit: data[at + 1]!, name: new TextDecoder().decode(nul < 0 ? raw : raw.subarray(0, nul)) });
  }
  return out;
}

/** The bitmaps extension payload (spec "Bitmaps extension"): count, reserved, directory size and offset. */
export function encodeBitmapsExtension(e: BitmapsExtension): Uint8Array {
  const out = new Uint8Array(24);
  const v = view(out);
  v.setUint32(0, e.count);
  v.setBigUint64(8, e.directorySize);
  v.setBigUint64(16, e.directoryOffset);
  return out;
}

/** What goes into cluster 0 besides the fixed header. */
export interface HeaderCluster {
  header: Qcow2Header;
  /** Backing format name (extension 0xe2792aca), as given. */
  backingFormat?: string;
  /** External data file name (extension 0x44415441, not NUL-terminated; the caller sets incompatible bit 2). */
  dataFile?: string;
  /** Backing file name, stored raw (not NUL-terminated) after the extensions. */
  backingFile?: string;
  /** The bitmaps extension (0x23852875; the caller sets the "bitmaps" autoclear bit). */
  bitmaps?: BitmapsExtension;
  clusterSize: number;
}

/** Thrown by buildHeaderCluster when cluster 0 cannot hold everything (QEMU: -ENOSPC). */
export class HeaderNoSpace extends Error {
  constructor(readonly needed: string) {
    super(`qcow2 header cluster has no space for ${needed}`);
  }
}

/**
 * The whole cluster 0 as qcow2_update_header() (QEMU 7.2) builds it: fixed header, backing
 * format extension, external data file name extension, feature name table (version 3 with clusters larger than 4 KiB only), bitmaps
 * extension, end marker, then the backing file name; the rest zero. Fills in backing_file_offset/size.
 */
export function buildHeaderCluster(spec: HeaderCluster): Uint8Array {
  const out = new Uint8Array(spec.clusterSize);
  const fixed = encodeHeader(spec.header);
  if (fixed.length > out.length) throw new HeaderNoSpace('the fixed header');
  let at = fixed.length;
  const add = (what: string, type: number, data: Uint8Array) => {
    const ext = encodeExtension(type, data);
    if (at + ext.length > out.length) throw new HeaderNoSpace(what);
    out.set(ext, at);
    at += ext.length;
  };
  if (spec.backingFormat !== undefined) add('the backing format extension', EXT_BACKING_FORMAT, new TextEncoder().encode(spec.backingFormat));
  if (spec.dataFile !== undefined) add('the external data file name', EXT_DATA_FILE, new TextEncoder().encode(spec.dataFile));
  if (spec.header.version >= 3 && spec.clusterSize > 4096) add('the feature name table', EXT_FEATURE_TABLE, encodeFeatureTable(QEMU_FEATURE_NAMES));
  if (spec.bitmaps) add('the bitmaps extension', EXT_BITMAPS, encodeBitmapsExtension(spec.bitmaps));
  add('the end-of-extensions marker', EXT_END, new Uint8Array(0));
  const header = { ...spec.header, backingFileOffset: 0n, backingFileSize: 0 };
  if (spec.backingFile !== undefined) {
    const name = new TextEncoder().encode(spec.backingFile);
    if (at + name.length > out.length) throw new HeaderNoSpace('the backing file name');
    out.set(name, at);
    header.backingFileOffset = BigInt(at);
    header.backingFileSize = name.length;
  }
  out.set(encodeHeader(header), 0);
  return out;
}
