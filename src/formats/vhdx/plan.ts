/**
 * vhdx creation with the layout of qemu-img 7.2 (block/vhdx.c, vhdx_co_create):
 *
 *   0       file identifier: "vhdxfile" + creator (vmimg writes its own name, not QEMU's)
 *   64 KiB  header 1, sequence number N (random 32-bit), random file- and data-write GUIDs,
 *           no log GUID, log at 1 MiB of log_size bytes
 *   128 KiB header 2: the same with sequence number N + 1 (so it is the current one)
 *   192 KiB region table (BAT, metadata; "required" bits clear, as QEMU writes them)
 *   256 KiB the same region table again
 *   1 MiB   log (left zero)
 *   BAT     at ROUND_UP(1 MiB + log_size, 1 MiB), ROUND_UP(entries × 8, 1 MiB) bytes
 *   meta    right after the BAT, 1 MiB: the table, then at +64 KiB the five items
 *   data    from BAT + BAT length + 5 MiB: where a fixed disk's blocks start, and where a
 *           dynamic disk's file ends (a fixed disk's file ends with its last byte; see
 *           fixedDataBytes for the one case where vmimg pads it to a whole block)
 *
 * The BAT is written whole when entries are set (block_state_zero, the default: every payload
 * entry ZERO; or a fixed disk without it: FULLY_PRESENT with the block's offset); a dynamic disk
 * with block_state_zero=off leaves it a hole of zeros (NOT_PRESENT). Sector bitmap entries stay 0.
 */
import type { CreateContext, Layout, PlannedWrite } from '../types.js';
import { randomGuid, BAT_REGION_GUID, FILE_PARAMETERS_GUID, LOGICAL_SECTOR_SIZE_GUID, METADATA_REGION_GUID, PAGE83_DATA_GUID, PHYSICAL_SECTOR_SIZE_GUID, VIRTUAL_DISK_SIZE_GUID, ZERO_GUID, type Guid } from './guid.js';
import { batGeometry, CREATE_SECTOR_SIZE, CREATOR, parseVhdxParams, type BatGeometry, type VhdxCreateParams } from './params.js';
import {
  BAT_ENTRY_SIZE,
  encodeBatEntry,
  encodeFileIdentifier,
  encodeFileParameters,
  encodeHeader,
  encodeMetadataTable,
  encodeRegionTable,
  encodeU32,
  encodeU64,
  FILE_PARAMETERS_SIZE,
  HEADER1_OFFSET,
  HEADER2_OFFSET,
  HEADER_SECTION_END,
  HEADER_SIGNATURE,
  META_FLAG_IS_REQUIRED,
  META_FLAG_IS_VIRTUAL_DISK,
  METADATA_TABLE_SIZE,
  MiB,
  PAGE83_DATA_SIZE,
  PARAMS_LEAVE_BLOCKS_ALLOCATED,
  PAYLOAD_BLOCK_FULLY_PRESENT,
  PAYLOAD_BLOCK_ZERO,
  REGION_TABLE1_OFFSET,
  REGION_TABLE2_OFFSET,
  SECTOR_SIZE_ITEM_SIZE,
  VIRTUAL_DISK_SIZE_SIZE,
} from './structs.js';

/** Gap QEMU leaves between the end of the BAT and the first payload block (metadata + 4 MiB). */
export const DATA_GAP = 5 * MiB;
/** The metadata region's length in new images. */
export const METADATA_REGION_LENGTH = 1 * MiB;

/** The random parts of a new image, drawn in QEMU's order. */
export interface VhdxRandomness {
  /** Header 1's sequence number (g_random_int: 32 bits); header 2 has this + 1. */
  sequenceNumber: bigint;
  fileWriteGuid: Guid;
  dataWriteGuid: Guid;
  page83: Guid;
}

export function drawRandomness(random: (n: number) => Uint8Array): VhdxRandomness {
  const seq = random(4);
  const sequenceNumber = BigInt(new DataView(seq.buffer, seq.byteOffset, 4).getUint32(0, true));
  return { sequenceNumber, fileWriteGuid: randomGuid(random), dataWriteGuid: randomGuid(random), page83: randomGuid(random) };
}

/** Where the regions of a new image go. */
export interface VhdxLayoutPlan {
  geometry: BatGeometry;
  batOffset: number;
  batLength: number;
  metadataOffset: number;
  dataOffset: number;
  fileLength: number;
}

export function layoutFor(p: VhdxCreateParams): VhdxLayoutPlan {
  const geometry = batGeometry(p.size, p.blockSize, CREATE_SECTOR_SIZE);
  const roundMiB = (n: number) => Math.ceil(n / MiB) * MiB;
  const batOffset = roundMiB(HEADER_SECTION_END + p.logSize);
  const batLength = roundMiB(geometry.batEntries * BAT_ENTRY_SIZE);
  const metadataOffset = roundMiB(batOffset + batLength);
  const dataOffset = batOffset + batLength + DATA_GAP;
  const fileLength = p.subformat === 'fixed' ? dataOffset + Number(fixedDataBytes(p, geometry)) : dataOffset;
  return { geometry, batOffset, batLength, metadataOffset, dataOffset, fileLength };
}

/**
 * Bytes of payload a fixed disk's file holds after the data offset. qemu-img makes the file end
 * right after the disk's last byte, so the last block may be short. QEMU's open-time BAT check
 * measures "the rest of the disk" from the BAT index, which counts sector bitmap entries too;
 * once a disk has more blocks than the chunk ratio (2^32 bytes of blocks), a short last block
 * then looks truncated and qemu-img 7.2 refuses its own image ("points after end of file"). That
 * happens only when the BAT records offsets (block_state_zero=off); vmimg then extends the file to
 * whole blocks, which the spec asks for anyway (the file grows in block units).
 */
export function fixedDataBytes(p: VhdxCreateParams, g: BatGeometry): bigint {
  const shortTail = p.size % BigInt(p.blockSize) !== 0n;
  if (!p.blockStateZero && shortTail && g.dataBlocks > g.chunkRatio) return BigInt(g.dataBlocks) * BigInt(p.blockSize);
  return p.size;
}

/** Entries per BAT write: a whole number of chunk periods, about 1 MiB. */
function entriesPerWrite(g: BatGeometry): number {
  const period = g.chunkRatio + 1;
  return period * Math.max(1, Math.floor(MiB / BAT_ENTRY_SIZE / period));
}

/**
 * The BAT writes. Entry i is a payload entry unless i % (chunkRatio + 1) == chunkRatio; payload
 * entry i describes block i − ⌊i / (chunkRatio + 1)⌋. Writes are cut at period boundaries, so
 * for ZERO entries every full write below the last block has the same bytes and shares a buffer.
 */
export function batWrites(p: VhdxCreateParams, l: VhdxLayoutPlan): PlannedWrite[] {
  if (p.subformat === 'dynamic' && !p.blockStateZero) return [];
  const g = l.geometry;
  const period = g.chunkRatio + 1;
  const state = p.blockStateZero ? PAYLOAD_BLOCK_ZERO : PAYLOAD_BLOCK_FULLY_PRESENT;
  const totalEntries = l.batLength / BAT_ENTRY_SIZE;
  const lastPayloadIndex = g.dataBlocks === 0 ? -1 : g.dataBlocks - 1 + Math.floor((g.dataBlocks - 1) / g.chunkRatio);
  const perWrite = entriesPerWrite(g);
  const writes: PlannedWrite[] = [];
  let sharedFull: Uint8Array | undefined;
  let sharedEmpty: Uint8Array | undefined;
  for (let first = 0; first < totalEntries; first += perWrite) {
    const n = Math.min(perWrite, totalEntries - first);
    const offset = l.batOffset + first * BAT_ENTRY_SIZE;
    if (first > lastPayloadIndex) {
      if (!sharedEmpty || sharedEmpty.length !== n * BAT_ENTRY_SIZE) sharedEmpty = new Uint8Array(n * BAT_ENTRY_SIZE);
      writes.push({ offset, data: sharedEmpty });
      continue;
    }
    const uniform = state === PAYLOAD_BLOCK_ZERO && n === perWrite && first + n - 1 <= lastPayloadIndex;
    if (uniform && sharedFull) {
      writes.push({ offset, data: sharedFull });
      continue;
    }
    const data = new Uint8Array(n * BAT_ENTRY_SIZE);
    const v = new DataView(data.buffer);
    for (let k = 0; k < n; k++) {
      const i = first + k;
      if (i > lastPayloadIndex || i % period === g.chunkRatio) continue;
      const block = i - Math.floor(i / period);
      const fileOffset = state === PAYLOAD_BLOCK_ZERO ? 0n : BigInt(l.dataOffset) + BigInt(block) * BigInt(p.blockSize);
      v.setBigUint64(k * BAT_ENTRY_SIZE, encodeBatEntry(state, fileOffset), true);
    }
    if (uniform) sharedFull = data;
    writes.push({ offset, data });
  }
  return writes;
}

/** The metadata table and the five items qemu-img writes, as two writes. */
export function metadataWrites(p: VhdxCreateParams, l: VhdxLayoutPlan, page83: Guid): PlannedWrite[] {
  const itemsAt = METADATA_TABLE_SIZE;
  const required = META_FLAG_IS_REQUIRED;
  const virtualDisk = META_FLAG_IS_REQUIRED | META_FLAG_IS_VIRTUAL_DISK;
  const items: Array<{ id: Guid; flags: number; data: Uint8Array }> = [
    { id: FILE_PARAMETERS_GUID, flags: required, data: encodeFileParameters({ blockSize: p.blockSize, flags: p.subformat === 'fixed' ? PARAMS_LEAVE_BLOCKS_ALLOCATED : 0 }) },
    { id: VIRTUAL_DISK_SIZE_GUID, flags: virtualDisk, data: encodeU64(p.size) },
    { id: PAGE83_DATA_GUID, flags: virtualDisk, data: page83 },
    { id: LOGICAL_SECTOR_SIZE_GUID, flags: virtualDisk, data: encodeU32(CREATE_SECTOR_SIZE) },
    { id: PHYSICAL_SECTOR_SIZE_GUID, flags: virtualDisk, data: encodeU32(CREATE_SECTOR_SIZE) },
  ];
  const sizes = [FILE_PARAMETERS_SIZE, VIRTUAL_DISK_SIZE_SIZE, PAGE83_DATA_SIZE, SECTOR_SIZE_ITEM_SIZE, SECTOR_SIZE_ITEM_SIZE];
  let at = itemsAt;
  const entries = items.map((item, i) => {
    const entry = { itemId: item.id, offset: at, length: sizes[i]!, flags: item.flags };
    at += sizes[i]!;
    return entry;
  });
  const blob = new Uint8Array(at - itemsAt);
  let pos = 0;
  for (const item of items) {
    blob.set(item.data, pos);
    pos += item.data.length;
  }
  return [
    { offset: l.metadataOffset, data: encodeMetadataTable(entries) },
    { offset: l.metadataOffset + itemsAt, data: blob },
  ];
}

export function planVhdx(p: VhdxCreateParams, r: VhdxRandomness): Layout {
  const l = layoutFor(p);
  const header = (seq: bigint) =>
    encodeHeader({
      signature: HEADER_SIGNATURE,
      checksum: 0,
      sequenceNumber: seq,
      fileWriteGuid: r.fileWriteGuid,
      dataWriteGuid: r.dataWriteGuid,
      logGuid: ZERO_GUID,
      logVersion: 0,
      version: 1,
      logLength: p.logSize,
      logOffset: BigInt(HEADER_SECTION_END),
    });
  const regionTable = encodeRegionTable([
    { guid: BAT_REGION_GUID, fileOffset: BigInt(l.batOffset), length: l.batLength, flags: 0 },
    { guid: METADATA_REGION_GUID, fileOffset: BigInt(l.metadataOffset), length: METADATA_REGION_LENGTH, flags: 0 },
  ]);
  const writes: PlannedWrite[] = [
    { offset: 0, data: encodeFileIdentifier(CREATOR) },
    { offset: HEADER1_OFFSET, data: header(r.sequenceNumber) },
    { offset: HEADER2_OFFSET, data: header(r.sequenceNumber + 1n) },
    { offset: REGION_TABLE1_OFFSET, data: regionTable },
    { offset: REGION_TABLE2_OFFSET, data: regionTable },
    ...batWrites(p, l),
    ...metadataWrites(p, l, r.page83),
  ];
  return {
    length: l.fileLength,
    writes,
    allocate: [],
    summary: { virtualSize: p.size, clusterSize: p.blockSize, subformat: p.subformat },
  };
}

export function planVhdxCreate(ctx: CreateContext): Layout {
  const params = parseVhdxParams(ctx);
  return planVhdx(params, drawRandomness(ctx.random));
}
