/**
 * Reading the facts of an existing vmdk from untrusted bytes, with the checks QEMU 7.2's
 * vmdk_open applies, in its order and with its messages, so vmimg opens exactly the images
 * qemu-img opens. Three shapes (block/vmdk.c):
 *
 * - a sparse extent ("KDMV"): header (or, when gdOffset is GD_AT_END, the footer's copy),
 *   virtual size = capacity; a header with capacity 0 and a descriptor offset is read as a
 *   descriptor file instead (so a zero-sized monolithicSparse image does not open);
 * - a COWD extent (ESX vmfsSparse);
 * - a text descriptor file: size = sum of its RW extents' sectors as the descriptor states
 *   them. Extent files are never opened here (QEMU opens them, and for sparse extents takes
 *   their size from their own headers; see docs/formats/vmdk.md).
 *
 * CID, parentCID and parentFileNameHint are read from the 10 KiB at byte 0x200 (sparse/COWD,
 * whatever descriptorOffset says) or 0 (descriptor file), as QEMU reads them.
 */
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import {
  BDRV_MAX_LENGTH,
  DESC_SIZE,
  DESCRIPTOR_FILE_CREATE_TYPES,
  FLAG_RGD,
  GD_AT_END,
  COMPRESSION_DEFLATE,
  MAX_DESCRIPTOR_READ,
  MAX_GRAIN_SECTORS,
  MAX_GTES_PER_GT,
  MAX_L1_ENTRIES,
  SPARSE_DESC_BYTE_OFFSET,
  VMDK3_HEADER_BYTES,
  VMDK3_MAGIC,
  VMDK4_HEADER_BYTES,
  VMDK4_MAGIC,
} from './constants.js';
import { parseExtentLines, readCid, readCreateType, readParentHint, type ExtentLine } from './descriptor.js';
import { decodeCowdHeader, decodeSparseHeader, decodeStreamFooter, FOOTER_BYTES, magicOf, type CowdHeader, type SparseHeader } from './header.js';

const U64 = (1n << 64n) - 1n;

export interface VmdkFacts {
  kind: 'sparse' | 'cowd' | 'descriptor';
  /** createType as QEMU reports it (undefined for a bare COWD extent). */
  createType?: string;
  /** Virtual size in bytes. */
  virtualSize: bigint;
  cid: number;
  parentCid: number;
  parentFileNameHint?: string;
  /** Sparse: the effective header (the footer's copy when the header says GD_AT_END). */
  sparse?: SparseHeader;
  cowd?: CowdHeader;
  /** Descriptor files: the extents QEMU would open. */
  extents?: ExtentLine[];
}

function corrupt(message: string, details: Record<string, unknown> = {}): VmimgError {
  return new VmimgError('CORRUPT_IMAGE', message, details);
}

/** Reads `length` bytes at a byte offset that may lie past the end (zeros there, as QEMU's file driver). */
async function readAt(storage: Storage, fileLength: number, offset: bigint, length: number): Promise<Uint8Array> {
  if (offset >= BigInt(fileLength) || length === 0) return new Uint8Array(length);
  return storage.read(Number(offset), length);
}

/** QEMU's request bound check for a table read of `bytes` at `offset` (signed 64-bit). */
function checkTableRange(offset: bigint, bytes: bigint, what: string, name: string): void {
  if (offset < 0n || offset > BDRV_MAX_LENGTH || bytes > BDRV_MAX_LENGTH - offset) {
    throw corrupt(`Could not read ${what} from extent '${name}': offset ${offset} is out of range`, { offset: offset.toString() });
  }
}

/** Reads and validates a vmdk's header facts (see the module comment). */
export async function readVmdkFacts(storage: Storage): Promise<VmdkFacts> {
  const length = await storage.size();
  if (length < 4) throw corrupt('File is too small, not a valid image', { length });
  const first = await storage.read(0, Math.min(length, 512));
  const magic = magicOf(first);

  let facts: Omit<VmdkFacts, 'cid' | 'parentCid' | 'parentFileNameHint'>;
  let descOffset = SPARSE_DESC_BYTE_OFFSET;
  if (magic === VMDK4_MAGIC) {
    const header = decodeSparseHeader(await readAt(storage, length, 0n, VMDK4_HEADER_BYTES));
    if (header.capacity === 0n && header.descriptorOffset !== 0n) {
      const at = (header.descriptorOffset << 9n) & U64;
      if (at > BDRV_MAX_LENGTH) throw corrupt(`Could not read from file: descriptor offset ${at} is out of range`, { offset: at.toString() });
      facts = parseDescriptorFile(await readAt(storage, length, at, Math.min(length, MAX_DESCRIPTOR_READ)));
    } else {
      facts = await readSparse(storage, length, header);
    }
  } else if (magic === VMDK3_MAGIC) {
    facts = readCowd(decodeCowdHeader(await readAt(storage, length, 0n, VMDK3_HEADER_BYTES)), storage.name);
  } else {
    facts = parseDescriptorFile(await readAt(storage, length, 0n, Math.min(length, MAX_DESCRIPTOR_READ)));
    descOffset = 0;
  }

  const area = await readAt(storage, length, BigInt(descOffset), DESC_SIZE);
  const hint = readParentHint(area);
  if (!hint.ok) throw corrupt(`Invalid vmdk descriptor: ${hint.reason}`);
  const cid = readCid(area, 'CID');
  if (cid === undefined) throw corrupt(`Invalid vmdk descriptor at byte ${descOffset}: no hexadecimal CID`);
  const parentCid = readCid(area, 'parentCID');
  if (parentCid === undefined) throw corrupt(`Invalid vmdk descriptor at byte ${descOffset}: no hexadecimal parentCID`);
  if (facts.virtualSize > BDRV_MAX_LENGTH) {
    throw corrupt(`vmdk virtual size ${facts.virtualSize} is past ${BDRV_MAX_LENGTH}: Could not refresh total sector count: File too large`, {
      virtualSize: facts.virtualSize.toString(),
    });
  }
  const out: VmdkFacts = { ...facts, cid, parentCid };
  if (hint.name !== undefined) out.parentFileNameHint = hint.name;
  return out;
}

/**
 * The grain directory's shape as QEMU 7.2 computes it for a VMDK4 header: sectors per GD entry
 * (GTEs per GT × grain, multiplied into a uint32) and GD entries (capacity rounded up, divided
 * in uint64, stored into a uint32). l1EntrySectors 0 means the header is invalid.
 */
export function sparseTableSizes(h: SparseHeader): { l1EntrySectors: bigint; l1Size: bigint } {
  const l1EntrySectors = (BigInt(h.numGTEsPerGT) * h.grainSize) & 0xffffffffn;
  if (l1EntrySectors === 0n) return { l1EntrySectors, l1Size: 0n };
  return { l1EntrySectors, l1Size: (((h.capacity + l1EntrySectors - 1n) & U64) / l1EntrySectors) & 0xffffffffn };
}

/**
 * vmdk_open_vmdk4 from the header onwards (`length`: the file's length in bytes). Exported for
 * the SPARSE extents of descriptor files, which QEMU opens with the same checks.
 */
export async function readSparse(storage: Storage, length: number, primary: SparseHeader): Promise<Omit<VmdkFacts, 'cid' | 'parentCid'>> {
  let h = primary;
  if (primary.gdOffset === GD_AT_END) {
    const at = Math.ceil(length / 512) * 512 - FOOTER_BYTES;
    if (at < 0) throw corrupt(`Failed to read footer: the file is ${length} bytes, shorter than a footer`, { length });
    const footer = decodeStreamFooter(await storage.read(at, FOOTER_BYTES));
    if (!footer.valid) throw corrupt('Invalid footer');
    h = footer.header;
  }
  if (h.version > 3) {
    throw new VmimgError('UNSUPPORTED_IMAGE', `Unsupported VMDK version ${h.version}`, { version: h.version });
  }
  if (h.numGTEsPerGT > MAX_GTES_PER_GT) throw corrupt('L2 table size too big', { numGTEsPerGT: h.numGTEsPerGT });
  const { l1EntrySectors, l1Size } = sparseTableSizes(h);
  if (l1EntrySectors === 0n) throw corrupt('L1 entry size is invalid', { numGTEsPerGT: h.numGTEsPerGT, grainSize: h.grainSize.toString() });
  const fileSectors = BigInt(Math.ceil(length / 512));
  if (fileSectors < h.overhead) {
    throw corrupt(`File truncated, expecting at least ${BigInt.asIntN(64, h.overhead * 512n)} bytes`, { length, overhead: h.overhead.toString() });
  }
  if (h.grainSize > BigInt(MAX_GRAIN_SECTORS)) throw corrupt('Invalid granularity, image may be corrupt', { grainSize: h.grainSize.toString() });
  if (l1Size > BigInt(MAX_L1_ENTRIES)) throw corrupt('L1 size too big', { l1Size: l1Size.toString() });
  const tableBytes = l1Size * 4n;
  checkTableRange(BigInt.asIntN(64, h.gdOffset << 9n), tableBytes, 'l1 table', storage.name);
  const backup = h.flags & FLAG_RGD ? BigInt.asIntN(64, h.rgdOffset << 9n) : 0n;
  if (backup !== 0n) checkTableRange(backup, tableBytes, 'l1 backup table', storage.name);
  return {
    kind: 'sparse',
    createType: h.compressAlgorithm === COMPRESSION_DEFLATE ? 'streamOptimized' : 'monolithicSparse',
    virtualSize: h.capacity * 512n,
    sparse: h,
  };
}

/** vmdk_open_vmfs_sparse (also for VMFSSPARSE/SPARSE extents of descriptor files). */
export function readCowd(h: CowdHeader, name: string): Omit<VmdkFacts, 'cid' | 'parentCid'> {
  if (h.granularity > MAX_GRAIN_SECTORS) throw corrupt('Invalid granularity, image may be corrupt', { granularity: h.granularity });
  if (h.l1dirSize > MAX_L1_ENTRIES) throw corrupt('L1 size too big', { l1Size: h.l1dirSize });
  checkTableRange(BigInt(h.l1dirOffset) << 9n, BigInt(h.l1dirSize) * 4n, 'l1 table', name);
  return { kind: 'cowd', virtualSize: BigInt(h.diskSectors) * 512n, cowd: h };
}

/**
 * vmdk_open_desc_file on descriptor text (the first ≤ 1 MiB − 1 bytes; a C string): createType
 * must be one QEMU accepts in a descriptor file, and the extent lines must parse.
 */
export function parseDescriptorFile(text: Uint8Array): Omit<VmdkFacts, 'cid' | 'parentCid'> {
  const createType = readCreateType(text);
  if (createType === undefined) throw corrupt('invalid VMDK image descriptor (no createType="…")');
  if (!(DESCRIPTOR_FILE_CREATE_TYPES as readonly string[]).includes(createType)) {
    throw new VmimgError('UNSUPPORTED_IMAGE', `Unsupported image type '${createType}'`, { createType });
  }
  const extents = parseExtentLines(text);
  if (extents.length === 0) throw corrupt(`vmdk descriptor (createType '${createType}') has no usable extent lines`, { createType });
  let sectors = 0n;
  for (const e of extents) sectors += e.sectors;
  return { kind: 'descriptor', createType, virtualSize: sectors * 512n, extents };
}
