/**
 * ext4 metadata checksums (Documentation/filesystems/ext4/checksums.rst). ext4's crc32c is the
 * kernel's crc32c_le: reflected Castagnoli polynomial with no initial or final inversion, so a
 * standard CRC-32C (init and xorout 0xFFFFFFFF) is converted with two inversions.
 */
import CRC32C from 'crc-32/crc32c.js';

/** crc32c_le(seed, data) as ext4_chksum computes it. */
export function ext4Crc(seed: number, data: Uint8Array): number {
  return ~CRC32C.buf(data, ~seed) >>> 0;
}

/** n as 4 little-endian bytes, in a scratch buffer that the next call reuses (ext4Crc reads it at once). */
const scratch32 = new Uint8Array(4);
const scratch32View = new DataView(scratch32.buffer);
function le32(n: number): Uint8Array {
  scratch32View.setUint32(0, n >>> 0, true);
  return scratch32;
}

/** The filesystem checksum seed: crc32c(~0, s_uuid) (no metadata_csum_seed feature). */
export function fsSeed(uuid: Uint8Array): number {
  return ext4Crc(0xffffffff, uuid);
}

/** Per-inode seed: crc32c(crc32c(fs seed, le32 ino), le32 generation) (checksums.rst "Inode"). */
export function inodeSeed(fs: number, ino: number, generation: number): number {
  return ext4Crc(ext4Crc(fs, le32(ino)), le32(generation));
}

/** Group descriptor checksum: low 16 bits of crc32c(fs seed, le32 group, descriptor with bg_checksum zeroed). */
export function groupDescCsum(fs: number, group: number, desc: Uint8Array): number {
  const copy = Uint8Array.from(desc);
  copy[0x1e] = 0;
  copy[0x1f] = 0;
  return ext4Crc(ext4Crc(fs, le32(group)), copy) & 0xffff;
}

/** xattr block checksum: crc32c(fs seed, le64 block number, block with h_checksum zeroed). */
export function xattrBlockCsum(fs: number, block: number, data: Uint8Array): number {
  const nr = new Uint8Array(8);
  new DataView(nr.buffer).setBigUint64(0, BigInt(block), true);
  const copy = Uint8Array.from(data);
  copy.fill(0, 0x10, 0x14);
  return ext4Crc(ext4Crc(fs, nr), copy);
}
