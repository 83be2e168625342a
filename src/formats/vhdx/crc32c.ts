/**
 * CRC-32C (Castagnoli), the checksum of VHDX headers, region tables and log entries (VHDX spec
 * §2.2.2 "Checksum"): reflected polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF.
 * Computed by the `crc-32` package's crc32c module. A shared util/crc32c may replace this file.
 */
import CRC32C from 'crc-32/crc32c.js';

/** CRC-32C of `data`, as an unsigned 32-bit number. */
export function crc32c(data: Uint8Array): number {
  return CRC32C.buf(data) >>> 0;
}

/**
 * The VHDX checksum of a structure: CRC-32C over `bytes` with the 4 checksum bytes at
 * `checksumOffset` taken as zero. `bytes` is not modified.
 */
export function vhdxChecksum(bytes: Uint8Array, checksumOffset: number): number {
  const copy = bytes.slice();
  copy.fill(0, checksumOffset, checksumOffset + 4);
  return crc32c(copy);
}
