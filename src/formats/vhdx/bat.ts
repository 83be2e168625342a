/**
 * The VHDX Block Allocation Table (VHDX spec §2.5 "BAT"): 64-bit little-endian entries, state
 * in bits 0..2, FileOffsetMB in bits 20..63; after every chunk-ratio payload entries comes one
 * sector bitmap entry (§2.5.1). Reading it (a bounded page cache and chunked scans, so a table
 * of up to 4 GiB never sits in memory), and the entry checks of QEMU 7.2's
 * vhdx_check_bat_entries, shared by open (first problem refuses the image) and check (every
 * problem is counted).
 *
 * Entries past the end of the file read as zero (NOT_PRESENT), as QEMU's reads past EOF do.
 */
import type { Storage } from '../../storage/types.js';
import { BAT_ENTRY_SIZE, PAYLOAD_BLOCK_FULLY_PRESENT } from './structs.js';
import type { BatGeometry } from './params.js';

const U64 = 1n << 64n;
const INT64_MAX = (1n << 63n) - 1n;
/** Entries per cached page (64 KiB of table), pages kept (1 MiB), entries per scan chunk (1 MiB). */
const PAGE_ENTRIES = 8192;
const MAX_PAGES = 16;
const SCAN_ENTRIES = 131072;
const TWO_32 = 4294967296;

/** A file range [start, end) registered by QEMU (the log, every region table entry); end mod 2^64. */
export interface Region {
  start: bigint;
  end: bigint;
}

/** The first of `regions` that [start, start+length) overlaps, in table order. */
export function overlaps(regions: readonly Region[], start: bigint, length: bigint): Region | undefined {
  const end = (start + length) % U64;
  return regions.find((r) => !(start >= r.end || end <= r.start));
}

/** Like overlaps(), in the order QEMU's vhdx_region_check walks its list: newest region first. */
export function lastOverlap(regions: readonly Region[], start: bigint, length: bigint): Region | undefined {
  const end = (start + length) % U64;
  for (let i = regions.length - 1; i >= 0; i--) {
    const r = regions[i]!;
    if (!(start >= r.end || end <= r.start)) return r;
  }
  return undefined;
}

/** One BAT entry, decoded from its two 32-bit halves (so scans need no BigInt). */
export interface BatEntry {
  state: number;
  /** The 1 MiB-aligned file offset; exact below 2^53, beyond that only "huge". */
  offset: number;
  /** The offset's high and (masked) low 32 bits, for exact 64-bit arithmetic. */
  hi: number;
  lo: number;
}

export function entryOffsetBig(e: BatEntry): bigint {
  return (BigInt(e.hi) << 32n) | BigInt(e.lo);
}

export class VhdxBat {
  private readonly pages = new Map<number, Uint32Array>();
  private lastPageNo = -1;
  private lastPage: Uint32Array | undefined;
  /** Bytes of the table that lie in the file (the rest reads as zero). */
  private readable: number;

  constructor(
    private readonly storage: Storage,
    readonly fileOffset: bigint,
    readonly entries: number,
    fileLength: number,
  ) {
    this.readable = fileOffset >= BigInt(fileLength) ? 0 : Math.min(entries * BAT_ENTRY_SIZE, fileLength - Number(fileOffset));
  }

  /** Entry `index` when its page is cached (no I/O), else undefined: get() it. */
  peek(index: number): BatEntry | undefined {
    const pageNo = Math.floor(index / PAGE_ENTRIES);
    const page = this.lastPageNo === pageNo ? this.lastPage : undefined;
    return page && decode(page, index - pageNo * PAGE_ENTRIES);
  }

  /** Entry `index` (0 ≤ index < entries). */
  async get(index: number): Promise<BatEntry> {
    const pageNo = Math.floor(index / PAGE_ENTRIES);
    let page = this.pages.get(pageNo);
    if (page) {
      this.pages.delete(pageNo);
    } else {
      page = await this.readHalves(pageNo * PAGE_ENTRIES, Math.min(PAGE_ENTRIES, this.entries - pageNo * PAGE_ENTRIES));
      if (this.pages.size >= MAX_PAGES) this.pages.delete(this.pages.keys().next().value!);
    }
    this.pages.set(pageNo, page);
    this.lastPageNo = pageNo;
    this.lastPage = page;
    return decode(page, index - pageNo * PAGE_ENTRIES);
  }

  /**
   * Writes entry `index` (0 ≤ index < entries) straight into the table and updates the cache:
   * `state` in bits 0..2, `offset` (a multiple of 1 MiB below 2^53, or 0) as FileOffsetMB.
   */
  async set(index: number, state: number, offset: number): Promise<void> {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.entries) throw new RangeError(`BAT index ${index} outside 0..${this.entries - 1}`);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset % 1048576 !== 0) throw new RangeError(`BAT offset ${offset} is not a multiple of 1 MiB`);
    const hi = Math.floor(offset / TWO_32);
    const raw = ((offset - hi * TWO_32) | (state & 7)) >>> 0;
    const bytes = new Uint8Array(BAT_ENTRY_SIZE);
    const v = new DataView(bytes.buffer);
    v.setUint32(0, raw, true);
    v.setUint32(4, hi, true);
    await this.storage.write(Number(this.fileOffset) + index * BAT_ENTRY_SIZE, bytes);
    this.readable = Math.max(this.readable, (index + 1) * BAT_ENTRY_SIZE);
    const pageNo = Math.floor(index / PAGE_ENTRIES);
    const i = index - pageNo * PAGE_ENTRIES;
    for (const page of [this.pages.get(pageNo), this.lastPageNo === pageNo ? this.lastPage : undefined]) {
      if (!page) continue;
      page[i * 2] = raw;
      page[i * 2 + 1] = hi;
    }
  }

  /**
   * Calls `visit` for the entries that lie in the file, in order, reading the table in 1 MiB
   * chunks, until `visit` returns false. The entries past the end of the file are all
   * NOT_PRESENT and are not visited.
   */
  async scan(visit: (index: number, entry: BatEntry) => boolean | void): Promise<void> {
    const inFile = Math.ceil(this.readable / BAT_ENTRY_SIZE);
    for (let first = 0; first < inFile; first += SCAN_ENTRIES) {
      const count = Math.min(SCAN_ENTRIES, inFile - first);
      const halves = await this.readHalves(first, count);
      for (let i = 0; i < count; i++) if (visit(first + i, decode(halves, i)) === false) return;
    }
  }

  private async readHalves(first: number, count: number): Promise<Uint32Array> {
    const out = new Uint32Array(count * 2);
    const from = first * BAT_ENTRY_SIZE;
    const n = Math.max(0, Math.min(count * BAT_ENTRY_SIZE, this.readable - from));
    if (n === 0) return out;
    const bytes = await this.storage.read(Number(this.fileOffset) + from, n);
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let k = 0; k + BAT_ENTRY_SIZE <= n; k += BAT_ENTRY_SIZE) {
      out[k / 4] = v.getUint32(k, true);
      out[k / 4 + 1] = v.getUint32(k + 4, true);
    }
    return out;
  }
}

function decode(halves: Uint32Array, i: number): BatEntry {
  const raw = halves[i * 2]!;
  const hi = halves[i * 2 + 1]!;
  const lo = (raw & 0xfff0_0000) >>> 0;
  return { state: raw & 7, offset: hi * TWO_32 + lo, hi, lo };
}

/**
 * QEMU 7.2's vhdx_check_bat_entries, entry by entry: a FULLY_PRESENT entry must not overflow,
 * must start and end inside the file, and — for the first chunk-ratio such entries, then every
 * chunk-ratio after skipping one, as QEMU's counter runs — must not overlap the log or a region.
 * "The end" uses QEMU's block length, MIN(block size, disk size − BAT index × block size) in
 * unsigned arithmetic: the BAT index counts sector bitmap entries, so it understates the last
 * block's length. Messages are QEMU's.
 */
export class BatEntryChecker {
  private payblocks: number;
  /** Whether the last problems() call ran QEMU's region check (its counter skips some entries). */
  regionChecked = false;

  constructor(
    private readonly g: BatGeometry,
    private readonly virtualSize: bigint,
    private readonly fileLength: number,
    private readonly regions: readonly Region[],
  ) {
    this.payblocks = g.chunkRatio;
  }

  /** The problems QEMU reports for entry `index` (in its order); call for every entry in order. */
  problems(index: number, e: BatEntry): string[] {
    this.regionChecked = false;
    if (e.state !== PAYLOAD_BLOCK_FULLY_PRESENT) return [];
    const out: string[] = [];
    const blockSize = BigInt(this.g.blockSize);
    const offset = entryOffsetBig(e);
    const rest = (((this.virtualSize - BigInt(index) * blockSize) % U64) + U64) % U64;
    const blockLength = rest < blockSize ? rest : blockSize;
    const file = BigInt(this.fileLength);
    if (offset > INT64_MAX - blockSize) out.push(`VHDX BAT entry ${index} offset overflow.`);
    if (offset >= file) {
      out.push(`VHDX BAT entry ${index} start offset ${offset} points after end of file (${file}). Image has probably been truncated.`);
    } else if (offset + blockLength > file) {
      out.push(`VHDX BAT entry ${index} end offset ${offset + blockLength - 1n} points after end of file (${file}). Image has probably been truncated.`);
    }
    if (this.payblocks > 0) {
      this.payblocks--;
      this.regionChecked = true;
      const clash = this.regionOverlap(e);
      if (clash) out.push(clash);
    } else {
      this.payblocks = this.g.chunkRatio;
    }
    return out;
  }

  /** QEMU's message when entry `e`'s block overlaps the log or a region (newest region first). */
  regionOverlap(e: BatEntry): string | undefined {
    const offset = entryOffsetBig(e);
    const blockSize = BigInt(this.g.blockSize);
    const clash = lastOverlap(this.regions, offset, blockSize);
    // QEMU prints the region's end with "%." PRIu64: precision 0, so an end of 0 prints nothing.
    return clash && `VHDX region ${offset}-${(offset + blockSize) % U64} overlaps with region ${clash.start}-${clash.end === 0n ? '' : clash.end}`;
  }
}
