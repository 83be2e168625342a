/**
 * packagefs v1.0 on-disk structures (docs/packagefs.md): the superblock and the 96-byte entry
 * record as pure codecs over bytes. Little-endian throughout; 64-bit fields are decoded as bigint
 * so a hostile value can be range-checked before it becomes a number.
 */
import { createHash } from 'node:crypto';

export const MAGIC = Buffer.from('VMIPKGFS', 'latin1');
export const VERSION_MAJOR = 1;
export const VERSION_MINOR = 0;
export const SECTOR = 512;
export const SUPERBLOCK_SIZE = 512;
export const ENTRY_SIZE = 96;
export const INDEX_OFFSET = SUPERBLOCK_SIZE;
export const MAX_NAME = 4096;
/** Offset and length of the metadata hash inside the superblock. */
export const META_HASH_OFFSET = 80;
export const HASH_LENGTH = 32;

export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;

export interface Superblock {
  versionMajor: number;
  versionMinor: number;
  flags: number;
  sectorSize: number;
  entrySize: number;
  entryCount: bigint;
  indexOffset: bigint;
  namesOffset: bigint;
  namesLength: bigint;
  dataOffset: bigint;
  imageSize: bigint;
  buildTime: bigint;
  metadataSha256: Buffer;
  /** True when bytes 112..511 are all zero. */
  reservedZero: boolean;
}

export interface EntryRecord {
  nameOffset: bigint;
  nameLength: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: bigint;
  size: bigint;
  data: bigint;
  sha256: Buffer;
  reservedZero: boolean;
}

export function encodeSuperblock(sb: Omit<Superblock, 'reservedZero'>): Buffer {
  const b = Buffer.alloc(SUPERBLOCK_SIZE);
  MAGIC.copy(b, 0);
  b.writeUInt16LE(sb.versionMajor, 8);
  b.writeUInt16LE(sb.versionMinor, 10);
  b.writeUInt32LE(sb.flags, 12);
  b.writeUInt32LE(sb.sectorSize, 16);
  b.writeUInt32LE(sb.entrySize, 20);
  b.writeBigUInt64LE(sb.entryCount, 24);
  b.writeBigUInt64LE(sb.indexOffset, 32);
  b.writeBigUInt64LE(sb.namesOffset, 40);
  b.writeBigUInt64LE(sb.namesLength, 48);
  b.writeBigUInt64LE(sb.dataOffset, 56);
  b.writeBigUInt64LE(sb.imageSize, 64);
  b.writeBigInt64LE(sb.buildTime, 72);
  sb.metadataSha256.copy(b, META_HASH_OFFSET, 0, HASH_LENGTH);
  return b;
}

/** Decodes a superblock; returns undefined when the magic does not match. */
export function decodeSuperblock(b: Uint8Array): Superblock | undefined {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.length);
  if (buf.length < SUPERBLOCK_SIZE || !buf.subarray(0, 8).equals(MAGIC)) return undefined;
  return {
    versionMajor: buf.readUInt16LE(8),
    versionMinor: buf.readUInt16LE(10),
    flags: buf.readUInt32LE(12),
    sectorSize: buf.readUInt32LE(16),
    entrySize: buf.readUInt32LE(20),
    entryCount: buf.readBigUInt64LE(24),
    indexOffset: buf.readBigUInt64LE(32),
    namesOffset: buf.readBigUInt64LE(40),
    namesLength: buf.readBigUInt64LE(48),
    dataOffset: buf.readBigUInt64LE(56),
    imageSize: buf.readBigUInt64LE(64),
    buildTime: buf.readBigInt64LE(72),
    metadataSha256: Buffer.from(buf.subarray(META_HASH_OFFSET, META_HASH_OFFSET + HASH_LENGTH)),
    reservedZero: buf.subarray(112, SUPERBLOCK_SIZE).every((x) => x === 0),
  };
}

export function encodeEntry(e: Omit<EntryRecord, 'reservedZero'>, out: Buffer, at: number): void {
  out.writeBigUInt64LE(e.nameOffset, at);
  out.writeUInt32LE(e.nameLength, at + 8);
  out.writeUInt32LE(e.mode, at + 12);
  out.writeUInt32LE(e.uid, at + 16);
  out.writeUInt32LE(e.gid, at + 20);
  out.writeBigInt64LE(e.mtime, at + 24);
  out.writeBigUInt64LE(e.size, at + 32);
  out.writeBigUInt64LE(e.data, at + 40);
  e.sha256.copy(out, at + 48, 0, HASH_LENGTH);
  out.fill(0, at + 80, at + ENTRY_SIZE);
}

export function decodeEntry(buf: Buffer, at: number): EntryRecord {
  return {
    nameOffset: buf.readBigUInt64LE(at),
    nameLength: buf.readUInt32LE(at + 8),
    mode: buf.readUInt32LE(at + 12),
    uid: buf.readUInt32LE(at + 16),
    gid: buf.readUInt32LE(at + 20),
    mtime: buf.readBigInt64LE(at + 24),
    size: buf.readBigUInt64LE(at + 32),
    data: buf.readBigUInt64LE(at + 40),
    sha256: Buffer.from(buf.subarray(at + 48, at + 80)),
    reservedZero: buf.subarray(at + 80, at + ENTRY_SIZE).every((x) => x === 0),
  };
}

/** SHA-256 of the metadata bytes [0, data_offset) with the hash field read as zeros. */
export function metadataHash(parts: Iterable<Uint8Array>): Buffer {
  const h = createHash('sha256');
  let pos = 0;
  for (const part of parts) {
    const start = META_HASH_OFFSET - pos;
    if (start < part.length && start + HASH_LENGTH > 0) {
      const copy = Buffer.from(part);
      copy.fill(0, Math.max(0, start), Math.min(part.length, start + HASH_LENGTH));
      h.update(copy);
    } else {
      h.update(part);
    }
    pos += part.length;
  }
  return h.digest();
}

export const roundUpSector = (n: number): number => Math.ceil(n / SECTOR) * SECTOR;
