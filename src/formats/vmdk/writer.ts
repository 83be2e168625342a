/**
 * vmdk as a convert target: the file `qemu-img convert -O vmdk` (7.2) writes for
 * monolithicSparse and streamOptimized. The metadata area is exactly what `create` plans
 * (plan.ts: header, descriptor, both grain directories, room for every grain table); grains are
 * appended in guest order from overHead, and each grain table is written (to both copies) once
 * the stream has moved past it, so memory holds one 2 KiB table at a time.
 *
 * monolithicSparse: every grain takes 128 whole sectors (a short tail grain is zero-padded),
 * the grain table entry is its sector (VMware "Virtual Disk Format 5.0", "Grain Tables").
 * streamOptimized (same spec, "Stream-Optimized Compressed Sparse Extents"): every grain is a
 * zlib stream behind a 12-byte grain marker {lba u64, size u32}, starting on the sector after
 * the previous one (QEMU's vmdk_write_extent); tables and directories stay in the header area
 * (gdOffset is real, no GT/GD/footer markers: QEMU's flavour), and the file ends at
 * max(last grain + one grain, end of data + one zero sector) — QEMU zero-fills a whole grain
 * before overwriting its start, vmimg guarantees the all-zero end-of-stream sector on top.
 *
 * Zeros (writeZeroes, only reached when a backing file must be masked): with zeroed_grain the
 * grain table entry is 1 (GTE_ZEROED); otherwise a zero grain is stored like data, as QEMU's
 * write-zeroes fallback does.
 */
import { deflateSync, inflateSync } from 'node:zlib';
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import { toSafeNumber } from '../../util/size.js';
import { SECTOR_SIZE, type Sectors, sectors } from '../../util/units.js';
import type { CreateContext, Layout } from '../types.js';
import type { ImageWriter, WriterCompression } from '../writer.js';
import { CREATE_GRAIN_SECTORS, CREATE_GTES_PER_GT } from './constants.js';
import { Appender } from '../appender.js';
import { parseCreateParams, type VmdkCreateParams } from './params.js';
import { planVmdk, sparseGeometry, type SparseGeometry } from './plan.js';

export const GRAIN_BYTES = CREATE_GRAIN_SECTORS * SECTOR_SIZE;
/** Grain marker header: lba (u64) + size (u32). */
export const MARKER_BYTES = 12;
/** Grain table entry of a zeroed grain (QEMU's VMDK_GTE_ZEROED). */
const GTE_ZEROED = 1;
/** Grain table entries are 32-bit sector numbers (QEMU's VMDK_EXTENT_MAX_SECTORS). */
const MAX_EXTENT_SECTORS = 2 ** 32;

/**
 * zlib's compressBound for one grain: the largest zlib stream `compress()` can produce, so the
 * largest stored grain is MARKER_BYTES + this, rounded up to a sector.
 */
export function zlibBound(n: number): number {
  return n + (n >>> 12) + (n >>> 14) + (n >>> 25) + 13;
}

/**
 * convert -O vmdk. `compress` (-c) is accepted for monolithicSparse and has no effect, as in
 * qemu-img 7.2 (its compressed-write path stores plain grains in an uncompressed extent);
 * streamOptimized compresses every grain whether or not -c is given.
 */
export async function createVmdkWriter(storage: Storage, ctx: CreateContext, _compress: boolean): Promise<ImageWriter> {
  const p = parseCreateParams(ctx);
  const layout = planVmdk(p); // refuses a descriptor that does not fit before any data is written
  return new VmdkWriter(storage, p, layout);
}

class VmdkWriter implements ImageWriter {
  readonly virtualSize: number;
  readonly granularity = GRAIN_BYTES;
  readonly compression?: WriterCompression;
  private readonly g: SparseGeometry;
  private readonly stream: boolean;
  /** Next free sector for a grain. */
  private next: Sectors;
  /** Sector of the last grain stored (streamOptimized file length), -1 before any. */
  private lastGrain = -1;
  /** Grain tables not yet written, by index; ascending writes keep this to one entry. */
  private readonly tables = new Map<number, Uint32Array>();
  /** Tables already written: a later entry for one of them would be lost. */
  private flushedBelow = 0;
  private readonly out: Appender;
  private zeroGrain?: Uint8Array;
  private zeroDeflated?: Uint8Array;

  constructor(
    private readonly storage: Storage,
    private readonly p: VmdkCreateParams,
    private readonly layout: Layout,
  ) {
    this.virtualSize = toSafeNumber(p.size, 'vmdk virtual size');
    this.g = sparseGeometry(p.size);
    this.stream = p.subformat === 'streamOptimized';
    this.next = this.g.grainOffset;
    // A gap (padding of a short or compressed grain) stays zero: staged only when under a grain.
    this.out = new Appender(storage, { stageGapsBelow: GRAIN_BYTES });
    // Every grain of a compressed extent must be compressed: nothing is too long to store.
    if (this.stream) this.compression = { codec: 'zlib', maxCompressed: Number.MAX_SAFE_INTEGER };
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    for (let pos = 0; pos < data.length; pos += GRAIN_BYTES) {
      const piece = data.subarray(pos, Math.min(data.length, pos + GRAIN_BYTES));
      if (this.stream) await this.storeCompressed(offset + pos, this.deflate(sectorPad(piece)));
      else await this.storePlain(offset + pos, piece);
    }
  }

  async writeCompressed(offset: number, length: number, compressed: Uint8Array): Promise<void> {
    if (!this.stream) throw new VmimgError('INTERNAL', 'writeCompressed on an uncompressed vmdk extent', { offset });
    // The engine compresses a short tail zero-padded to a grain; QEMU compresses only the
    // sectors that exist. Re-encode that one grain so the stream matches.
    const n = sectorCeil(length);
    if (n < GRAIN_BYTES) compressed = deflateSync(inflateSync(compressed).subarray(0, n));
    await this.storeCompressed(offset, compressed);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    const end = offset + length;
    for (let pos = offset; pos < end; ) {
      const grainEnd = Math.min((Math.floor(pos / GRAIN_BYTES) + 1) * GRAIN_BYTES, this.virtualSize);
      const n = Math.min(end, grainEnd) - pos;
      // QEMU marks only whole grains zeroed; a short tail grain is written as zero data.
      const whole = pos % GRAIN_BYTES === 0 && n === GRAIN_BYTES;
      if (this.p.zeroedGrain && whole) this.setEntry(pos / GRAIN_BYTES, GTE_ZEROED);
      else {
        this.zeroGrain ??= new Uint8Array(GRAIN_BYTES);
        await this.write(pos, n === GRAIN_BYTES ? this.zeroGrain : this.zeroGrain.subarray(0, n));
      }
      pos += n;
      await this.flushTablesBelow(Math.floor(pos / GRAIN_BYTES / CREATE_GTES_PER_GT));
    }
  }

  async finish(): Promise<void> {
    await this.out.flush();
    await this.flushTablesBelow(Infinity);
    for (const w of this.layout.writes) await this.storage.write(w.offset, w.data);
    await this.storage.truncate(this.fileLength());
    await this.storage.flush();
  }

  /** zlib stream of a grain (QEMU's compress(): default level); all-zero grains are cached. */
  private deflate(piece: Uint8Array): Uint8Array {
    if (piece.buffer !== this.zeroGrain?.buffer || piece.length !== GRAIN_BYTES) return deflateSync(piece);
    return (this.zeroDeflated ??= deflateSync(piece));
  }

  /** The final file length in bytes (see the module comment). */
  private fileLength(): number {
    if (!this.stream || this.lastGrain < 0) return this.next * SECTOR_SIZE;
    return Math.max((this.lastGrain + CREATE_GRAIN_SECTORS) * SECTOR_SIZE, (this.next + 1) * SECTOR_SIZE);
  }

  private async storePlain(offset: number, data: Uint8Array): Promise<void> {
    const at = this.allocate(CREATE_GRAIN_SECTORS);
    await this.out.append(at * SECTOR_SIZE, data);
    this.setEntry(offset / GRAIN_BYTES, at);
    await this.flushTablesBelow(Math.floor(offset / GRAIN_BYTES / CREATE_GTES_PER_GT));
  }

  private async storeCompressed(offset: number, compressed: Uint8Array): Promise<void> {
    const record = new Uint8Array(MARKER_BYTES + compressed.length);
    const v = new DataView(record.buffer);
    v.setBigUint64(0, BigInt(offset / SECTOR_SIZE), true);
    v.setUint32(8, compressed.length, true);
    record.set(compressed, MARKER_BYTES);
    const at = this.allocate(Math.ceil(record.length / SECTOR_SIZE));
    await this.out.append(at * SECTOR_SIZE, record);
    this.lastGrain = at;
    this.setEntry(offset / GRAIN_BYTES, at);
    await this.flushTablesBelow(Math.floor(offset / GRAIN_BYTES / CREATE_GTES_PER_GT));
  }

  /** Reserves `n` sectors at the end of the grain area; returns the first. */
  private allocate(n: number): Sectors {
    const at = this.next;
    if (at + n > MAX_EXTENT_SECTORS) {
      throw new VmimgError('SIZE_OUT_OF_RANGE', `vmdk extent would grow past ${MAX_EXTENT_SECTORS} sectors (2 TiB): grain table entries are 32-bit sector numbers`, {
        sector: at,
      });
    }
    this.next = sectors(at + n);
    return at;
  }

  private setEntry(grain: number, value: number): void {
    if (!Number.isInteger(grain) || grain < 0 || grain >= this.g.grains) throw new VmimgError('INTERNAL', `vmdk writer: grain ${grain} out of range`, { grain });
    const index = Math.floor(grain / CREATE_GTES_PER_GT);
    if (index < this.flushedBelow) throw new VmimgError('INTERNAL', `vmdk writer: out-of-order write to grain ${grain} after its table was written`, { grain });
    let table = this.tables.get(index);
    if (!table) this.tables.set(index, (table = new Uint32Array(CREATE_GTES_PER_GT)));
    table[grain % CREATE_GTES_PER_GT] = value;
  }

  /** Writes (both copies of) every pending grain table with index < `limit`. */
  private async flushTablesBelow(limit: number): Promise<void> {
    if (limit <= this.flushedBelow) return;
    for (const index of [...this.tables.keys()].sort((a, b) => a - b)) {
      if (index >= limit) break;
      const bytes = encodeTable(this.tables.get(index)!);
      this.tables.delete(index);
      for (const dir of [this.g.rgdOffset, this.g.gdOffset]) {
        await this.storage.write((dir + this.g.gdSectors + index * this.g.gtSectors) * SECTOR_SIZE, bytes);
      }
    }
    this.flushedBelow = Math.min(limit, this.g.gtCount);
  }
}

const sectorCeil = (n: number): number => Math.ceil(n / SECTOR_SIZE) * SECTOR_SIZE;

/** A tail that ends inside a sector, zero-padded to the sector (the guest sees whole sectors). */
function sectorPad(piece: Uint8Array): Uint8Array {
  if (piece.length % SECTOR_SIZE === 0) return piece;
  const out = new Uint8Array(sectorCeil(piece.length));
  out.set(piece);
  return out;
}

function encodeTable(table: Uint32Array): Uint8Array {
  const out = new Uint8Array(table.length * 4);
  const v = new DataView(out.buffer);
  for (let i = 0; i < table.length; i++) if (table[i] !== 0) v.setUint32(i * 4, table[i]!, true);
  return out;
}
