/**
 * Codecs for the two VHD structures (Microsoft "Virtual Hard Disk Image Format Specification"
 * v1.0): the 512-byte hard disk footer and the 1024-byte dynamic disk header. Big-endian
 * throughout; both carry a checksum that is the one's complement of the byte sum of the
 * structure with the checksum field taken as zero. Pure: bytes in, values out; validation lives
 * in header.ts.
 */

export const FOOTER_SIZE = 512;
export const DYN_HEADER_SIZE = 1024;

export const FOOTER_COOKIE = 'conectix';
export const DYN_HEADER_COOKIE = 'cxsparse';

/** Footer "Disk Type" values (spec §"Hard Disk Footer Format"). */
export const DISK_TYPE_FIXED = 2;
export const DISK_TYPE_DYNAMIC = 3;
export const DISK_TYPE_DIFFERENCING = 4;

/** Footer "Data Offset" of a fixed disk, and the dynamic header's unused "Data Offset". */
export const NO_OFFSET = 0xffff_ffff_ffff_ffffn;

/** Seconds from the Unix epoch to 2000-01-01T00:00:00Z, the VHD timestamp origin. */
export const VHD_EPOCH_UNIX_SECONDS = 946_684_800;

/** Byte offsets of the checksum fields. */
export const FOOTER_CHECKSUM_OFFSET = 64;
export const DYN_HEADER_CHECKSUM_OFFSET = 36;

export interface VhdFooter {
  /** 8 bytes; "conectix" in a valid footer (latin1, so any bytes round-trip). */
  cookie: string;
  features: number;
  formatVersion: number;
  dataOffset: bigint;
  /** Seconds since 2000-01-01 UTC (unsigned 32-bit). */
  timestamp: number;
  /** 4 bytes, latin1 ("qemu", "qem2", "win ", "tap\0", ...). */
  creatorApp: string;
  /** Major in the high 16 bits, minor in the low 16 bits. */
  creatorVersion: number;
  /** 4 bytes, latin1 ("Wi2k", "Mac "). */
  creatorOs: string;
  originalSize: bigint;
  currentSize: bigint;
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
  diskType: number;
  /** The stored checksum. */
  checksum: number;
  uuid: Uint8Array;
  savedState: number;
}

export interface VhdDynamicHeader {
  cookie: string;
  dataOffset: bigint;
  tableOffset: bigint;
  headerVersion: number;
  maxTableEntries: number;
  blockSize: number;
  checksum: number;
  parentUuid: Uint8Array;
  parentTimestamp: number;
  /** 512 bytes of UTF-16BE, kept raw. */
  parentName: Uint8Array;
  /** Eight 24-byte parent locator entries, kept raw (192 bytes). */
  parentLocators: Uint8Array;
}

/** One's complement of the byte sum of `bytes`, skipping the 4 checksum bytes at `skipAt`. */
export function vhdChecksum(bytes: Uint8Array, skipAt: number): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (i >= skipAt && i < skipAt + 4) continue;
    sum = (sum + bytes[i]!) >>> 0;
  }
  return ~sum >>> 0;
}

function latin1(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return s;
}

function putLatin1(out: Uint8Array, at: number, text: string, length: number): void {
  if (text.length !== length) throw new RangeError(`expected ${length} characters, got ${JSON.stringify(text)}`);
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0xff) throw new RangeError(`character ${c} does not fit a byte`);
    out[at + i] = c;
  }
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Encodes a footer. The checksum is computed over the encoded bytes unless `keepChecksum` is
 * set (tests use that to write a wrong one).
 */
export function encodeFooter(f: VhdFooter, keepChecksum = false): Uint8Array {
  const out = new Uint8Array(FOOTER_SIZE);
  const v = view(out);
  putLatin1(out, 0, f.cookie, 8);
  v.setUint32(8, f.features >>> 0);
  v.setUint32(12, f.formatVersion >>> 0);
  v.setBigUint64(16, f.dataOffset);
  v.setUint32(24, f.timestamp >>> 0);
  putLatin1(out, 28, f.creatorApp, 4);
  v.setUint32(32, f.creatorVersion >>> 0);
  putLatin1(out, 36, f.creatorOs, 4);
  v.setBigUint64(40, f.originalSize);
  v.setBigUint64(48, f.currentSize);
  v.setUint16(56, f.cylinders);
  v.setUint8(58, f.heads);
  v.setUint8(59, f.sectorsPerTrack);
  v.setUint32(60, f.diskType >>> 0);
  if (f.uuid.length !== 16) throw new RangeError('uuid must be 16 bytes');
  out.set(f.uuid, 68);
  v.setUint8(84, f.savedState);
  v.setUint32(FOOTER_CHECKSUM_OFFSET, keepChecksum ? f.checksum >>> 0 : vhdChecksum(out, FOOTER_CHECKSUM_OFFSET));
  return out;
}

/** Decodes the first FOOTER_SIZE bytes of `bytes` (which must hold at least that many). */
export function decodeFooter(bytes: Uint8Array): VhdFooter {
  if (bytes.length < FOOTER_SIZE) throw new RangeError(`a VHD footer needs ${FOOTER_SIZE} bytes, got ${bytes.length}`);
  const v = view(bytes);
  return {
    cookie: latin1(bytes.subarray(0, 8)),
    features: v.getUint32(8),
    formatVersion: v.getUint32(12),
    dataOffset: v.getBigUint64(16),
    timestamp: v.getUint32(24),
    creatorApp: latin1(bytes.subarray(28, 32)),
    creatorVersion: v.getUint32(32),
    creatorOs: latin1(bytes.subarray(36, 40)),
    originalSize: v.getBigUint64(40),
    currentSize: v.getBigUint64(48),
    cylinders: v.getUint16(56),
    heads: v.getUint8(58),
    sectorsPerTrack: v.getUint8(59),
    diskType: v.getUint32(60),
    checksum: v.getUint32(FOOTER_CHECKSUM_OFFSET),
    uuid: bytes.slice(68, 84),
    savedState: v.getUint8(84),
  };
}

/** True when the footer's stored checksum matches its bytes (QEMU checks the whole 512). */
export function footerChecksumValid(bytes: Uint8Array): boolean {
  const footer = bytes.subarray(0, FOOTER_SIZE);
  return view(footer).getUint32(FOOTER_CHECKSUM_OFFSET) === vhdChecksum(footer, FOOTER_CHECKSUM_OFFSET);
}

/** Encodes a dynamic disk header; checksum computed unless `keepChecksum`. */
export function encodeDynamicHeader(h: VhdDynamicHeader, keepChecksum = false): Uint8Array {
  const out = new Uint8Array(DYN_HEADER_SIZE);
  const v = view(out);
  putLatin1(out, 0, h.cookie, 8);
  v.setBigUint64(8, h.dataOffset);
  v.setBigUint64(16, h.tableOffset);
  v.setUint32(24, h.headerVersion >>> 0);
  v.setUint32(28, h.maxTableEntries >>> 0);
  v.setUint32(32, h.blockSize >>> 0);
  if (h.parentUuid.length !== 16) throw new RangeError('parent uuid must be 16 bytes');
  out.set(h.parentUuid, 40);
  v.setUint32(56, h.parentTimestamp >>> 0);
  if (h.parentName.length !== 512) throw new RangeError('parent name must be 512 bytes');
  out.set(h.parentName, 64);
  if (h.parentLocators.length !== 192) throw new RangeError('parent locators must be 192 bytes');
  out.set(h.parentLocators, 576);
  v.setUint32(DYN_HEADER_CHECKSUM_OFFSET, keepChecksum ? h.checksum >>> 0 : vhdChecksum(out, DYN_HEADER_CHECKSUM_OFFSET));
  return out;
}

/** Decodes the first DYN_HEADER_SIZE bytes of `bytes`. */
export function decodeDynamicHeader(bytes: Uint8Array): VhdDynamicHeader {
  if (bytes.length < DYN_HEADER_SIZE) throw new RangeError(`a VHD dynamic header needs ${DYN_HEADER_SIZE} bytes, got ${bytes.length}`);
  const v = view(bytes);
  return {
    cookie: latin1(bytes.subarray(0, 8)),
    dataOffset: v.getBigUint64(8),
    tableOffset: v.getBigUint64(16),
    headerVersion: v.getUint32(24),
    maxTableEntries: v.getUint32(28),
    blockSize: v.getUint32(32),
    checksum: v.getUint32(DYN_HEADER_CHECKSUM_OFFSET),
    parentUuid: bytes.slice(40, 56),
    parentTimestamp: v.getUint32(56),
    parentName: bytes.slice(64, 576),
    parentLocators: bytes.slice(576, 768),
  };
}

/** A VHD timestamp (seconds since 2000-01-01 UTC, unsigned 32-bit) for a Unix time in ms. */
export function vhdTimestamp(unixMillis: number): number {
  return (Math.floor(unixMillis / 1000) - VHD_EPOCH_UNIX_SECONDS) >>> 0;
}
