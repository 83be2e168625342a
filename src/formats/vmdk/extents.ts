/**
 * The extents of an opened vmdk, in guest order, as QEMU 7.2's vmdk_open builds them
 * (block/vmdk.c vmdk_open_sparse / vmdk_parse_extents / vmdk_add_extent):
 *
 * - a sparse file (KDMV or COWD) is one sparse extent: the file itself, size = its capacity;
 * - a descriptor file has one extent per usable extent line (descriptor.ts reads them with
 *   QEMU's rules). FLAT and VMFS extents are byte ranges of another file starting at the line's
 *   sector offset, sized by the line. SPARSE and VMFSSPARSE extents are sparse files (KDMV or
 *   COWD, with the same header checks as a top-level file) sized by *their own* header, as QEMU
 *   sizes them — the line's size is ignored. SESPARSE extents are refused (UNSUPPORTED_IMAGE).
 *
 * Extent files are opened only through OpenOptions.openReference (the chain Policy). A sparse
 * extent is opened when the image is (its header gives the disk size and its tables answer
 * map); a flat extent only when its bytes or allocation are needed. A sparse extent the policy
 * denies stays in the list as `denied`, sized by its line: info lists it, map and read raise
 * the policy's REFERENCE_DENIED. A sparse extent that is itself a descriptor (capacity 0 with a
 * descriptor offset — QEMU would parse it as a nested descriptor file) is refused.
 */
import type { Storage } from '../../storage/types.js';
import { isVmimgError, VmimgError } from '../../util/errors.js';
import type { OpenOptions } from '../image.js';
import { COMPRESSION_DEFLATE, FLAG_MARKER, FLAG_RGD, FLAG_ZERO_GRAIN, GD_AT_END, VMDK3_HEADER_BYTES, VMDK3_MAGIC, VMDK4_HEADER_BYTES, VMDK4_MAGIC } from './constants.js';
import type { ExtentLine } from './descriptor.js';
import { decodeCowdHeader, decodeSparseHeader, FOOTER_BYTES, magicOf, type CowdHeader, type SparseHeader } from './header.js';
import { readCowd, readSparse, sparseTableSizes } from './open.js';
import { SparseExtent, type MetadataRegion, type SparseGeometry } from './sparse-extent.js';

interface ExtentBase {
  /** The extent type as QEMU reports it: FLAT, SPARSE, VMFS, VMFSSPARSE; '' for a sparse file's own extent. */
  type: string;
  /** The name the descriptor records (undefined for a sparse file's own extent). */
  name?: string;
  /** The file name QEMU reports: the descriptor's directory prefixed to a relative name. */
  path: string;
  /** First guest sector and size, in sectors. */
  startSector: number;
  sectors: number;
}

export type VmdkExtent =
  | (ExtentBase & { kind: 'sparse'; sparse: SparseExtent; /** True for the image's own file. */ own: boolean })
  /** `flatStart`: byte offset of the extent's first sector in its file (QEMU's int64 `offset << 9`). */
  | (ExtentBase & { kind: 'flat'; flatStart: bigint })
  | (ExtentBase & { kind: 'denied'; reason: VmimgError });

const SAFE_SECTORS = BigInt(Math.floor(Number.MAX_SAFE_INTEGER / 512));

function tooLarge(what: string): VmimgError {
  return new VmimgError('UNSUPPORTED_IMAGE', `${what} is beyond what vmimg can address (2^53 bytes)`, {});
}

/**
 * The table geometry of a validated VMDK4 header (readSparse has accepted it; for a
 * streamOptimized file with GD_AT_END, `h` is the footer's copy) in a file of `fileLength` bytes.
 */
export function vmdk4Geometry(h: SparseHeader, fileLength: number, gdAtEnd: boolean): SparseGeometry {
  if (h.capacity > SAFE_SECTORS) throw tooLarge(`vmdk extent capacity of ${h.capacity} sectors`);
  const { l1EntrySectors, l1Size } = sparseTableSizes(h);
  const metadata: MetadataRegion[] = [{ offset: 0, length: 512, what: 'the header' }];
  const descAt = h.descriptorOffset * 512n;
  const descLength = h.descriptorSize * 512n;
  if (descAt !== 0n && descLength !== 0n && descAt + descLength <= BigInt(Number.MAX_SAFE_INTEGER)) {
    metadata.push({ offset: Number(descAt), length: Number(descLength), what: 'the embedded descriptor' });
  }
  if (gdAtEnd) metadata.push({ offset: Math.ceil(fileLength / 512) * 512 - FOOTER_BYTES, length: FOOTER_BYTES, what: 'the footer' });
  return {
    capacitySectors: Number(h.capacity),
    grainSectors: Number(h.grainSize),
    gtesPerGt: h.numGTEsPerGT,
    l1EntrySectors: Number(l1EntrySectors),
    l1Size: Number(l1Size),
    l1OffsetBytes: Number(BigInt.asIntN(64, h.gdOffset << 9n)),
    rgdOffsetBytes: h.flags & FLAG_RGD ? Number(BigInt.asIntN(64, h.rgdOffset << 9n)) : 0,
    compressed: h.compressAlgorithm === COMPRESSION_DEFLATE,
    hasMarker: (h.flags & FLAG_MARKER) !== 0,
    zeroGrain: (h.flags & FLAG_ZERO_GRAIN) !== 0,
    metadata,
    header: { magic: 'vmdk4', version: h.version, overheadSectors: h.overhead > SAFE_SECTORS ? Number(SAFE_SECTORS) : Number(h.overhead), gdAtEnd },
  };
}

/**
 * The table geometry of a validated COWD header: 4096 GTEs per GT (QEMU's constant). QEMU
 * stores GTEs × granularity in a uint32 and divides by it; where that is 0 QEMU would divide
 * by zero, so vmimg refuses the header.
 */
export function cowdGeometry(h: CowdHeader): SparseGeometry {
  const gtes = 4096;
  const l1EntrySectors = (gtes * h.granularity) % 2 ** 32;
  if (l1EntrySectors === 0) throw new VmimgError('CORRUPT_IMAGE', 'L1 entry size is invalid', { granularity: h.granularity });
  return {
    capacitySectors: h.diskSectors,
    grainSectors: h.granularity,
    gtesPerGt: gtes,
    l1EntrySectors,
    l1Size: h.l1dirSize,
    l1OffsetBytes: h.l1dirOffset * 512,
    rgdOffsetBytes: 0,
    compressed: false,
    hasMarker: false,
    zeroGrain: false,
    metadata: [{ offset: 0, length: 512, what: 'the header' }],
    header: { magic: 'cowd', version: 0, overheadSectors: 0, gdAtEnd: false },
  };
}

/** Opens a sparse file (KDMV or COWD) as one extent's tables, with vmdk_open_sparse's checks. */
export async function openSparseFile(storage: Storage): Promise<SparseExtent> {
  const length = await storage.size();
  if (length < 4) throw new VmimgError('CORRUPT_IMAGE', `File '${storage.name}' is too small, not a valid image`, { length });
  const head = await storage.read(0, Math.max(VMDK4_HEADER_BYTES, VMDK3_HEADER_BYTES));
  const magic = magicOf(head);
  if (magic === VMDK4_MAGIC) {
    const header = decodeSparseHeader(head);
    if (header.capacity === 0n && header.descriptorOffset !== 0n) {
      throw new VmimgError('UNSUPPORTED_IMAGE', `vmdk extent '${storage.name}' is itself a descriptor file (nested descriptors are not supported)`, {});
    }
    const facts = await readSparse(storage, length, header);
    return new SparseExtent(storage, length, vmdk4Geometry(facts.sparse!, length, header.gdOffset === GD_AT_END));
  }
  if (magic === VMDK3_MAGIC) return new SparseExtent(storage, length, cowdGeometry(readCowd(decodeCowdHeader(head), storage.name).cowd!));
  throw new VmimgError('CORRUPT_IMAGE', `Image not in VMDK format: extent '${storage.name}' has neither the KDMV nor the COWD magic`, {});
}

/** QEMU's extent path: the descriptor's directory (its name up to the last '/') + a relative name. */
export function extentPath(descriptorPath: string, name: string): string {
  return name.startsWith('/') ? name : descriptorPath.slice(0, descriptorPath.lastIndexOf('/') + 1) + name;
}

/**
 * The extents of a descriptor file, in order. Sparse extent files opened here are appended to
 * `opened` (the caller closes them, on failure too).
 */
export async function descriptorExtents(lines: readonly ExtentLine[], options: OpenOptions, opened: Storage[]): Promise<VmdkExtent[]> {
  const out: VmdkExtent[] = [];
  let start = 0n;
  for (const line of lines) {
    const base = { type: line.type, name: line.fileName, path: extentPath(options.filename, line.fileName), startSector: Number(start) };
    let extent: VmdkExtent;
    if (line.type === 'FLAT' || line.type === 'VMFS') {
      extent = { ...base, kind: 'flat', sectors: sectorCount(line.sectors), flatStart: BigInt.asIntN(64, (line.flatOffset ?? 0n) << 9n) };
    } else if (line.type === 'SESPARSE') {
      throw new VmimgError('UNSUPPORTED_IMAGE', `vmdk extent '${line.fileName}' is a seSparse extent, which vmimg does not read`, { name: line.fileName });
    } else {
      let storage: Storage;
      try {
        storage = await options.openReference({ kind: 'extent', name: line.fileName });
      } catch (e) {
        if (!isVmimgError(e) || e.code !== 'REFERENCE_DENIED') throw e;
        extent = { ...base, kind: 'denied', sectors: sectorCount(line.sectors), reason: e };
        out.push(extent);
        start += BigInt(extent.sectors);
        continue;
      }
      opened.push(storage);
      const sparse = await openSparseFile(storage);
      extent = { ...base, kind: 'sparse', sectors: sparse.geometry.capacitySectors, sparse, own: false };
    }
    out.push(extent);
    start += BigInt(extent.sectors);
    if (start > SAFE_SECTORS) throw tooLarge(`The vmdk disk (${start} sectors so far)`);
  }
  return out;
}

function sectorCount(sectors: bigint): number {
  if (sectors > SAFE_SECTORS) throw tooLarge(`A vmdk extent of ${sectors} sectors`);
  return Number(sectors);
}
