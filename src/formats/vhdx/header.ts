/**
 * Reading a VHDX's header facts from untrusted bytes, in the order and with the checks of
 * qemu-img 7.2's vhdx_open (block/vhdx.c, vhdx-log.c), plus a few bounds QEMU leaves out:
 *
 *  1. "vhdxfile" at offset 0.
 *  2. Both headers: a header counts when its CRC-32C, signature and version (1) are right; the
 *     current one is the valid one with the higher sequence number (equal numbers only when the
 *     two are identical). None → "No valid VHDX header found".
 *  3. The log: offset a non-zero multiple of 1 MiB, version 0. A log GUID with a log means the
 *     log may hold writes not yet applied: its active sequence (log.ts) is replayed when the
 *     image is opened for writing and refused otherwise (LOG_REPLAY_REQUIRED), as QEMU does; a
 *     log with no valid entry is ignored.
 *  4. Region table 1 only (QEMU never reads the copy): CRC, signature, at most 2047 entries, no
 *     overlaps (with each other and the log), BAT and metadata present once each, no unknown
 *     required region. vmimg also wants both regions at 1 MiB-aligned offsets ≥ 1 MiB with
 *     non-zero 1 MiB-multiple lengths, as the spec requires.
 *  5. The metadata table: signature, at most 2047 entries, no duplicates, no unknown required
 *     item, all five standard items. vmimg also wants each item inside the metadata region,
 *     past the table, and at least as long as its value.
 *  6. File parameters (no parent: differencing disks are not supported), logical sector size
 *     512, block size a power of two in 1..256 MiB.
 *  7. The BAT region holds every entry the disk needs, and every FULLY_PRESENT payload entry
 *     points inside the file and at no other region (vhdx_check_bat_entries, bat.ts) — unless
 *     the image is opened for `check`, which reports those entries instead (BDRV_O_CHECK).
 *
 * Codes: things QEMU or vmimg do not support (differencing disks, 4K logical sectors, unknown
 * required items, block counts past 2^32) are UNSUPPORTED_IMAGE; the rest is
 * CORRUPT_IMAGE.
 */
import { randomBytes } from 'node:crypto';
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import { vhdxChecksum } from './crc32c.js';
import {
  BAT_REGION_GUID,
  FILE_PARAMETERS_GUID,
  formatGuid,
  guidEquals,
  isZeroGuid,
  randomGuid,
  LOGICAL_SECTOR_SIZE_GUID,
  METADATA_REGION_GUID,
  PAGE83_DATA_GUID,
  PARENT_LOCATOR_GUID,
  PHYSICAL_SECTOR_SIZE_GUID,
  VIRTUAL_DISK_SIZE_GUID,
  type Guid,
} from './guid.js';
import { BatEntryChecker, overlaps, VhdxBat, type Region } from './bat.js';
import { writeHeaderPair } from './header-update.js';
import { checkLog, findActiveLog, replayLog, type LogSequence } from './log.js';
import { batGeometry, type BatGeometry } from './params.js';
import {
  BAT_ENTRY_SIZE,
  BLOCK_SIZE_MAX,
  BLOCK_SIZE_MIN,
  decodeFileParameters,
  decodeHeader,
  decodeMetadataEntry,
  decodeMetadataTableHeader,
  decodeRegionEntry,
  decodeRegionTableHeader,
  decodeU32,
  decodeU64,
  FILE_PARAMETERS_SIZE,
  hasFileSignature,
  HEADER1_OFFSET,
  HEADER2_OFFSET,
  HEADER_SECTION_END,
  HEADER_SIGNATURE,
  HEADER_SIZE,
  META_FLAG_IS_REQUIRED,
  METADATA_ENTRY_SIZE,
  METADATA_HEADER_SIZE,
  METADATA_SIGNATURE,
  METADATA_TABLE_SIZE,
  MiB,
  PAGE83_DATA_SIZE,
  PARAMS_HAS_PARENT,
  REGION_FLAG_REQUIRED,
  REGION_MAX_ENTRIES,
  REGION_SIGNATURE,
  REGION_TABLE1_OFFSET,
  REGION_TABLE_SIZE,
  SECTOR_SIZE_ITEM_SIZE,
  VIRTUAL_DISK_SIZE_SIZE,
  type FileParameters,
  type RegionTableEntry,
  type VhdxHeader,
} from './structs.js';

const U64 = 1n << 64n;

export interface VhdxFacts {
  /** The current header and which one it is (0: at 64 KiB, 1: at 128 KiB). */
  header: VhdxHeader;
  headerIndex: 0 | 1;
  batRegion: RegionTableEntry;
  metadataRegion: RegionTableEntry;
  fileParameters: FileParameters;
  /** The metadata's virtual disk size as stored. */
  virtualDiskSize: bigint;
  logicalSectorSize: number;
  physicalSectorSize: number;
  page83: Guid;
  geometry: BatGeometry;
  /** Virtual size as qemu-img reports it: the stored size rounded down to a logical sector. */
  virtualSize: bigint;
  /** The file length as QEMU sees it (rounded up to whole sectors). */
  fileLength: number;
  /** The log and every region table entry, in the order QEMU registers them. */
  regions: Region[];
  /** A log was replayed into the file when it was opened (QEMU's log_replayed_on_open). */
  logReplayed?: boolean;
}

export interface ReadVhdxOptions {
  /**
   * Opened for `check` (BDRV_O_CHECK): the BAT entries are left for the check to report
   * instead of refusing the open.
   */
  check?: boolean;
  /**
   * The storage is open for writing: a log with entries to apply is replayed into the file
   * (log.ts). Without it such an image is refused (LOG_REPLAY_REQUIRED), as QEMU refuses to
   * open it read-only.
   */
  replay?: boolean;
}

function corrupt(name: string, message: string, details: Record<string, unknown> = {}): VmimgError {
  return new VmimgError('CORRUPT_IMAGE', `vhdx image '${name}': ${message}`, { file: name, ...details });
}

function unsupported(name: string, message: string, details: Record<string, unknown> = {}): VmimgError {
  return new VmimgError('UNSUPPORTED_IMAGE', `vhdx image '${name}': ${message}`, { file: name, ...details });
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

/** Reads `length` bytes at a 64-bit offset; past what a JS number addresses counts as unreadable. */
async function readAt(storage: Storage, offset: bigint, length: number, what: string): Promise<Uint8Array> {
  if (offset + BigInt(length) > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw corrupt(storage.name, `${what} at offset ${offset} is out of range`, { offset: offset.toString() });
  }
  return storage.read(Number(offset), length);
}

/** A header's validity as vhdx_parse_header judges it. */
export function headerIsValid(bytes: Uint8Array): boolean {
  if (bytes.length < HEADER_SIZE) return false;
  const h = decodeHeader(bytes);
  return h.checksum === vhdxChecksum(bytes.subarray(0, HEADER_SIZE), 4) && h.signature === HEADER_SIGNATURE && h.version === 1;
}

/** Picks the current header: 0 or 1, or undefined when there is none (QEMU's rules). */
export function pickHeader(h1: Uint8Array, h2: Uint8Array): 0 | 1 | undefined {
  const v1 = headerIsValid(h1);
  const v2 = headerIsValid(h2);
  if (v1 && !v2) return 0;
  if (!v1 && v2) return 1;
  if (!v1 && !v2) return undefined;
  const s1 = decodeHeader(h1).sequenceNumber;
  const s2 = decodeHeader(h2).sequenceNumber;
  if (s1 > s2) return 0;
  if (s2 > s1) return 1;
  // Disk2VHD writes two identical headers with equal sequence numbers.
  for (let i = 0; i < HEADER_SIZE; i++) if (h1[i] !== h2[i]) return undefined;
  return 0;
}

export async function readVhdxFacts(storage: Storage, options: ReadVhdxOptions = {}): Promise<VhdxFacts> {
  const name = storage.name;
  // QEMU 7.2 sees file lengths in whole sectors (bdrv_getlength rounds up).
  const fileLength = Math.ceil((await storage.size()) / 512) * 512;
  if (!hasFileSignature(await storage.read(0, 8))) throw corrupt(name, "no 'vhdxfile' signature at offset 0");

  const h1 = await storage.read(HEADER1_OFFSET, HEADER_SIZE);
  const h2 = await storage.read(HEADER2_OFFSET, HEADER_SIZE);
  const headerIndex = pickHeader(h1, h2);
  if (headerIndex === undefined) throw corrupt(name, 'No valid VHDX header found');
  const header = decodeHeader(headerIndex === 0 ? h1 : h2);
  const regions: Region[] = [{ start: header.logOffset, end: (header.logOffset + BigInt(header.logLength)) % U64 }];

  if (header.logOffset < BigInt(MiB) || header.logOffset % BigInt(MiB) !== 0n) {
    throw corrupt(name, `log offset ${header.logOffset} is not a non-zero multiple of 1 MiB`, { logOffset: header.logOffset.toString() });
  }
  if (header.logVersion !== 0) throw corrupt(name, `unsupported log version ${header.logVersion}`, { logVersion: header.logVersion });
  if (!isZeroGuid(header.logGuid) && header.logLength !== 0) {
    if (header.logLength % MiB !== 0) throw corrupt(name, `log length ${header.logLength} is not a multiple of 1 MiB`, { logLength: header.logLength });
    const active = await findActiveLog(storage, header);
    if (active) {
      if (!options.replay) {
        throw new VmimgError(
          'LOG_REPLAY_REQUIRED',
          `VHDX image file '${name}' opened read-only, but contains a log that needs to be replayed\nTo replay the log, run:\nvmimg check -r all '${name}'`,
          { file: name, logGuid: formatGuid(header.logGuid), sequence: active.first.sequenceNumber.toString() },
        );
      }
      await replayVhdxLog(storage, header, headerIndex, active, fileLength);
      return { ...(await readVhdxFacts(storage, { ...options, replay: false })), logReplayed: true };
    }
  }

  // Region table 1 (§2.2.3).
  const rt = await storage.read(REGION_TABLE1_OFFSET, REGION_TABLE_SIZE);
  const rtHeader = decodeRegionTableHeader(rt);
  if (rtHeader.checksum !== vhdxChecksum(rt, 4)) throw corrupt(name, 'region table checksum mismatch');
  if (rtHeader.signature !== REGION_SIGNATURE) throw corrupt(name, "region table has no 'regi' signature");
  if (rtHeader.entryCount > REGION_MAX_ENTRIES) throw corrupt(name, `region table has ${rtHeader.entryCount} entries (at most ${REGION_MAX_ENTRIES})`);
  let batRegion: RegionTableEntry | undefined;
  let metadataRegion: RegionTableEntry | undefined;
  for (let i = 0; i < rtHeader.entryCount; i++) {
    const e = decodeRegionEntry(rt, i);
    const clash = overlaps(regions, e.fileOffset, BigInt(e.length));
    if (clash) throw corrupt(name, `region ${formatGuid(e.guid)} at ${e.fileOffset} (+${e.length}) overlaps ${clash.start}..${clash.end}`);
    regions.push({ start: e.fileOffset, end: (e.fileOffset + BigInt(e.length)) % U64 });
    const known = guidEquals(e.guid, BAT_REGION_GUID) ? 'BAT' : guidEquals(e.guid, METADATA_REGION_GUID) ? 'metadata' : undefined;
    if (known === undefined) {
      if (e.flags & REGION_FLAG_REQUIRED) throw unsupported(name, `unknown required region ${formatGuid(e.guid)}`);
      continue;
    }
    if ((known === 'BAT' ? batRegion : metadataRegion) !== undefined) throw corrupt(name, `two ${known} regions`);
    if (e.fileOffset < BigInt(HEADER_SECTION_END) || e.fileOffset % BigInt(MiB) !== 0n || e.length === 0 || e.length % MiB !== 0) {
      throw corrupt(name, `${known} region at ${e.fileOffset} (+${e.length}) is not 1 MiB-aligned past the header section`);
    }
    if (known === 'BAT') batRegion = e;
    else metadataRegion = e;
  }
  if (!batRegion || !metadataRegion) throw corrupt(name, `region table lacks the ${batRegion ? 'metadata' : 'BAT'} region`);

  // Metadata table (§3.5).
  const mt = await readAt(storage, metadataRegion.fileOffset, METADATA_TABLE_SIZE, 'metadata table');
  const mtHeader = decodeMetadataTableHeader(mt);
  if (mtHeader.signature !== METADATA_SIGNATURE) throw corrupt(name, "metadata table has no 'metadata' signature");
  if (mtHeader.entryCount * METADATA_ENTRY_SIZE > METADATA_TABLE_SIZE - METADATA_HEADER_SIZE) {
    throw corrupt(name, `metadata table has ${mtHeader.entryCount} entries (at most 2047)`);
  }
  const wanted: Array<{ id: Guid; label: string; size: number }> = [
    { id: FILE_PARAMETERS_GUID, label: 'file parameters', size: FILE_PARAMETERS_SIZE },
    { id: VIRTUAL_DISK_SIZE_GUID, label: 'virtual disk size', size: VIRTUAL_DISK_SIZE_SIZE },
    { id: PAGE83_DATA_GUID, label: 'page 83 data', size: PAGE83_DATA_SIZE },
    { id: LOGICAL_SECTOR_SIZE_GUID, label: 'logical sector size', size: SECTOR_SIZE_ITEM_SIZE },
    { id: PHYSICAL_SECTOR_SIZE_GUID, label: 'physical sector size', size: SECTOR_SIZE_ITEM_SIZE },
    { id: PARENT_LOCATOR_GUID, label: 'parent locator', size: 0 },
  ];
  const found = new Map<string, number>();
  for (let i = 0; i < mtHeader.entryCount; i++) {
    const e = decodeMetadataEntry(mt, i);
    const item = wanted.find((w) => guidEquals(w.id, e.itemId));
    if (!item) {
      if (e.flags & META_FLAG_IS_REQUIRED) throw unsupported(name, `unknown required metadata item ${formatGuid(e.itemId)}`);
      continue;
    }
    if (found.has(item.label)) throw corrupt(name, `two ${item.label} metadata items`);
    if (item.size > 0 && (e.offset < METADATA_TABLE_SIZE || e.length < item.size || e.offset + e.length > metadataRegion.length)) {
      throw corrupt(name, `${item.label} item at +${e.offset} (${e.length} bytes) is not inside the metadata region`);
    }
    found.set(item.label, e.offset);
  }
  for (const w of wanted.slice(0, 5)) if (!found.has(w.label)) throw unsupported(name, `metadata lacks the ${w.label} item`);
  const item = (label: string, size: number) => readAt(storage, metadataRegion!.fileOffset + BigInt(found.get(label)!), size, `${label} item`);

  const fileParameters = decodeFileParameters(await item('file parameters', FILE_PARAMETERS_SIZE));
  if (fileParameters.flags & PARAMS_HAS_PARENT) {
    if (found.has('parent locator')) throw unsupported(name, 'differencing VHDX images are not supported');
    throw corrupt(name, 'file parameters name a parent but there is no parent locator');
  }
  const virtualDiskSize = decodeU64(await item('virtual disk size', VIRTUAL_DISK_SIZE_SIZE));
  const logicalSectorSize = decodeU32(await item('logical sector size', SECTOR_SIZE_ITEM_SIZE));
  const physicalSectorSize = decodeU32(await item('physical sector size', SECTOR_SIZE_ITEM_SIZE));
  const page83 = await item('page 83 data', PAGE83_DATA_SIZE);
  const blockSize = fileParameters.blockSize;
  if (blockSize < BLOCK_SIZE_MIN || blockSize > BLOCK_SIZE_MAX) throw corrupt(name, `block size ${blockSize} is outside 1 MiB..256 MiB`);
  if (logicalSectorSize !== 512) throw unsupported(name, `logical sector size ${logicalSectorSize} is not supported (only 512)`);
  if (!isPowerOfTwo(blockSize)) throw corrupt(name, `block size ${blockSize} is not a power of two`);
  const exactBlocks = (virtualDiskSize + BigInt(blockSize) - 1n) / BigInt(blockSize);
  if (exactBlocks > 0xffff_ffffn) {
    throw unsupported(name, `virtual disk size ${virtualDiskSize} needs ${exactBlocks} blocks (at most 2^32 − 1)`, { virtualDiskSize: virtualDiskSize.toString() });
  }

  // BAT (§3.4).
  const geometry = batGeometry(virtualDiskSize, blockSize, logicalSectorSize);
  if (geometry.batEntries > Math.floor(batRegion.length / BAT_ENTRY_SIZE)) {
    throw corrupt(name, `the BAT region (${batRegion.length} bytes) is too small for ${geometry.batEntries} entries`);
  }
  const virtualSize = (virtualDiskSize >> 9n) << 9n;
  if (!options.check) await checkBatEntries(storage, fileLength, batRegion, geometry, virtualSize, regions);

  return {
    header,
    headerIndex,
    batRegion,
    metadataRegion,
    fileParameters,
    virtualDiskSize,
    logicalSectorSize,
    physicalSectorSize,
    page83,
    geometry,
    virtualSize,
    fileLength,
    regions,
  };
}

/**
 * vhdx_check_bat_entries as a plain open runs it (bat.ts): the first problem of the first
 * FULLY_PRESENT entry that has one refuses the image. Only the part of the BAT inside the file
 * is read; the rest is NOT_PRESENT.
 */
async function checkBatEntries(storage: Storage, fileLength: number, region: RegionTableEntry, g: BatGeometry, virtualSize: bigint, regions: readonly Region[]): Promise<void> {
  const checker = new BatEntryChecker(g, virtualSize, fileLength, regions);
  let first: string | undefined;
  await new VhdxBat(storage, region.fileOffset, g.batEntries, fileLength).scan((index, entry) => {
    first = checker.problems(index, entry)[0];
    return first === undefined;
  });
  if (first !== undefined) throw corrupt(storage.name, first);
}

/**
 * Replays the active log the way QEMU's vhdx_parse_log + vhdx_log_flush change the file: both
 * headers get a fresh FileWriteGuid and DataWriteGuid (keeping the log GUID), the entries are
 * applied and flushed, then both headers are rewritten with a zero log GUID. A crash part-way
 * leaves the log GUID set, so the next writable open replays again (entries are idempotent).
 */
async function replayVhdxLog(storage: Storage, header: VhdxHeader, index: 0 | 1, active: LogSequence, fileLength: number): Promise<void> {
  const name = storage.name;
  if (header.sequenceNumber >= U64 - 5n) throw corrupt(name, `the header sequence number ${header.sequenceNumber} cannot be advanced to replay the log`);
  await checkLog(storage, header, active, fileLength); // a log that fails a check changes nothing
  const flush = (): Promise<void> => storage.flush();
  const fresh: VhdxHeader = { ...header, fileWriteGuid: randomGuid(randomBytes), dataWriteGuid: randomGuid(randomBytes) };
  const during = await writeHeaderPair(storage, header, index, fresh, flush);
  await replayLog(storage, header, active, fileLength);
  await flush();
  await writeHeaderPair(storage, during, index, { ...during, logGuid: new Uint8Array(16) }, flush);
}
