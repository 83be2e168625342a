/**
 * Writing one sparse extent in place (VMware "Virtual Disk Format 5.0", "Hosted Sparse Extents";
 * QEMU 7.2 block/vmdk.c get_cluster_offset with allocate, get_whole_cluster, vmdk_write_extent,
 * vmdk_L2update). One call handles a piece of guest data inside one grain:
 *
 * - allocated grain: written in place (after checking its GT entry points past the header area
 *   and inside the file); a compressed (streamOptimized) grain is refused as QEMU refuses it
 *   ("Could not write to allocated cluster for streamOptimized").
 * - unallocated or zeroed grain (GTE 0, or GTE 1 with the zeroed-grain flag): a new grain is
 *   appended at QEMU's next_cluster_sector (the file's end rounded up to a whole grain at first,
 *   then grain after grain; a compressed record only to the next sector), holding the whole grain
 *   as the guest will read it: the backing image's bytes (unallocated grain of an image with a
 *   backing file) or zeros (otherwise, and always for a zeroed grain), with the new data laid
 *   over them. Compressed extents store the grain (only the part inside the extent, as QEMU)
 *   deflated in zlib format behind a grain marker {lba, size}, padded to a sector. Then the GT
 *   entry, then the redundant GT entry, as QEMU orders them; with write barriers the grain is
 *   flushed before any table points at it. A crash before the GT update leaks the grain only.
 * - data that is all zeros for a grain that reads as zeros already (zeroed, or unallocated with
 *   no backing file) allocates nothing; zeros over a whole unallocated grain of an image with a
 *   backing file become GTE 1 where the zeroed-grain flag allows (QEMU's zero write), else a
 *   grain of zeros is allocated. A zero write over an allocated grain writes zeros in place, or
 *   with mayUnmap over a whole grain of a zeroed-grain extent sets GTE 1 as QEMU does (the old
 *   grain stays in the file, unreferenced).
 *
 * Refused where QEMU could not write correctly: a grain whose GD entry is 0 (QEMU finds no GT and
 * would write the data to an unset offset), a GT or redundant GT that is missing or lies outside
 * [header end, overHead), a new grain past 2^32 sectors (VMDK_EXTENT_MAX_SECTORS).
 */
import { deflateSync } from 'node:zlib';
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import { SECTOR_SIZE } from '../../util/units.js';
import { GRAIN_MARKER_BYTES, GTE_ZEROED, type SparseExtent, type SparseGeometry } from './sparse-extent.js';
import { allZero } from '../write-common.js';

/** QEMU's VMDK_EXTENT_MAX_SECTORS: grain sectors are 32-bit GT entries. */
const MAX_EXTENT_SECTORS = 2 ** 32;

/** What the grain writer needs from the image around it. */
export interface GrainHost {
  filename: string;
  /** Reads what lies below the image (undefined: no backing file). Throws when it cannot. */
  backing: ((offset: number, length: number) => Promise<Uint8Array>) | undefined;
  barriers: boolean;
}

/** One piece of a request inside one grain: `data` (null: zeros) at byte `inGrain` of grain `grain`. */
export interface GrainPiece {
  grain: number;
  inGrain: number;
  length: number;
  data: Uint8Array | null;
  mayUnmap: boolean;
}

/** The write state of one sparse extent. */
export class GrainWriter {
  private nextSector: number | undefined;
  private readonly rgdCache = new Map<number, number>();
  private readonly g: SparseGeometry;

  /** `base`: guest byte offset of the extent's first byte. */
  constructor(
    readonly sparse: SparseExtent,
    private readonly base: number,
    private readonly host: GrainHost,
  ) {
    this.g = sparse.geometry;
  }

  private get storage(): Storage {
    return this.sparse.storage;
  }

  private fail(code: 'UNSUPPORTED_IMAGE' | 'CORRUPT_IMAGE' | 'SIZE_OUT_OF_RANGE', message: string, details: Record<string, unknown> = {}): never {
    throw new VmimgError(code, `vmdk extent '${this.storage.name}' of '${this.host.filename}': ${message}`, details);
  }

  /** A grain table (GT or redundant GT) must lie after the header, before the first grain and inside the file. */
  private checkTable(sector: number, what: string, l1Index: number): void {
    const start = sector * SECTOR_SIZE;
    const end = start + this.g.gtesPerGt * 4;
    const limit = Math.min(this.g.header.overheadSectors * SECTOR_SIZE, this.sparse.fileLength);
    if (sector === 0) this.fail('UNSUPPORTED_IMAGE', `the ${what} of GD entry ${l1Index} is not allocated: QEMU cannot allocate grains there either`, { l1Index });
    if (start < SECTOR_SIZE || end > limit) {
      this.fail('CORRUPT_IMAGE', `the ${what} of GD entry ${l1Index} at byte ${start} is not inside the table area [512, ${limit})`, { l1Index, offset: start });
    }
  }

  /** The redundant GD entry `index` (read once; the RGD's range was checked at open). */
  private async rgdEntry(index: number): Promise<number> {
    let v = this.rgdCache.get(index);
    if (v === undefined) {
      const at = this.g.rgdOffsetBytes + index * 4;
      const b = at + 4 <= this.sparse.fileLength ? await this.storage.read(at, 4) : new Uint8Array(4);
      v = new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true);
      this.rgdCache.set(index, v);
    }
    return v;
  }

  /** Writes GT entry (and the redundant copy) for grain `grain`: QEMU's vmdk_L2update. */
  private async setGte(l1Index: number, gtSector: number, l2Index: number, value: number): Promise<void> {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, value >>> 0, true);
    let backup = 0;
    if (this.g.rgdOffsetBytes !== 0) {
      backup = await this.rgdEntry(l1Index);
      this.checkTable(backup, 'redundant grain table', l1Index);
    }
    await this.storage.write(gtSector * SECTOR_SIZE + l2Index * 4, bytes);
    this.sparse.noteGte(gtSector, l2Index, value);
    if (backup !== 0) await this.storage.write(backup * SECTOR_SIZE + l2Index * 4, bytes);
  }

  /** Where the next grain goes (QEMU's next_cluster_sector), in sectors. */
  private async freeSector(): Promise<number> {
    if (this.nextSector === undefined) {
      const sectors = Math.ceil((await this.storage.size()) / SECTOR_SIZE);
      this.nextSector = Math.ceil(sectors / this.g.grainSectors) * this.g.grainSectors;
    }
    return this.nextSector;
  }

  /** Appends `bytes` at the free sector; returns that sector and moves the free sector past them. */
  private async append(bytes: Uint8Array, advance: number): Promise<number> {
    const at = await this.freeSector();
    if (at + advance > MAX_EXTENT_SECTORS) this.fail('SIZE_OUT_OF_RANGE', `the extent file is full: a grain at sector ${at} does not fit a 32-bit grain table entry`, { sector: at });
    await this.storage.write(at * SECTOR_SIZE, bytes);
    this.nextSector = at + advance;
    this.sparse.grow(at * SECTOR_SIZE + bytes.length);
    if (this.host.barriers) await this.storage.flush();
    return at;
  }

  async write(p: GrainPiece): Promise<void> {
    const g = this.g;
    const grainBytes = this.sparse.grainBytes;
    const grainStart = p.grain * grainBytes;
    const sector = grainStart / SECTOR_SIZE;
    const l1Index = this.sparse.l1IndexOf(sector);
    const l2Index = p.grain % g.gtesPerGt;
    const gtSector = await this.sparse.gdEntry(l1Index);
    let gte = 0;
    if (gtSector !== 0) {
      this.checkTable(gtSector, 'grain table', l1Index);
      gte = (await this.sparse.grainTable(gtSector)).entries[l2Index]!;
    }
    const zeroed = gte === GTE_ZEROED && g.zeroGrain;
    const isZero = p.data === null || allZero(p.data);
    const whole = p.inGrain === 0 && p.length === grainBytes;

    if (gte !== 0 && !zeroed) {
      if (g.compressed) this.fail('UNSUPPORTED_IMAGE', `Could not write to allocated cluster for streamOptimized (grain ${p.grain} is already written; QEMU refuses this too)`, { grain: p.grain });
      const at = gte * SECTOR_SIZE;
      if (gte < g.header.overheadSectors || at >= this.sparse.fileLength || at + grainBytes > Number.MAX_SAFE_INTEGER) {
        this.fail('CORRUPT_IMAGE', `grain ${p.grain} has grain table entry ${gte}, which is not a grain of the file (overHead ${g.header.overheadSectors} sectors, file ${this.sparse.fileLength} bytes)`, { grain: p.grain, gte });
      }
      if (p.data === null && p.mayUnmap && whole && g.zeroGrain) return this.setGte(l1Index, gtSector, l2Index, GTE_ZEROED);
      await this.writeSpan(at + p.inGrain, p.data, p.length);
      return;
    }

    const needBacking = !zeroed && this.host.backing !== undefined;
    if (isZero && !needBacking) return;
    if (isZero && whole && g.zeroGrain && gtSector !== 0) return this.setGte(l1Index, gtSector, l2Index, GTE_ZEROED);
    if (gtSector === 0) this.checkTable(0, 'grain table', l1Index);

    // The whole grain as the guest will read it (only the part inside the extent for a compressed one).
    const inExtent = Math.min(grainBytes, this.sparse.capacityBytes - grainStart);
    const grain = new Uint8Array(g.compressed ? inExtent : grainBytes);
    if (needBacking && !(p.inGrain === 0 && p.length >= inExtent)) grain.set(await this.host.backing!(this.base + grainStart, inExtent));
    if (p.data) grain.set(p.data, p.inGrain);
    else grain.fill(0, p.inGrain, p.inGrain + p.length);

    let at: number;
    if (g.compressed) {
      const deflated = deflateSync(grain);
      if (deflated.length > 2 * grainBytes) this.fail('UNSUPPORTED_IMAGE', `grain ${p.grain} compresses to ${deflated.length} bytes, more than QEMU reads back`, { grain: p.grain });
      const record = new Uint8Array(Math.ceil((GRAIN_MARKER_BYTES + deflated.length) / SECTOR_SIZE) * SECTOR_SIZE);
      const v = new DataView(record.buffer);
      v.setBigUint64(0, BigInt((this.base + grainStart) / SECTOR_SIZE), true);
      v.setUint32(8, deflated.length, true);
      record.set(deflated, GRAIN_MARKER_BYTES);
      at = await this.append(record, record.length / SECTOR_SIZE);
    } else {
      at = await this.append(grain, g.grainSectors);
    }
    await this.setGte(l1Index, gtSector, l2Index, at);
  }

  /** Writes `data` (or `length` zeros) at byte `at` of the extent file. */
  private async writeSpan(at: number, data: Uint8Array | null, length: number): Promise<void> {
    if (data) {
      await this.storage.write(at, data);
      return;
    }
    const zeros = new Uint8Array(Math.min(length, 1 << 20));
    for (let done = 0; done < length; done += zeros.length) await this.storage.write(at + done, zeros.subarray(0, Math.min(zeros.length, length - done)));
  }
}
