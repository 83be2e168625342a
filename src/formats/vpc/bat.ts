/**
 * The VHD Block Allocation Table (VHD spec "Block Allocation Table and Data Blocks"): "Max Table
 * Entries" big-endian 32-bit sector numbers at the dynamic header's Table Offset, one per block;
 * 0xFFFFFFFF marks a block that is not allocated. An allocated entry is the sector of the
 * block's sector bitmap; the block's data follows the bitmap.
 *
 * The table can be up to 2 GiB (QEMU caps entries at INT_MAX / 4), so it is never loaded whole:
 * lookups go through a small LRU of fixed-size pages, and scans read it in bounded chunks.
 * Callers have checked that the table lies inside the file (header.ts).
 */
import type { Storage } from '../../storage/types.js';

/** An unallocated BAT entry. */
export const BAT_UNUSED = 0xffff_ffff;
export const BAT_ENTRY_SIZE = 4;

/** Entries per cached page (64 KiB of table) and pages kept: at most 1 MiB of table in memory. */
const PAGE_ENTRIES = 16384;
const MAX_PAGES = 16;
/** Bytes of table read at a time by scan(). */
const SCAN_CHUNK = 1 << 20;

export class VpcBat {
  private readonly pages = new Map<number, Uint32Array>();
  private lastPageNo = -1;
  private lastPage: Uint32Array | undefined;

  /**
   * @param tableOffset byte offset of the table in the file
   * @param entries Max Table Entries (validated: ≤ INT_MAX / 4, table inside the file)
   */
  constructor(
    private readonly storage: Storage,
    readonly tableOffset: number,
    readonly entries: number,
  ) {}

  /** Entry `index` when it needs no I/O (its page is the last one used), else undefined. */
  peek(index: number): number | undefined {
    if (index < 0 || index >= this.entries) return BAT_UNUSED;
    const pageNo = Math.floor(index / PAGE_ENTRIES);
    return this.lastPageNo === pageNo ? this.lastPage![index - pageNo * PAGE_ENTRIES] : undefined;
  }

  /** Entry `index`; indexes past the table are unallocated (as QEMU's get_image_offset has it). */
  async get(index: number): Promise<number> {
    if (index < 0 || index >= this.entries) return BAT_UNUSED;
    const pageNo = Math.floor(index / PAGE_ENTRIES);
    let page = this.pages.get(pageNo);
    if (page) {
      this.pages.delete(pageNo);
    } else {
      page = await this.readEntries(pageNo * PAGE_ENTRIES, Math.min(PAGE_ENTRIES, this.entries - pageNo * PAGE_ENTRIES));
      if (this.pages.size >= MAX_PAGES) this.pages.delete(this.pages.keys().next().value!);
    }
    this.pages.set(pageNo, page);
    this.lastPageNo = pageNo;
    this.lastPage = page;
    return page[index - pageNo * PAGE_ENTRIES]!;
  }

  /** Sets entry `index` (< entries) in the file and in the cached page, if any. */
  async set(index: number, entry: number): Promise<void> {
    const bytes = new Uint8Array(BAT_ENTRY_SIZE);
    new DataView(bytes.buffer).setUint32(0, entry);
    await this.storage.write(this.tableOffset + index * BAT_ENTRY_SIZE, bytes);
    const pageNo = Math.floor(index / PAGE_ENTRIES);
    const page = this.pages.get(pageNo);
    if (page) page[index - pageNo * PAGE_ENTRIES] = entry;
  }

  /** Calls `visit(index, entry)` for every entry in order, reading the table in 1 MiB chunks. */
  async scan(visit: (index: number, entry: number) => void): Promise<void> {
    const per = SCAN_CHUNK / BAT_ENTRY_SIZE;
    for (let first = 0; first < this.entries; first += per) {
      const chunk = await this.readEntries(first, Math.min(per, this.entries - first));
      for (let i = 0; i < chunk.length; i++) visit(first + i, chunk[i]!);
    }
  }

  private async readEntries(first: number, count: number): Promise<Uint32Array> {
    const bytes = await this.storage.read(this.tableOffset + first * BAT_ENTRY_SIZE, count * BAT_ENTRY_SIZE);
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const out = new Uint32Array(count);
    for (let i = 0; i < count; i++) out[i] = v.getUint32(i * BAT_ENTRY_SIZE);
    return out;
  }
}
