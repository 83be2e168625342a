/**
 * The vmdk create planner: the file `qemu-img create -f vmdk` (7.2) writes for monolithicSparse
 * and streamOptimized, byte for byte except the random CID (vmdk_init_extent + vmdk_co_do_create):
 *
 *   sector 0            header (KDMV; version 1, 2 with zeroed_grain, 3 for streamOptimized)
 *   sectors 1..20       embedded descriptor (NUL padded)
 *   sector 21           first grain directory  → grain tables right after it
 *   gdOffset            second grain directory → grain tables right after it
 *   overhead (grain 0)  ROUND_UP(end of the second set of grain tables, 128 sectors)
 *
 * Grain tables are 4 sectors (512 entries) of zeros; the file ends at the overhead, so every
 * grain is unallocated. Note the naming: QEMU's header field rgdOffset points at the directory
 * written first, gdOffset at the one written second; readers use gdOffset as primary.
 * qemu-img writes no footer, markers or end-of-stream for a new streamOptimized image.
 */
import { SECTOR_SIZE, type Sectors, sectors } from '../../util/units.js';
import { toSafeNumber } from '../../util/size.js';
import type { Layout, PlannedWrite } from '../types.js';
import {
  COMPRESSION_DEFLATE,
  COMPRESSION_NONE,
  CREATE_DESC_OFFSET,
  CREATE_DESC_SECTORS,
  CREATE_GRAIN_SECTORS,
  CREATE_GTES_PER_GT,
  DESC_SIZE,
  FLAG_COMPRESS,
  FLAG_MARKER,
  FLAG_NL_DETECT,
  FLAG_RGD,
  FLAG_ZERO_GRAIN,
} from './constants.js';
import { formatDescriptor } from './descriptor.js';
import { DEFAULT_CHECK_BYTES, encodeSparseHeader, type SparseHeader } from './header.js';
import type { AdapterType, VmdkCreateParams } from './params.js';
import { VmimgError } from '../../util/errors.js';

/** Sector geometry of a new sparse extent. */
export interface SparseGeometry {
  /** Virtual size in sectors. */
  capacity: bigint;
  grains: number;
  /** Grain tables (one per 512 grains). */
  gtCount: number;
  /** Sectors per grain table (4). */
  gtSectors: number;
  /** Sectors per grain directory (4-byte entries, whole sectors). */
  gdSectors: number;
  rgdOffset: Sectors;
  gdOffset: Sectors;
  /** First grain sector = file length in sectors. */
  grainOffset: Sectors;
}

/** The layout arithmetic of vmdk_init_extent for a size in bytes (a multiple of 512, > 0). */
export function sparseGeometry(sizeBytes: bigint): SparseGeometry {
  const capacity = sizeBytes / BigInt(SECTOR_SIZE);
  const grains = Number((capacity + BigInt(CREATE_GRAIN_SECTORS) - 1n) / BigInt(CREATE_GRAIN_SECTORS));
  const gtSectors = (CREATE_GTES_PER_GT * 4) / SECTOR_SIZE;
  const gtCount = Math.ceil(grains / CREATE_GTES_PER_GT);
  const gdSectors = Math.ceil((gtCount * 4) / SECTOR_SIZE);
  const rgdOffset = CREATE_DESC_OFFSET + CREATE_DESC_SECTORS;
  const gdOffset = rgdOffset + gdSectors + gtSectors * gtCount;
  const grainOffset = Math.ceil((gdOffset + gdSectors + gtSectors * gtCount) / CREATE_GRAIN_SECTORS) * CREATE_GRAIN_SECTORS;
  return { capacity, grains, gtCount, gtSectors, gdSectors, rgdOffset: sectors(rgdOffset), gdOffset: sectors(gdOffset), grainOffset: sectors(grainOffset) };
}

/** Heads QEMU records: 16 for IDE, 255 (VMware's value for SCSI adapters) otherwise. */
export function geometryHeads(adapter: AdapterType): number {
  return adapter === 'ide' ? 16 : 255;
}

/** ddb.geometry.cylinders: size / (63 × heads × 512), truncated, without any 16383 cap. */
export function geometryCylinders(sizeBytes: bigint, heads: number): bigint {
  return sizeBytes / BigInt(63 * heads * SECTOR_SIZE);
}

/** The header vmdk_init_extent writes. */
export function createHeader(p: VmdkCreateParams, g: SparseGeometry): SparseHeader {
  const stream = p.subformat === 'streamOptimized';
  return {
    version: stream ? 3 : p.zeroedGrain ? 2 : 1,
    flags: FLAG_RGD | FLAG_NL_DETECT | (stream ? FLAG_COMPRESS | FLAG_MARKER : 0) | (p.zeroedGrain ? FLAG_ZERO_GRAIN : 0),
    capacity: g.capacity,
    grainSize: BigInt(CREATE_GRAIN_SECTORS),
    descriptorOffset: BigInt(CREATE_DESC_OFFSET),
    descriptorSize: BigInt(CREATE_DESC_SECTORS),
    numGTEsPerGT: CREATE_GTES_PER_GT,
    rgdOffset: BigInt(g.rgdOffset),
    gdOffset: BigInt(g.gdOffset),
    overhead: BigInt(g.grainOffset),
    uncleanShutdown: 0,
    checkBytes: DEFAULT_CHECK_BYTES,
    compressAlgorithm: stream ? COMPRESSION_DEFLATE : COMPRESSION_NONE,
  };
}

/** The embedded descriptor text for `p`. */
export function createDescriptor(p: VmdkCreateParams): Uint8Array {
  const heads = geometryHeads(p.adapterType);
  return formatDescriptor({
    cid: p.cid,
    parentCid: p.backing?.parentCid ?? 0xffffffff,
    createType: p.subformat,
    ...(p.backing ? { parentFileNameHint: p.backing.fileName } : {}),
    extents: [{ sectors: p.size / BigInt(SECTOR_SIZE), type: 'SPARSE', fileName: p.fileName }],
    hwVersion: p.hwVersion,
    cylinders: geometryCylinders(p.size, heads),
    heads,
    adapterType: p.adapterType,
    toolsVersion: p.toolsVersion,
  });
}

/**
 * A grain directory at `at` whose entries point at consecutive grain tables right after it,
 * padded with zeros to whole sectors (QEMU writes the padding too).
 */
function grainDirectory(at: Sectors, g: SparseGeometry): Uint8Array {
  const out = new Uint8Array(g.gdSectors * SECTOR_SIZE);
  const v = new DataView(out.buffer);
  const first = at + g.gdSectors;
  for (let i = 0; i < g.gtCount; i++) v.setUint32(i * 4, first + i * g.gtSectors, true);
  return out;
}

/** Plans the image for validated parameters. */
export function planVmdk(p: VmdkCreateParams): Layout {
  const g = sparseGeometry(p.size);
  const descriptor = createDescriptor(p);
  if (descriptor.length > DESC_SIZE) {
    // qemu-img writes the excess over the grain directory that follows (a corrupt image).
    throw new VmimgError(
      'INVALID_OPTION',
      `vmdk descriptor would be ${descriptor.length} bytes; the embedded descriptor holds ${DESC_SIZE} ` +
        `(hwversion is ${Buffer.byteLength(p.hwVersion)} bytes, toolsversion ${Buffer.byteLength(p.toolsVersion)})`,
      { length: descriptor.length, max: DESC_SIZE },
    );
  }
  const writes: PlannedWrite[] = [
    { offset: 0, data: encodeSparseHeader(createHeader(p, g)) },
    { offset: CREATE_DESC_OFFSET * SECTOR_SIZE, data: descriptor },
    { offset: g.rgdOffset * SECTOR_SIZE, data: grainDirectory(g.rgdOffset, g) },
    { offset: g.gdOffset * SECTOR_SIZE, data: grainDirectory(g.gdOffset, g) },
  ];
  return {
    length: toSafeNumber(BigInt(g.grainOffset) * BigInt(SECTOR_SIZE), 'vmdk file length'),
    writes,
    allocate: [],
    summary: { virtualSize: p.size, clusterSize: CREATE_GRAIN_SECTORS * SECTOR_SIZE, subformat: p.subformat },
  };
}
