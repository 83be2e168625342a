/**
 * vpc (VHD) as a convert target, laid out as `qemu-img convert -O vpc` (7.2) lays it out.
 *
 * The image is configured exactly as `create` configures it (plan.ts: subformat, force_size,
 * the CHS search that can round the virtual size up), so the target reports the same virtual
 * size as qemu-img's own convert of the same source.
 *
 * Dynamic (VHD spec "Dynamic Disk Header Format", "Block Allocation Table and Data Blocks"):
 *   footer copy @0 | dynamic header @512 | BAT @1536 (padded to a sector) | blocks | footer.
 *   A block is allocated when the first data lands in it, in ascending guest order (writes
 *   arrive ascending), right after the previous one: sector bitmap (512 bytes for 2 MiB blocks)
 *   then the block's 2 MiB, the first at the end of the BAT rounded to a sector — QEMU's
 *   free_data_block_offset. Only the data runs are written; the rest of a block is a hole and
 *   reads as zeros. A block's bitmap has a bit set (most significant bit first: bit 7 of byte 0
 *   is the block's sector 0) for every sector data was written to; QEMU sets all bits.
 *   Blocks never written stay unallocated (0xFFFFFFFF) and read as zeros. The BAT, the headers
 *   and the footer (after the last block) are written by finish().
 * Fixed: the disk's bytes at their own offsets (zero runs stay holes: a sparse file), then the
 *   footer at the virtual size.
 *
 * No backing files (QEMU's vpc has none; -B is refused before the writer is made) and no
 * compression ("Compression not supported for this file format", as qemu-img says).
 */
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import { SECTOR_SIZE } from '../../util/units.js';
import type { CreateContext } from '../types.js';
import type { ImageWriter } from '../writer.js';
import { BAT_ENTRY_SIZE, BAT_UNUSED } from './bat.js';
import { encodeFooter, FOOTER_SIZE } from './footer.js';
import { sectorBitmapSize } from './header.js';
import {
  BAT_OFFSET,
  batBytesFor,
  batEntriesFor,
  createDynamicHeader,
  createFooter,
  DYN_HEADER_OFFSET,
  firstBlockOffset,
  parseVpcParams,
  VPC_CREATE_BLOCK_SIZE,
  type VpcCreateParams,
} from './plan.js';

/** Bytes one allocated block takes in the file: its sector bitmap and its data. */
export const BLOCK_FILE_BYTES = sectorBitmapSize(VPC_CREATE_BLOCK_SIZE) + VPC_CREATE_BLOCK_SIZE;

/** File length of a dynamic disk with `entries` BAT entries and `blocks` allocated blocks. */
export function dynamicFileLength(entries: number, blocks: number): number {
  return firstBlockOffset(entries) + blocks * BLOCK_FILE_BYTES + FOOTER_SIZE;
}

export async function createVpcWriter(storage: Storage, ctx: CreateContext, compress: boolean): Promise<ImageWriter> {
  if (compress) throw new VmimgError('UNSUPPORTED_OPTION', 'Compression not supported for this file format', { format: 'vpc' });
  const p = parseVpcParams(ctx);
  return p.subformat === 'fixed' ? new FixedVpcWriter(storage, p) : new DynamicVpcWriter(storage, p);
}

function outOfRange(offset: number, length: number, size: number): VmimgError {
  return new VmimgError('INTERNAL', `vpc writer: write of ${length} bytes at ${offset} ends past the virtual size ${size}`, { offset, length, size });
}

class FixedVpcWriter implements ImageWriter {
  readonly virtualSize: number;
  readonly granularity = SECTOR_SIZE;

  constructor(
    private readonly storage: Storage,
    private readonly p: VpcCreateParams,
  ) {
    this.virtualSize = Number(p.size);
  }

  /** The first block is written as zeros first, as `create` (and qemu-img's convert) does. */
  private firstBlock: Promise<void> | undefined;

  private async start(): Promise<void> {
    this.firstBlock ??= this.storage.write(0, new Uint8Array(this.p.firstBlock));
    await this.firstBlock;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (offset < 0 || offset + data.length > this.virtualSize) throw outOfRange(offset, data.length, this.virtualSize);
    await this.start();
    await this.storage.write(offset, data);
  }

  /** The file starts empty: never-written ranges are holes that read as zeros. */
  async writeZeroes(offset: number, length: number): Promise<void> {
    if (offset < 0 || offset + length > this.virtualSize) throw outOfRange(offset, length, this.virtualSize);
  }

  async finish(): Promise<void> {
    await this.start();
    await this.storage.write(this.virtualSize, encodeFooter(createFooter(this.p)));
    await this.storage.truncate(this.virtualSize + FOOTER_SIZE);
    await this.storage.flush();
  }
}

class DynamicVpcWriter implements ImageWriter {
  readonly virtualSize: number;
  readonly granularity = SECTOR_SIZE;
  private readonly entries: number;
  private readonly bat: Uint32Array;
  private readonly bitmapBytes = sectorBitmapSize(VPC_CREATE_BLOCK_SIZE);
  /** Next free file offset: where the next block's bitmap goes. */
  private nextFree: number;
  /** The block being filled (writes ascend, so only one is ever open). */
  private current: { index: number; offset: number; bitmap: Uint8Array } | undefined;
  /** Highest guest offset written so far, to enforce the ascending-order contract. */
  private written = 0;

  constructor(
    private readonly storage: Storage,
    private readonly p: VpcCreateParams,
  ) {
    this.virtualSize = Number(p.size);
    this.entries = batEntriesFor(p.size);
    this.bat = new Uint32Array(this.entries).fill(BAT_UNUSED);
    this.nextFree = firstBlockOffset(this.entries);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    const end = offset + data.length;
    if (offset < 0 || end > this.virtualSize) throw outOfRange(offset, data.length, this.virtualSize);
    if (offset < this.written) {
      throw new VmimgError('INTERNAL', `vpc writer: writes must ascend (write at ${offset} after data up to ${this.written})`, { offset, written: this.written });
    }
    const bs = VPC_CREATE_BLOCK_SIZE;
    for (let pos = offset; pos < end; ) {
      const index = Math.floor(pos / bs);
      const within = pos - index * bs;
      const n = Math.min(bs - within, end - pos);
      const block = await this.openBlock(index);
      await this.storage.write(block.offset + this.bitmapBytes + within, data.subarray(pos - offset, pos - offset + n));
      const last = Math.ceil((within + n) / SECTOR_SIZE);
      const bm = block.bitmap;
      for (let s = Math.floor(within / SECTOR_SIZE); s < last; s++) bm[s >> 3] = bm[s >> 3]! | (0x80 >> (s & 7));
      pos += n;
    }
    this.written = Math.max(this.written, end);
  }

  /** Unallocated blocks and unwritten parts of allocated ones already read as zeros. */
  async writeZeroes(offset: number, length: number): Promise<void> {
    if (offset < 0 || offset + length > this.virtualSize) throw outOfRange(offset, length, this.virtualSize);
  }

  async finish(): Promise<void> {
    await this.closeBlock();
    const footer = encodeFooter(createFooter(this.p));
    const batBytes = batBytesFor(this.entries);
    const bat = new Uint8Array(batBytes).fill(0xff);
    const v = new DataView(bat.buffer);
    for (let i = 0; i < this.entries; i++) if (this.bat[i] !== BAT_UNUSED) v.setUint32(i * BAT_ENTRY_SIZE, this.bat[i]!);
    await this.storage.write(0, footer);
    await this.storage.write(DYN_HEADER_OFFSET, createDynamicHeader(this.entries));
    if (batBytes > 0) await this.storage.write(BAT_OFFSET, bat);
    await this.storage.write(this.nextFree, footer);
    await this.storage.truncate(this.nextFree + FOOTER_SIZE);
    await this.storage.flush();
  }

  private async openBlock(index: number): Promise<{ offset: number; bitmap: Uint8Array }> {
    if (this.current?.index === index) return this.current;
    await this.closeBlock();
    if (this.bat[index] !== BAT_UNUSED) {
      throw new VmimgError('INTERNAL', `vpc writer: block ${index} written again after later blocks`, { index });
    }
    const offset = this.nextFree;
    // A BAT entry is a 32-bit sector number; 2040 GiB of 2 MiB blocks end below 2^32 sectors.
    if (offset / SECTOR_SIZE >= BAT_UNUSED) throw new VmimgError('SIZE_OUT_OF_RANGE', `vpc writer: block ${index} would start past the BAT's 32-bit sector range`, { index, offset });
    this.bat[index] = offset / SECTOR_SIZE;
    this.nextFree += BLOCK_FILE_BYTES;
    this.current = { index, offset, bitmap: new Uint8Array(this.bitmapBytes) };
    return this.current;
  }

  private async closeBlock(): Promise<void> {
    if (!this.current) return;
    await this.storage.write(this.current.offset, this.current.bitmap);
    this.current = undefined;
  }
}
