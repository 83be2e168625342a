/**
 * vhdx as a convert target, laid out as `qemu-img convert -O vhdx` (7.2) lays it out.
 *
 * The image is configured and framed exactly as `create` makes it (plan.ts: file identifier,
 * both headers, both region tables, metadata, the BAT's initial entries, the file length); the
 * writer then places guest data the way QEMU's vhdx_co_writev does when convert writes into that
 * fresh image:
 *
 * - Convert never writes zero runs to a new vhdx (QEMU's vhdx_has_zero_init is true for every
 *   image it creates), so a block is allocated when the first non-zero data lands in it.
 * - A block whose BAT entry is not FULLY_PRESENT (NOT_PRESENT for dynamic disks with
 *   block_state_zero=off, ZERO with block_state_zero=on — the default, for fixed disks too) is
 *   allocated at the end of the file rounded up to 1 MiB (VHDX spec §2.5: FileOffsetMB), and
 *   the file grows by a whole block. Writes arrive in ascending guest order, so blocks are
 *   allocated in ascending order, back to back. Its entry becomes PAYLOAD_BLOCK_FULLY_PRESENT
 *   with that offset (§2.5.1.1); the other payload entries keep their create-time state and
 *   sector bitmap entries stay 0.
 * - A fixed disk with block_state_zero=off has every entry FULLY_PRESENT from create: data is
 *   written in place at data offset + guest offset, and the file keeps create's length.
 * - Only the data runs are written: the rest of a block is a hole (the file is extended with
 *   truncate) and reads as zeros.
 * - The log stays empty (no log GUID): nothing is journalled, unlike QEMU, whose BAT updates
 *   leave stale log entries behind its cleared log GUID.
 *
 * No backing files (QEMU's vhdx has no backing_file option; -B is refused before the writer is
 * made) and no compression ("Compression not supported for this file format", as qemu-img says).
 */
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import { SECTOR_SIZE } from '../../util/units.js';
import type { CreateContext, MeasureResult, MeasureSource, PlannedWrite } from '../types.js';
import type { ImageWriter } from '../writer.js';
import { parseVhdxParams, payloadBatIndex, type VhdxCreateParams } from './params.js';
import { drawRandomness, layoutFor, planVhdx, type VhdxLayoutPlan } from './plan.js';
import { BAT_ENTRY_SIZE, encodeBatEntry, MiB, PAYLOAD_BLOCK_FULLY_PRESENT } from './structs.js';

/** BAT bytes written around an allocated entry when create left the BAT a hole (one page). */
const BAT_PAGE = 4096;

/** Whether blocks keep create's in-place FULLY_PRESENT entries (fixed, block_state_zero=off). */
export function writesInPlace(p: VhdxCreateParams): boolean {
  return p.subformat === 'fixed' && !p.blockStateZero;
}

/** File offset of the first block the writer allocates (QEMU's vhdx_allocate_block). */
export function firstAllocationOffset(l: VhdxLayoutPlan): number {
  return Math.ceil(l.fileLength / MiB) * MiB;
}

/** The file length after convert allocated `blocks` payload blocks. */
export function convertedFileLength(p: VhdxCreateParams, l: VhdxLayoutPlan, blocks: number): number {
  if (writesInPlace(p) || blocks === 0) return l.fileLength;
  return firstAllocationOffset(l) + blocks * p.blockSize;
}

export async function createVhdxWriter(storage: Storage, ctx: CreateContext, compress: boolean): Promise<ImageWriter> {
  if (compress) throw new VmimgError('UNSUPPORTED_OPTION', 'Compression not supported for this file format', { format: 'vhdx' });
  const p = parseVhdxParams(ctx);
  const plan = planVhdx(p, drawRandomness(ctx.random));
  return new VhdxWriter(storage, p, plan.writes);
}

class VhdxWriter implements ImageWriter {
  readonly virtualSize: number;
  readonly granularity = SECTOR_SIZE;
  private readonly l: VhdxLayoutPlan;
  private readonly inPlace: boolean;
  /** Allocated payload blocks, ascending; the k-th sits at firstAllocationOffset + k × block size. */
  private allocated = new Uint32Array(64);
  private count = 0;

  constructor(
    private readonly storage: Storage,
    private readonly p: VhdxCreateParams,
    private readonly frame: readonly PlannedWrite[],
  ) {
    this.virtualSize = Number(p.size);
    this.l = layoutFor(p);
    this.inPlace = writesInPlace(p);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (offset < 0 || offset + data.length > this.virtualSize) {
      throw new VmimgError('INTERNAL', `vhdx writer: write of ${data.length} bytes at ${offset} ends past the virtual size ${this.virtualSize}`, { offset, length: data.length });
    }
    const bs = this.p.blockSize;
    for (let done = 0; done < data.length; ) {
      const pos = offset + done;
      const block = Math.floor(pos / bs);
      const n = Math.min(data.length - done, (block + 1) * bs - pos);
      await this.storage.write(this.blockOffset(block) + (pos - block * bs), data.subarray(done, done + n));
      done += n;
    }
  }

  /** Never-written ranges already read as zeros (no backing file), so there is nothing to record. */
  async writeZeroes(): Promise<void> {}

  async finish(): Promise<void> {
    const batStart = this.l.batOffset;
    const batEnd = batStart + this.l.batLength;
    const inBat = (w: PlannedWrite) => w.offset >= batStart && w.offset < batEnd;
    const writes = [...this.frame.filter((w) => !inBat(w)), ...this.batWrites(this.frame.filter(inBat))];
    for (const w of writes) await this.storage.write(w.offset, w.data);
    await this.storage.truncate(convertedFileLength(this.p, this.l, this.count));
    await this.storage.flush();
  }

  /** File offset of payload block `block`, allocating it when it is new. */
  private blockOffset(block: number): number {
    if (this.inPlace) return this.l.dataOffset + block * this.p.blockSize;
    const last = this.count === 0 ? -1 : this.allocated[this.count - 1]!;
    if (block < last) {
      throw new VmimgError('INTERNAL', `vhdx writer: block ${block} written after block ${last} (writes must ascend)`, { block, last });
    }
    if (block > last) {
      if (this.count === this.allocated.length) {
        const grown = new Uint32Array(this.allocated.length * 2);
        grown.set(this.allocated);
        this.allocated = grown;
      }
      this.allocated[this.count++] = block;
    }
    return firstAllocationOffset(this.l) + (this.count - 1) * this.p.blockSize;
  }

  /**
   * Create's BAT writes with the allocated blocks' entries set. Where create wrote the BAT
   * (block_state_zero, fixed) its buffers are copied before patching (the planner shares them);
   * where it left a hole, one zero page per group of allocated entries is written.
   */
  private batWrites(base: PlannedWrite[]): PlannedWrite[] {
    const out = new Map<number, PlannedWrite>(base.map((w) => [w.offset, w]));
    const owned = new Set<number>();
    const sorted = [...base].sort((a, b) => a.offset - b.offset);
    let wi = 0;
    const first = firstAllocationOffset(this.l);
    for (let k = 0; k < this.count; k++) {
      const at = this.l.batOffset + payloadBatIndex(this.l.geometry, this.allocated[k]!) * BAT_ENTRY_SIZE;
      while (wi < sorted.length && sorted[wi]!.offset + sorted[wi]!.data.length <= at) wi++;
      let w = wi < sorted.length && sorted[wi]!.offset <= at ? sorted[wi]! : undefined;
      if (!w) {
        const page = at - ((at - this.l.batOffset) % BAT_PAGE);
        w = out.get(page) ?? { offset: page, data: new Uint8Array(BAT_PAGE) };
        out.set(page, w);
        owned.add(page);
      } else if (!owned.has(w.offset)) {
        w = { offset: w.offset, data: w.data.slice() };
        out.set(w.offset, w);
        owned.add(w.offset);
        sorted[wi] = w;
      }
      const entry = encodeBatEntry(PAYLOAD_BLOCK_FULLY_PRESENT, BigInt(first + k * this.p.blockSize));
      new DataView(w.data.buffer, w.data.byteOffset, w.data.byteLength).setBigUint64(at - w.offset, entry, true);
    }
    return [...out.values()].sort((a, b) => a.offset - b.offset);
  }
}

/**
 * `measure -O vhdx` (qemu-img refuses it; vmimg answers with the writer's own arithmetic):
 * required = the file convert writes for the blocks holding source data (a block counts when
 * any of its bytes is data in the source chain; convert skips data that reads as zeros, so an
 * all-zero data block makes this an upper bound), fully allocated = every block allocated.
 * With --size there is no data: required is the empty image create makes.
 */
export async function measureVhdx(ctx: CreateContext, source: MeasureSource | undefined): Promise<MeasureResult> {
  const p = parseVhdxParams(ctx);
  const l = layoutFor(p);
  const blocks = source ? Math.ceil((await source.allocatedBytes(p.blockSize)) / p.blockSize) : 0;
  return {
    required: BigInt(convertedFileLength(p, l, Math.min(blocks, l.geometry.dataBlocks))),
    fullyAllocated: BigInt(convertedFileLength(p, l, l.geometry.dataBlocks)),
  };
}
