/**
 * Codecs for the VHDX on-disk structures (Microsoft "VHDX Format Specification" v1.00):
 * the file type identifier (§2.2.1), the two headers (§2.2.2), the region tables (§2.2.3), the
 * metadata table and its five standard items (§3.5), and BAT entries (§3.4). Little-endian
 * throughout. Pure: bytes in, values out; checksums are computed on encode and reported (not
 * enforced) on decode. Validation lives in header.ts.
 */
import { vhdxChecksum } from './crc32c.js';
import type { Guid } from './guid.js';

export const KiB = 1024;
export const MiB = 1024 * 1024;

export const FILE_ID_OFFSET = 0;
export const FILE_SIGNATURE = 'vhdxfile';
/** The creator field: 256 UTF-16LE code units after the signature. */
export const CREATOR_OFFSET = 8;
export const CREATOR_BYTES = 512;

export const HEADER1_OFFSET = 64 * KiB;
export const HEADER2_OFFSET = 128 * KiB;
/** A header's checksum covers its whole 4 KiB. */
export const HEADER_SIZE = 4 * KiB;
export const HEADER_SIGNATURE = 0x6461_6568; // "head"

export const REGION_TABLE1_OFFSET = 192 * KiB;
export const REGION_TABLE2_OFFSET = 256 * KiB;
/** A region table's checksum covers its whole 64 KiB. */
export const REGION_TABLE_SIZE = 64 * KiB;
export const REGION_SIGNATURE = 0x6967_6572; // "regi"
export const REGION_ENTRY_SIZE = 32;
export const REGION_HEADER_SIZE = 16;
/** Spec: at most 2047 entries. */
export const REGION_MAX_ENTRIES = 2047;
export const REGION_FLAG_REQUIRED = 0x1;

/** The header section (file identifier, headers, region tables) spans the first 1 MiB. */
export const HEADER_SECTION_END = 1 * MiB;

export const METADATA_SIGNATURE = 'metadata';
/** The metadata table occupies the first 64 KiB of the metadata region; items follow it. */
export const METADATA_TABLE_SIZE = 64 * KiB;
export const METADATA_HEADER_SIZE = 32;
export const METADATA_ENTRY_SIZE = 32;
export const METADATA_MAX_ENTRIES = 2047;
export const META_FLAG_IS_USER = 0x1;
export const META_FLAG_IS_VIRTUAL_DISK = 0x2;
export const META_FLAG_IS_REQUIRED = 0x4;

/** File parameters flags. */
export const PARAMS_LEAVE_BLOCKS_ALLOCATED = 0x1;
export const PARAMS_HAS_PARENT = 0x2;

/** Metadata item sizes. */
export const FILE_PARAMETERS_SIZE = 8;
export const VIRTUAL_DISK_SIZE_SIZE = 8;
export const PAGE83_DATA_SIZE = 16;
export const SECTOR_SIZE_ITEM_SIZE = 4;

/** BAT entry states (§3.4.1, §3.4.2). */
export const PAYLOAD_BLOCK_NOT_PRESENT = 0;
export const PAYLOAD_BLOCK_UNDEFINED = 1;
export const PAYLOAD_BLOCK_ZERO = 2;
export const PAYLOAD_BLOCK_UNMAPPED = 3;
export const PAYLOAD_BLOCK_UNMAPPED_V095 = 5;
export const PAYLOAD_BLOCK_FULLY_PRESENT = 6;
export const PAYLOAD_BLOCK_PARTIALLY_PRESENT = 7;
export const BAT_STATE_MASK = 0x7n;
/** FileOffsetMB occupies bits 20..63: the entry masked with this is the byte offset. */
export const BAT_FILE_OFFSET_MASK = 0xffff_ffff_fff0_0000n;
export const BAT_ENTRY_SIZE = 8;

/** Block size limits (§3.5.2.1) and the sectors-per-block constant of the chunk ratio (§3.4). */
export const BLOCK_SIZE_MIN = 1 * MiB;
export const BLOCK_SIZE_MAX = 256 * MiB;
export const MAX_SECTORS_PER_BLOCK = 1 << 23;

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function need(bytes: Uint8Array, n: number, what: string): void {
  if (bytes.length < n) throw new RangeError(`${what} needs ${n} bytes, got ${bytes.length}`);
}

function ascii(bytes: Uint8Array): string {
  return String.fromCharCode(...bytes);
}

/** The creator string as UTF-16LE code units, cut to the field's 256 units. */
export function encodeCreator(text: string): Uint8Array {
  const units = Math.min(text.length, CREATOR_BYTES / 2);
  const out = new Uint8Array(units * 2);
  const v = view(out);
  for (let i = 0; i < units; i++) v.setUint16(i * 2, text.charCodeAt(i), true);
  return out;
}

/** The creator string of a file identifier (up to the first NUL unit). */
export function decodeCreator(bytes: Uint8Array): string {
  const v = view(bytes);
  let s = '';
  for (let i = 0; i + 1 < bytes.length && i < CREATOR_BYTES; i += 2) {
    const u = v.getUint16(i, true);
    if (u === 0) break;
    s += String.fromCharCode(u);
  }
  return s;
}

/** The non-zero prefix of the file identifier: signature plus creator code units. */
export function encodeFileIdentifier(creator: string): Uint8Array {
  const creatorBytes = encodeCreator(creator);
  const out = new Uint8Array(CREATOR_OFFSET + creatorBytes.length);
  for (let i = 0; i < 8; i++) out[i] = FILE_SIGNATURE.charCodeAt(i);
  out.set(creatorBytes, CREATOR_OFFSET);
  return out;
}

export function hasFileSignature(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && ascii(bytes.subarray(0, 8)) === FILE_SIGNATURE;
}

export interface VhdxHeader {
  signature: number;
  checksum: number;
  sequenceNumber: bigint;
  fileWriteGuid: Guid;
  dataWriteGuid: Guid;
  logGuid: Guid;
  logVersion: number;
  version: number;
  logLength: number;
  logOffset: bigint;
}

/** Encodes a header into its 4 KiB (reserved bytes zero), checksum computed unless `keepChecksum`. */
export function encodeHeader(h: VhdxHeader, keepChecksum = false): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE);
  const v = view(out);
  v.setUint32(0, h.signature >>> 0, true);
  v.setBigUint64(8, h.sequenceNumber, true);
  out.set(h.fileWriteGuid, 16);
  out.set(h.dataWriteGuid, 32);
  out.set(h.logGuid, 48);
  v.setUint16(64, h.logVersion, true);
  v.setUint16(66, h.version, true);
  v.setUint32(68, h.logLength >>> 0, true);
  v.setBigUint64(72, h.logOffset, true);
  v.setUint32(4, keepChecksum ? h.checksum >>> 0 : vhdxChecksum(out, 4), true);
  return out;
}

export function decodeHeader(bytes: Uint8Array): VhdxHeader {
  need(bytes, 80, 'a VHDX header');
  const v = view(bytes);
  return {
    signature: v.getUint32(0, true),
    checksum: v.getUint32(4, true),
    sequenceNumber: v.getBigUint64(8, true),
    fileWriteGuid: bytes.slice(16, 32),
    dataWriteGuid: bytes.slice(32, 48),
    logGuid: bytes.slice(48, 64),
    logVersion: v.getUint16(64, true),
    version: v.getUint16(66, true),
    logLength: v.getUint32(68, true),
    logOffset: v.getBigUint64(72, true),
  };
}

export interface RegionTableEntry {
  guid: Guid;
  fileOffset: bigint;
  length: number;
  flags: number;
}

export interface RegionTableHeader {
  signature: number;
  checksum: number;
  entryCount: number;
}

/** Encodes a region table with these entries into its 64 KiB; checksum computed unless given. */
export function encodeRegionTable(entries: readonly RegionTableEntry[], checksum?: number): Uint8Array {
  if (entries.length > REGION_MAX_ENTRIES) throw new RangeError('too many region table entries');
  const out = new Uint8Array(REGION_TABLE_SIZE);
  const v = view(out);
  v.setUint32(0, REGION_SIGNATURE, true);
  v.setUint32(8, entries.length, true);
  entries.forEach((e, i) => {
    const at = REGION_HEADER_SIZE + i * REGION_ENTRY_SIZE;
    out.set(e.guid, at);
    v.setBigUint64(at + 16, e.fileOffset, true);
    v.setUint32(at + 24, e.length >>> 0, true);
    v.setUint32(at + 28, e.flags >>> 0, true);
  });
  v.setUint32(4, checksum ?? vhdxChecksum(out, 4), true);
  return out;
}

export function decodeRegionTableHeader(bytes: Uint8Array): RegionTableHeader {
  need(bytes, REGION_HEADER_SIZE, 'a region table header');
  const v = view(bytes);
  return { signature: v.getUint32(0, true), checksum: v.getUint32(4, true), entryCount: v.getUint32(8, true) };
}

/** Entry `i` of a region table (the table's 64 KiB must hold it). */
export function decodeRegionEntry(table: Uint8Array, i: number): RegionTableEntry {
  const at = REGION_HEADER_SIZE + i * REGION_ENTRY_SIZE;
  need(table, at + REGION_ENTRY_SIZE, `region table entry ${i}`);
  const v = view(table);
  return {
    guid: table.slice(at, at + 16),
    fileOffset: v.getBigUint64(at + 16, true),
    length: v.getUint32(at + 24, true),
    flags: v.getUint32(at + 28, true),
  };
}

export interface MetadataEntry {
  itemId: Guid;
  /** Offset of the item from the start of the metadata region. */
  offset: number;
  length: number;
  flags: number;
}

/** Encodes the metadata table (signature, count, entries) into its 64 KiB. */
export function encodeMetadataTable(entries: readonly MetadataEntry[]): Uint8Array {
  if (entries.length > METADATA_MAX_ENTRIES) throw new RangeError('too many metadata entries');
  const out = new Uint8Array(METADATA_TABLE_SIZE);
  const v = view(out);
  for (let i = 0; i < 8; i++) out[i] = METADATA_SIGNATURE.charCodeAt(i);
  v.setUint16(10, entries.length, true);
  entries.forEach((e, i) => {
    const at = METADATA_HEADER_SIZE + i * METADATA_ENTRY_SIZE;
    out.set(e.itemId, at);
    v.setUint32(at + 16, e.offset >>> 0, true);
    v.setUint32(at + 20, e.length >>> 0, true);
    v.setUint32(at + 24, e.flags >>> 0, true);
  });
  return out;
}

export function decodeMetadataTableHeader(bytes: Uint8Array): { signature: string; entryCount: number } {
  need(bytes, METADATA_HEADER_SIZE, 'a metadata table header');
  return { signature: ascii(bytes.subarray(0, 8)), entryCount: view(bytes).getUint16(10, true) };
}

export function decodeMetadataEntry(table: Uint8Array, i: number): MetadataEntry {
  const at = METADATA_HEADER_SIZE + i * METADATA_ENTRY_SIZE;
  need(table, at + METADATA_ENTRY_SIZE, `metadata entry ${i}`);
  const v = view(table);
  return { itemId: table.slice(at, at + 16), offset: v.getUint32(at + 16, true), length: v.getUint32(at + 20, true), flags: v.getUint32(at + 24, true) };
}

export interface FileParameters {
  blockSize: number;
  flags: number;
}

export function encodeFileParameters(p: FileParameters): Uint8Array {
  const out = new Uint8Array(FILE_PARAMETERS_SIZE);
  const v = view(out);
  v.setUint32(0, p.blockSize >>> 0, true);
  v.setUint32(4, p.flags >>> 0, true);
  return out;
}

export function decodeFileParameters(bytes: Uint8Array): FileParameters {
  need(bytes, FILE_PARAMETERS_SIZE, 'file parameters');
  const v = view(bytes);
  return { blockSize: v.getUint32(0, true), flags: v.getUint32(4, true) };
}

export function encodeU64(value: bigint): Uint8Array {
  const out = new Uint8Array(8);
  view(out).setBigUint64(0, value, true);
  return out;
}

export function encodeU32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  view(out).setUint32(0, value >>> 0, true);
  return out;
}

export function decodeU64(bytes: Uint8Array): bigint {
  need(bytes, 8, 'a u64');
  return view(bytes).getBigUint64(0, true);
}

export function decodeU32(bytes: Uint8Array): number {
  need(bytes, 4, 'a u32');
  return view(bytes).getUint32(0, true);
}

/** A BAT entry: state in bits 0..2, the 1 MiB-aligned byte offset in bits 20..63. */
export function encodeBatEntry(state: number, fileOffset: bigint): bigint {
  return (fileOffset & BAT_FILE_OFFSET_MASK) | (BigInt(state) & BAT_STATE_MASK);
}

export function batEntryState(entry: bigint): number {
  return Number(entry & BAT_STATE_MASK);
}

export function batEntryOffset(entry: bigint): bigint {
  return entry & BAT_FILE_OFFSET_MASK;
}
