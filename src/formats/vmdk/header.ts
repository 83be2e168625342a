/**
 * Codecs for the binary VMDK structures: the hosted sparse extent header (VMDK4, "KDMV"), the
 * stream footer QEMU reads when gdOffset is GD_AT_END, and the COWD (VMDK3) header. Little-endian
 * throughout (VMware "Virtual Disk Format 5.0", "Hosted Sparse Extent Header"); the struct is
 * packed, so its fields sit at unaligned offsets. Pure: bytes in, values out, no validation
 * beyond the structure's own size (validation lives in open.ts).
 */
import { VmimgError } from '../../util/errors.js';
import { CHECK_BYTES, MARKER_EOS, MARKER_FOOTER, VMDK3_HEADER_BYTES, VMDK3_MAGIC, VMDK4_HEADER_BYTES, VMDK4_MAGIC } from './constants.js';

/** The VMDK4 header. Sector quantities are in 512-byte sectors; u64 fields are bigints. */
export interface SparseHeader {
  version: number;
  flags: number;
  /** Virtual size in sectors. */
  capacity: bigint;
  /** Grain size in sectors. */
  grainSize: bigint;
  descriptorOffset: bigint;
  descriptorSize: bigint;
  numGTEsPerGT: number;
  rgdOffset: bigint;
  gdOffset: bigint;
  /** "overHead": sectors before the first grain. */
  overhead: bigint;
  uncleanShutdown: number;
  checkBytes: readonly [number, number, number, number];
  compressAlgorithm: number;
}

/** Big-endian magic of the first four bytes (0 when fewer than four). */
export function magicOf(bytes: Uint8Array): number {
  if (bytes.length < 4) return 0;
  return new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, false);
}

/** Encodes a VMDK4 header, magic included: VMDK4_HEADER_BYTES bytes. */
export function encodeSparseHeader(h: SparseHeader): Uint8Array {
  const out = new Uint8Array(VMDK4_HEADER_BYTES);
  const v = new DataView(out.buffer);
  v.setUint32(0, VMDK4_MAGIC, false);
  v.setUint32(4, h.version, true);
  v.setUint32(8, h.flags >>> 0, true);
  v.setBigUint64(12, h.capacity, true);
  v.setBigUint64(20, h.grainSize, true);
  v.setBigUint64(28, h.descriptorOffset, true);
  v.setBigUint64(36, h.descriptorSize, true);
  v.setUint32(44, h.numGTEsPerGT, true);
  v.setBigUint64(48, h.rgdOffset, true);
  v.setBigUint64(56, h.gdOffset, true);
  v.setBigUint64(64, h.overhead, true);
  v.setUint8(72, h.uncleanShutdown);
  out.set(h.checkBytes, 73);
  v.setUint16(77, h.compressAlgorithm, true);
  return out;
}

/**
 * Decodes a VMDK4 header from at least VMDK4_HEADER_BYTES bytes starting at the magic. The
 * magic itself is not checked here (a footer copy is decoded the same way).
 */
export function decodeSparseHeader(bytes: Uint8Array): SparseHeader {
  if (bytes.length < VMDK4_HEADER_BYTES) {
    throw new VmimgError('CORRUPT_IMAGE', `vmdk header needs ${VMDK4_HEADER_BYTES} bytes, got ${bytes.length}`, { length: bytes.length });
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, VMDK4_HEADER_BYTES);
  return {
    version: v.getUint32(4, true),
    flags: v.getUint32(8, true),
    capacity: v.getBigUint64(12, true),
    grainSize: v.getBigUint64(20, true),
    descriptorOffset: v.getBigUint64(28, true),
    descriptorSize: v.getBigUint64(36, true),
    numGTEsPerGT: v.getUint32(44, true),
    rgdOffset: v.getBigUint64(48, true),
    gdOffset: v.getBigUint64(56, true),
    overhead: v.getBigUint64(64, true),
    uncleanShutdown: v.getUint8(72),
    checkBytes: [v.getUint8(73), v.getUint8(74), v.getUint8(75), v.getUint8(76)],
    compressAlgorithm: v.getUint16(77, true),
  };
}

export const DEFAULT_CHECK_BYTES: SparseHeader['checkBytes'] = CHECK_BYTES;

/**
 * The three sectors QEMU reads 1536 bytes before the end of a streamOptimized file whose header
 * says GD_AT_END: a footer marker, a copy of the header, an end-of-stream marker.
 */
export interface StreamFooter {
  /** True when the markers and the header copy's magic are what QEMU requires. */
  valid: boolean;
  header: SparseHeader;
}

export const FOOTER_BYTES = 1536;

/** Decodes and checks the footer block (QEMU's "Invalid footer" conditions). */
export function decodeStreamFooter(bytes: Uint8Array): StreamFooter {
  if (bytes.length < FOOTER_BYTES) {
    throw new VmimgError('CORRUPT_IMAGE', `vmdk footer needs ${FOOTER_BYTES} bytes, got ${bytes.length}`, { length: bytes.length });
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, FOOTER_BYTES);
  const footerMarkerOk = v.getUint32(8, true) === 0 && v.getUint32(12, true) === MARKER_FOOTER;
  const eosOk = v.getBigUint64(1024, true) === 0n && v.getUint32(1032, true) === 0 && v.getUint32(1036, true) === MARKER_EOS;
  const header = bytes.subarray(512, 512 + VMDK4_HEADER_BYTES);
  return { valid: footerMarkerOk && eosOk && magicOf(header) === VMDK4_MAGIC, header: decodeSparseHeader(header) };
}

/** The COWD (VMDK3) header fields QEMU uses. */
export interface CowdHeader {
  version: number;
  flags: number;
  diskSectors: number;
  granularity: number;
  l1dirOffset: number;
  l1dirSize: number;
  fileSectors: number;
}

/** Decodes a COWD header from at least VMDK3_HEADER_BYTES bytes starting at the magic. */
export function decodeCowdHeader(bytes: Uint8Array): CowdHeader {
  if (bytes.length < VMDK3_HEADER_BYTES || magicOf(bytes) !== VMDK3_MAGIC) {
    throw new VmimgError('CORRUPT_IMAGE', 'not a COWD header', {});
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, VMDK3_HEADER_BYTES);
  return {
    version: v.getUint32(4, true),
    flags: v.getUint32(8, true),
    diskSectors: v.getUint32(12, true),
    granularity: v.getUint32(16, true),
    l1dirOffset: v.getUint32(20, true),
    l1dirSize: v.getUint32(24, true),
    fileSectors: v.getUint32(28, true),
  };
}
