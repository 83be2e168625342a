/**
 * Reading a VHD's header facts from untrusted bytes, with the checks and the size derivation of
 * qemu-img 7.2's vpc_open (block/vpc.c), in its order:
 *
 *  1. The footer: the copy at offset 0 when it starts with "conectix" (the image is then treated
 *     as dynamic, whatever its type field says), else the footer in the last 512 bytes, which
 *     must be a fixed disk's.
 *  2. Its checksum (7.2 refuses a wrong one: "Incorrect header checksum").
 *  3. The virtual size: cylinders × heads × sectors, unless the creator application is one QEMU
 *     knows to record the real size in the footer ('win ', 'qem2', 'd2v ', 'CTXS', 'tap\0'), or
 *     the geometry is the maximum one, in which case current_size (rounded down to a sector).
 *     QEMU 7.2 does not know Azure's 'wa\0\0', so such images are sized by CHS (QEMU 10 changed
 *     this). At most 2040 GiB.
 *  4. Dynamic disks: the dynamic header's cookie, block size, table size, and that the BAT and
 *     every block it points to end inside the file (when opened for `check`, only the BAT: the
 *     blocks are the check's to report).
 *
 * Codes: values past QEMU's limits ("too large") are UNSUPPORTED_IMAGE; everything else that
 * makes QEMU refuse the file is CORRUPT_IMAGE.
 */
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import { SECTOR_SIZE } from '../../util/units.js';
import {
  decodeDynamicHeader,
  decodeFooter,
  DISK_TYPE_FIXED,
  DYN_HEADER_COOKIE,
  DYN_HEADER_SIZE,
  FOOTER_COOKIE,
  FOOTER_SIZE,
  footerChecksumValid,
  type VhdDynamicHeader,
  type VhdFooter,
} from './footer.js';
import { MAX_GEOMETRY_SECTORS, VHD_MAX_SECTORS } from './geometry.js';

/** Largest offset+length QEMU's block layer accepts for a request (BDRV_MAX_LENGTH). */
const BDRV_MAX_LENGTH = (1n << 63n) - (1n << 30n);
const INT_MAX = 0x7fff_ffff;
/** Bytes of BAT read at a time. */
const BAT_CHUNK = 1 << 20;

/** Creator applications whose footer current_size QEMU 7.2 trusts over the CHS geometry. */
export const CURRENT_SIZE_CREATORS: readonly string[] = ['win ', 'qem2', 'd2v ', 'CTXS', 'tap\0'];

export interface VpcFacts {
  footer: VhdFooter;
  /** True when the footer came from the end of the file (fixed disk). */
  fixed: boolean;
  /** Virtual size in bytes, as qemu-img 7.2 reports it. */
  virtualSize: bigint;
  /** Dynamic disks only. */
  dynamicHeader?: VhdDynamicHeader;
  /** The file length as QEMU sees it (rounded up to whole sectors). */
  fileLength: number;
}

export interface ReadVpcOptions {
  /**
   * Opened for `check`: BAT entries whose blocks end past the end of the file are left for the
   * check to report instead of refusing the open. The BAT itself must still lie in the file.
   */
  check?: boolean;
}

function corrupt(name: string, message: string, details: Record<string, unknown> = {}): VmimgError {
  return new VmimgError('CORRUPT_IMAGE', `vpc image '${name}': ${message}`, { file: name, ...details });
}

function unsupported(name: string, message: string, details: Record<string, unknown> = {}): VmimgError {
  return new VmimgError('UNSUPPORTED_IMAGE', `vpc image '${name}': ${message}`, { file: name, ...details });
}

/** Whether QEMU 7.2 sizes an image with this footer by CHS rather than by current_size. */
export function usesChsSize(creatorApp: string): boolean {
  return !CURRENT_SIZE_CREATORS.includes(creatorApp);
}

/** The virtual size in sectors qemu-img 7.2 derives from a footer. */
export function virtualSectorsOf(footer: VhdFooter): bigint {
  const chs = BigInt(footer.cylinders) * BigInt(footer.heads) * BigInt(footer.sectorsPerTrack);
  if (!usesChsSize(footer.creatorApp) || chs === BigInt(MAX_GEOMETRY_SECTORS)) return footer.currentSize / BigInt(SECTOR_SIZE);
  return chs;
}

/**
 * Bytes of the sector bitmap in front of every data block (spec "Block Allocation Table and Data
 * Blocks": one bit per sector, padded to a sector boundary).
 */
export function sectorBitmapSize(blockSize: number): number {
  return ((blockSize / (8 * SECTOR_SIZE) + 511) & ~511) >>> 0;
}

function isPowerOfTwo32(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

export async function readVpcFacts(storage: Storage, options: ReadVpcOptions = {}): Promise<VpcFacts> {
  const name = storage.name;
  // QEMU 7.2 sees file lengths in whole sectors (bdrv_getlength rounds up), so a footer "at the
  // end" of a file whose length is not a multiple of 512 is read from the rounded-up end.
  const fileLength = Math.ceil((await storage.size()) / SECTOR_SIZE) * SECTOR_SIZE;
  let footerBytes = await storage.read(0, FOOTER_SIZE);
  let fixed = false;
  if (decodeFooter(footerBytes).cookie !== FOOTER_COOKIE) {
    if (fileLength < FOOTER_SIZE) throw corrupt(name, 'File too small for a VHD header', { length: fileLength });
    footerBytes = await storage.read(fileLength - FOOTER_SIZE, FOOTER_SIZE);
    const atEnd = decodeFooter(footerBytes);
    if (atEnd.cookie !== FOOTER_COOKIE || atEnd.diskType !== DISK_TYPE_FIXED) throw corrupt(name, 'invalid VPC image');
    fixed = true;
  }
  if (!footerChecksumValid(footerBytes)) throw corrupt(name, 'Incorrect header checksum');
  const footer = decodeFooter(footerBytes);

  const sectors = virtualSectorsOf(footer);
  if (sectors > BigInt(VHD_MAX_SECTORS)) {
    throw unsupported(name, `virtual size of ${sectors} sectors exceeds the VHD maximum of 2040 GiB: File too large`, { sectors: sectors.toString() });
  }
  const virtualSize = sectors * BigInt(SECTOR_SIZE);
  if (fixed) return { footer, fixed, virtualSize, fileLength };

  if (footer.dataOffset + BigInt(DYN_HEADER_SIZE) > BDRV_MAX_LENGTH) {
    throw corrupt(name, 'Error reading dynamic VHD header', { dataOffset: footer.dataOffset.toString() });
  }
  // Past the end of the file (or past what a JS number addresses) QEMU reads zeros.
  const dynBytes =
    footer.dataOffset + BigInt(DYN_HEADER_SIZE) <= BigInt(Number.MAX_SAFE_INTEGER)
      ? await storage.read(Number(footer.dataOffset), DYN_HEADER_SIZE)
      : new Uint8Array(DYN_HEADER_SIZE);
  const dyn = decodeDynamicHeader(dynBytes);
  if (dyn.cookie !== DYN_HEADER_COOKIE) throw corrupt(name, 'Invalid header magic');
  if (!isPowerOfTwo32(dyn.blockSize) || dyn.blockSize < SECTOR_SIZE) {
    throw corrupt(name, `Invalid block size ${dyn.blockSize}`, { blockSize: dyn.blockSize });
  }
  const blockSize = BigInt(dyn.blockSize);
  if (virtualSize / blockSize > 0xffff_ffffn) throw corrupt(name, 'Too many blocks');
  // QEMU holds max_table_entries in an int: values ≥ 2^31 are negative, pass the size check
  // below (the product wraps to a huge number) and then fail the "too large" check.
  const entriesSigned = dyn.maxTableEntries | 0;
  if (entriesSigned >= 0 && BigInt(entriesSigned) * blockSize < virtualSize) throw corrupt(name, 'Page table too small');
  if (entriesSigned < 0 || entriesSigned > Math.floor(INT_MAX / 4)) {
    throw unsupported(name, `Max Table Entries too large (${entriesSigned})`, { maxTableEntries: entriesSigned });
  }

  const batBytes = entriesSigned * 4;
  if (dyn.tableOffset + BigInt(batBytes) > BDRV_MAX_LENGTH) {
    throw corrupt(name, 'Error reading pagetable', { tableOffset: dyn.tableOffset.toString() });
  }
  const truncated = () =>
    corrupt(name, 'block-vpc: free_data_block_offset points after the end of file. The image has been truncated.', { length: fileLength });
  const batEnd = dyn.tableOffset + BigInt(batBytes);
  if (((batEnd + 511n) & ~511n) > BigInt(fileLength)) throw truncated();
  if (options.check) return { footer, fixed, virtualSize, dynamicHeader: dyn, fileLength };
  // The BAT lies inside the file now, so its size is bounded by the file's.
  const bitmapBytes = sectorBitmapSize(dyn.blockSize);
  const tableOffset = Number(dyn.tableOffset);
  for (let done = 0; done < batBytes; done += BAT_CHUNK) {
    const n = Math.min(BAT_CHUNK, batBytes - done);
    const chunk = await storage.read(tableOffset + done, n);
    const v = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    for (let i = 0; i < n; i += 4) {
      const entry = v.getUint32(i);
      if (entry === 0xffff_ffff) continue;
      if (entry * SECTOR_SIZE + bitmapBytes + dyn.blockSize > fileLength) throw truncated();
    }
  }
  return { footer, fixed, virtualSize, dynamicHeader: dyn, fileLength };
}
