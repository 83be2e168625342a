/**
 * The VHDX metadata log (VHDX spec §2.3; qemu-img 7.2's block/vhdx-log.c): finding the active
 * sequence of log entries and replaying it into the file.
 *
 * The log is a circular buffer of 4 KiB sectors at the header's LogOffset, LogLength bytes long.
 * An entry is: one or more descriptor sectors (a 64-byte entry header, then 32-byte descriptors,
 * 126 in the first sector and 128 in each further one), then one data sector per data
 * descriptor. Entry header (§2.3.1.1, little-endian): "loge", CRC-32C of the whole entry with
 * this field zero, EntryLength, Tail, SequenceNumber (u64), DescriptorCount, reserved, LogGuid,
 * FlushedFileOffset, LastFileOffset. Descriptors (§2.3.1.2–3): "zero" (reserved, ZeroLength,
 * FileOffset, SequenceNumber) or "desc" (TrailingBytes = bytes 4092..4095 of the sector,
 * LeadingBytes = bytes 0..7, FileOffset, SequenceNumber). Data sector (§2.3.1.4): "data",
 * SequenceHigh, bytes 8..4091, SequenceLow.
 *
 * The search follows QEMU's vhdx_log_search, the real tool's reading of the spec: from sector 0,
 * every place an entry validates starts a run of following entries; after the first, each must
 * carry the previous entry's sequence number + 1 (QEMU does not check the second against the
 * first, and neither does this). The run whose first entry has the highest sequence number is
 * the active one. An entry validates when its header is right (signature, length a multiple of
 * 4 KiB and at most the log's, sequence number non-zero, the header's log GUID, descriptors fit)
 * and its CRC matches; a descriptor in a validating header that is malformed fails the open
 * (QEMU: EINVAL).
 *
 * Replay (vhdx_log_flush): each entry's FlushedFileOffset must be within the file; its
 * descriptors write their sector (data) or ZeroLength zero bytes at FileOffset; a file shorter
 * than LastFileOffset is extended to it, rounded up to 1 MiB (spec §2.3.1.1; QEMU 7.2 extends
 * only when LastFileOffset is not already 1 MiB-aligned, which leaves such files short).
 * vmimg's own bounds: LastFileOffset at most MAX_LOG_EXTENSION past the end of the file, every
 * write ending within max(file length, LastFileOffset rounded up), none touching the log itself;
 * the whole sequence is checked before anything is written.
 */
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import { vhdxChecksum } from './crc32c.js';
import { guidEquals, type Guid } from './guid.js';
import { MiB, type VhdxHeader } from './structs.js';
import { zeroRange } from '../../storage/zero.js';

export const LOG_SECTOR = 4096;
const ENTRY_HEADER_SIZE = 64;
const DESCRIPTOR_SIZE = 32;
const LOG_SIGNATURE = 0x6567_6f6c; // "loge"
const DESC_SIGNATURE = 0x6373_6564; // "desc"
const ZERO_SIGNATURE = 0x6f72_657a; // "zero"
/**
 * How far past the end of the file an entry's LastFileOffset may reach (vmimg's bound). The
 * difference is data written but not flushed when the entry was written: a few blocks at most.
 */
export const MAX_LOG_EXTENSION = 1024 * MiB;
/** The log is read in windows of this size while it is searched. */
const WINDOW = MiB;

export interface LogEntryHeader {
  checksum: number;
  entryLength: number;
  sequenceNumber: bigint;
  descriptorCount: number;
  logGuid: Guid;
  flushedFileOffset: bigint;
  lastFileOffset: bigint;
}

type Descriptor =
  | { kind: 'zero'; fileOffset: bigint; zeroLength: bigint }
  | { kind: 'data'; fileOffset: bigint; leading: Uint8Array; trailing: Uint8Array };

/** The active sequence: `count` entries from byte `start` of the log up to (not including) `end`. */
export interface LogSequence {
  start: number;
  end: number;
  count: number;
  first: LogEntryHeader;
}

function corrupt(name: string, message: string, details: Record<string, unknown> = {}): VmimgError {
  return new VmimgError('CORRUPT_IMAGE', `vhdx image '${name}': ${message}`, { file: name, ...details });
}

function decodeEntryHeader(b: Uint8Array): LogEntryHeader & { signature: number } {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    signature: v.getUint32(0, true),
    checksum: v.getUint32(4, true),
    entryLength: v.getUint32(8, true),
    sequenceNumber: v.getBigUint64(16, true),
    descriptorCount: v.getUint32(24, true),
    logGuid: b.slice(32, 48) as Guid,
    flushedFileOffset: v.getBigUint64(48, true),
    lastFileOffset: v.getBigUint64(56, true),
  };
}

/** Sectors holding the entry header and `count` descriptors (never 0; vhdx_compute_desc_sectors). */
export function descriptorSectors(count: number): number {
  return Math.ceil((count + 2) / 128);
}

/** Reads the circular log through a window cache; positions are byte indexes into the log. */
class LogReader {
  #windowStart = -1;
  #window: Uint8Array = new Uint8Array(0);

  constructor(
    private readonly storage: Storage,
    readonly offset: number,
    readonly length: number,
  ) {}

  next(i: number): number {
    const n = i + LOG_SECTOR;
    return n >= this.length ? 0 : n;
  }

  async sector(i: number): Promise<Uint8Array> {
    if (i < this.#windowStart || i >= this.#windowStart + this.#window.length) {
      this.#windowStart = i - (i % WINDOW);
      this.#window = await this.storage.read(this.offset + this.#windowStart, Math.min(WINDOW, this.length - this.#windowStart));
    }
    const at = i - this.#windowStart;
    return this.#window.subarray(at, at + LOG_SECTOR);
  }

  /** `n` sectors from `i` on (wrapping), copied into one buffer; returns it and the next position. */
  async sectors(i: number, n: number): Promise<[Uint8Array, number]> {
    const out = new Uint8Array(n * LOG_SECTOR);
    for (let k = 0; k < n; k++, i = this.next(i)) out.set(await this.sector(i), k * LOG_SECTOR);
    return [out, i];
  }
}

function decodeDescriptors(name: string, sectors: Uint8Array, hdr: LogEntryHeader): Descriptor[] {
  const v = new DataView(sectors.buffer, sectors.byteOffset, sectors.byteLength);
  const out: Descriptor[] = [];
  for (let k = 0; k < hdr.descriptorCount; k++) {
    const at = ENTRY_HEADER_SIZE + k * DESCRIPTOR_SIZE;
    const signature = v.getUint32(at, true);
    const fileOffset = v.getBigUint64(at + 16, true);
    const seq = v.getBigUint64(at + 24, true);
    const bad = (why: string): VmimgError =>
      corrupt(name, `log entry ${hdr.sequenceNumber}: descriptor ${k} ${why}`, { sequence: hdr.sequenceNumber.toString(), descriptor: k });
    if (seq !== hdr.sequenceNumber) throw bad(`has sequence number ${seq}`);
    if (fileOffset % BigInt(LOG_SECTOR) !== 0n) throw bad(`has file offset ${fileOffset}, not a multiple of 4 KiB`);
    if (signature === ZERO_SIGNATURE) {
      const zeroLength = v.getBigUint64(at + 8, true);
      if (zeroLength % BigInt(LOG_SECTOR) !== 0n) throw bad(`zeroes ${zeroLength} bytes, not a multiple of 4 KiB`);
      out.push({ kind: 'zero', fileOffset, zeroLength });
    } else if (signature === DESC_SIGNATURE) {
      out.push({ kind: 'data', fileOffset, trailing: sectors.slice(at + 4, at + 8), leading: sectors.slice(at + 8, at + 16) });
    } else {
      throw bad(`has signature 0x${signature.toString(16)} (neither "zero" nor "desc")`);
    }
  }
  return out;
}

interface Validated {
  hdr: LogEntryHeader;
  next: number;
}

/**
 * vhdx_validate_log_entry at position `at`: the entry and where reading continues, or undefined
 * and where the search goes on (one sector further after a bad header, past the entry after a
 * bad checksum). `after`: the previous entry's sequence number, 0n for any.
 */
async function validateEntry(name: string, log: LogReader, logGuid: Guid, at: number, after: bigint): Promise<{ ok?: Validated; next: number }> {
  const first = await log.sector(at);
  const hdr = decodeEntryHeader(first);
  const headerOk =
    hdr.signature === LOG_SIGNATURE &&
    hdr.entryLength <= log.length &&
    hdr.entryLength % LOG_SECTOR === 0 &&
    hdr.sequenceNumber !== 0n &&
    guidEquals(hdr.logGuid, logGuid) &&
    hdr.descriptorCount * DESCRIPTOR_SIZE <= hdr.entryLength &&
    (after === 0n || hdr.sequenceNumber === after + 1n);
  if (!headerOk) return { next: log.next(at) };
  // The checksum covers the descriptor sectors and then the rest of EntryLength (QEMU reads the
  // descriptor sectors even when EntryLength says fewer): one read of the larger count.
  const descSectors = descriptorSectors(hdr.descriptorCount);
  const [whole, next] = await log.sectors(at, Math.max(descSectors, hdr.entryLength / LOG_SECTOR));
  decodeDescriptors(name, whole.subarray(0, descSectors * LOG_SECTOR), hdr); // malformed descriptors fail the open, as in QEMU
  if (vhdxChecksum(whole, 4) !== hdr.checksum) return { next };
  return { ok: { hdr, next }, next };
}

/** vhdx_log_search: the active sequence of the log the header names, or undefined. */
export async function findActiveLog(storage: Storage, header: VhdxHeader): Promise<LogSequence | undefined> {
  const log = new LogReader(storage, Number(header.logOffset), header.logLength);
  let candidate: LogSequence | undefined;
  let read = 0;
  // Each pass consumes at least one sector and the search ends when the position wraps, so the
  // passes are bounded by the sector count; the cap only guards that reasoning.
  const cap = 2 * (log.length / LOG_SECTOR) + 2;
  for (let pass = 0; pass < cap; pass++) {
    const tail = read;
    const head = await validateEntry(storage.name, log, header.logGuid, read, 0n);
    read = head.next;
    if (head.ok) {
      const current: LogSequence = { start: tail, end: read, count: 1, first: head.ok.hdr };
      let seq = 0n;
      for (let k = 0; k < cap; k++) {
        const more = await validateEntry(storage.name, log, header.logGuid, read, seq);
        read = more.next;
        if (!more.ok) break;
        current.end = read;
        current.count++;
        seq = more.ok.hdr.sequenceNumber;
      }
      if (!candidate || current.first.sequenceNumber > candidate.first.sequenceNumber) candidate = current;
    }
    if (read < tail) break;
  }
  return candidate;
}

/**
 * vhdx_log_flush without its header updates (the caller's): applies every entry of `seq` to the
 * file, whose length is `fileLength` now. Callers run checkLog first, so a log that fails a
 * check changes nothing. Zero descriptors punch holes where the storage can
 * (QEMU writes zeros; the bytes read the same) and extend the file instead of writing past its
 * end. Returns the file length after replay.
 */
export async function replayLog(storage: Storage, header: VhdxHeader, seq: LogSequence, fileLength: number): Promise<number> {
  return walkSequence(storage, header, seq, fileLength, true);
}

/** The checks of replayLog alone, writing nothing: throws what replaying would throw. */
export async function checkLog(storage: Storage, header: VhdxHeader, seq: LogSequence, fileLength: number): Promise<void> {
  await walkSequence(storage, header, seq, fileLength, false);
}

async function walkSequence(storage: Storage, header: VhdxHeader, seq: LogSequence, fileLength: number, apply: boolean): Promise<number> {
  const name = storage.name;
  const log = new LogReader(storage, Number(header.logOffset), header.logLength);
  const logStart = header.logOffset;
  const logEnd = header.logOffset + BigInt(header.logLength);
  const MAX = BigInt(Number.MAX_SAFE_INTEGER);
  let read = seq.start;
  let length = BigInt(fileLength);
  // QEMU's vhdx_log_read_sectors stops at the sequence's end: an entry reaching past it fails.
  const atEnd = (): VmimgError => corrupt(name, 'a log entry runs past the end of the active sequence');
  const take = async (n: number): Promise<Uint8Array> => {
    const out = new Uint8Array(n * LOG_SECTOR);
    for (let k = 0; k < n; k++, read = log.next(read)) {
      if (read === seq.end) throw atEnd();
      out.set(await log.sector(read), k * LOG_SECTOR);
    }
    return out;
  };
  const extendTo = async (end: bigint): Promise<void> => {
    if (end <= length) return;
    if (apply) await storage.truncate(Number(end));
    length = end;
  };
  for (let e = 0; e < seq.count; e++) {
    if (read === seq.end) throw atEnd();
    const hdr = decodeEntryHeader(await log.sector(read));
    const entry = hdr.sequenceNumber.toString();
    if (hdr.flushedFileOffset > length) {
      throw corrupt(name, `log entry ${entry} says the file was flushed up to ${hdr.flushedFileOffset}, but it is ${length} bytes long`, { sequence: entry });
    }
    const last = hdr.lastFileOffset + ((BigInt(MiB) - (hdr.lastFileOffset % BigInt(MiB))) % BigInt(MiB));
    if (last > MAX || last > length + BigInt(MAX_LOG_EXTENSION)) {
      throw corrupt(name, `log entry ${entry} has last file offset ${hdr.lastFileOffset}, more than ${MAX_LOG_EXTENSION} bytes past the end of the file (${length})`, { sequence: entry });
    }
    const limit = last > length ? last : length;
    const descriptors = decodeDescriptors(name, await take(descriptorSectors(hdr.descriptorCount)), hdr);
    for (const [k, d] of descriptors.entries()) {
      const end = d.fileOffset + (d.kind === 'zero' ? d.zeroLength : BigInt(LOG_SECTOR));
      const where = { sequence: entry, descriptor: k, fileOffset: d.fileOffset.toString() };
      if (end > limit) throw corrupt(name, `log entry ${entry}: descriptor ${k} writes ${d.fileOffset}..${end}, past the file's last offset ${limit}`, where);
      if (d.fileOffset < logEnd && end > logStart) throw corrupt(name, `log entry ${entry}: descriptor ${k} writes ${d.fileOffset}..${end}, inside the log itself`, where);
      if (d.kind === 'data') {
        const sector = await take(1);
        const v = new DataView(sector.buffer, sector.byteOffset, sector.byteLength);
        const dataSeq = (BigInt(v.getUint32(4, true)) << 32n) | BigInt(v.getUint32(LOG_SECTOR - 4, true));
        if (dataSeq !== hdr.sequenceNumber) throw corrupt(name, `log entry ${entry}: the data sector of descriptor ${k} has sequence number ${dataSeq}`, where);
        sector.set(d.leading, 0);
        sector.set(d.trailing, LOG_SECTOR - 4);
        if (apply) await storage.write(Number(d.fileOffset), sector);
        if (end > length) length = end;
      } else {
        const inside = (end < length ? end : length) - d.fileOffset;
        if (apply && inside > 0n) await zeroRange(storage, Number(d.fileOffset), Number(inside));
        await extendTo(end);
      }
    }
    // Spec §2.3.1.1: a file shorter than LastFileOffset is extended to it (1 MiB-aligned).
    if (hdr.lastFileOffset > length) await extendTo(last);
  }
  return Number(length);
}

