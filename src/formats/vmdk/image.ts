/**
 * Reading a vmdk (VMware "Virtual Disk Format 5.0"; behaviour of qemu-img 7.2's block/vmdk.c):
 * open validates the header or descriptor exactly as readHeader does (open.ts), builds the
 * extent list (extents.ts) and answers map over it:
 *
 * - sparse extents through their grain directory and tables (sparse-extent.ts): data at the
 *   grain's host offset, zeroed grains as zero, unallocated grains as unallocated (the backing
 *   file named by parentFileNameHint, format vmdk, shows through), streamOptimized grains as
 *   compressed zlib units of one grain (the disk's last grain may be shorter: QEMU writes only
 *   the bytes inside the disk);
 * - flat extents as their file's bytes from the line's offset on. QEMU looks below a flat
 *   extent (BDRV_BLOCK_RECURSE): where the file has a hole, or past its end, the range is
 *   reported as data *and* zero, with its offset.
 *
 * The image's own file never goes through the policy; every other file does, lazily for flat
 * extents. CIDs, the hint and createType come from readHeader's reading of the descriptor.
 */
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import { SECTOR_SIZE } from '../../util/units.js';
import type { BackingRead, CheckFix, CheckResult, Extent, FileReference, Image, ImageInfoFields, OpenOptions, WriteZeroesOptions } from '../image.js';
import { checkVmdk } from './check.js';
import { descriptorExtents, vmdk4Geometry, cowdGeometry, type VmdkExtent } from './extents.js';
import { vmdkInfoFields } from './info.js';
import { readVmdkFacts, type VmdkFacts } from './open.js';
import { vmdkSafetyIssues } from './safety.js';
import { SparseExtent } from './sparse-extent.js';
import { VmdkWriter, vmdkWriteRefusal } from './write.js';
import type { CidTarget } from './write-cid.js';

export async function openVmdk(storage: Storage, options: OpenOptions): Promise<Image> {
  const length = await storage.size();
  const facts = await readVmdkFacts(storage);
  const opened: Storage[] = [];
  try {
    let extents: VmdkExtent[];
    if (facts.kind === 'descriptor') {
      extents = await descriptorExtents(facts.extents!, options, opened);
    } else {
      const gdAtEnd = facts.kind === 'sparse' && (await storage.read(56, 8)).every((b) => b === 0xff);
      const geometry = facts.kind === 'sparse' ? vmdk4Geometry(facts.sparse!, length, gdAtEnd) : cowdGeometry(facts.cowd!);
      const sparse = new SparseExtent(storage, length, geometry);
      extents = [{ kind: 'sparse', type: '', path: options.filename, startSector: 0, sectors: geometry.capacitySectors, sparse, own: true }];
    }
    const safety = await vmdkSafetyIssues(storage, length);
    const image = new VmdkImage(storage, options, facts, extents, opened, safety);
    if ((options.writable ?? false) && !(options.check ?? false)) image.openForWriting();
    return image;
  } catch (e) {
    for (const s of opened) await s.close().catch(() => undefined);
    throw e;
  }
}

export class VmdkImage implements Image {
  readonly format = 'vmdk';
  readonly filename: string;
  readonly virtualSize: number;
  readonly backing?: { name: string; format: string };
  /** Flat extent files opened so far, by extent index. */
  private readonly flatFiles = new Map<number, Promise<Storage>>();
  private writer: VmdkWriter | undefined;

  constructor(
    readonly storage: Storage,
    private readonly options: OpenOptions,
    readonly facts: VmdkFacts,
    readonly extents: readonly VmdkExtent[],
    private readonly opened: Storage[],
    private readonly safety: string[],
  ) {
    this.filename = options.filename;
    const last = extents[extents.length - 1];
    this.virtualSize = last ? (last.startSector + last.sectors) * SECTOR_SIZE : 0;
    // An empty hint names no file: QEMU then has no backing file either.
    if (facts.parentFileNameHint) this.backing = { name: facts.parentFileNameHint, format: 'vmdk' };
  }

  /** True when opened writable (see write.ts for what is written and what is refused). */
  get writable(): boolean {
    return this.writer !== undefined;
  }

  /** Sets up the write path, or refuses (UNSUPPORTED_IMAGE) an image vmimg cannot write in place. */
  openForWriting(): void {
    const refusal = vmdkWriteRefusal(this.facts, this.extents);
    if (refusal) throw new VmimgError('UNSUPPORTED_IMAGE', `vmdk image '${this.filename}' cannot be opened for writing: ${refusal}`, { file: this.filename });
    if (!this.storage.writable) throw new VmimgError('WRITE_FAILED', `vmdk image '${this.filename}' must be opened writable to be written`, { file: this.filename });
    this.writer = new VmdkWriter({
      filename: this.filename,
      virtualSize: this.virtualSize,
      extents: this.extents,
      hasBacking: this.backing !== undefined,
      extentIndexAt: (offset) => this.extentIndexAt(offset),
      extentStorage: (index) => this.extentStorage(index),
      cid: this.cidTarget(),
      barriers: this.options.writeBarriers ?? true,
    });
  }

  /**
   * Where the CID lives: the whole descriptor file, or the embedded descriptor of a sparse file
   * (its header's descriptor area, cut before the first table and grain).
   */
  private cidTarget(): CidTarget {
    if (this.facts.kind !== 'sparse') return { storage: this.storage, kind: 'file' };
    const h = this.facts.sparse!;
    const own = this.extents[0];
    if (h.descriptorOffset === 0n || !own || own.kind !== 'sparse') return { storage: this.storage, kind: 'sparse' };
    const g = own.sparse.geometry;
    const start = h.descriptorOffset * 512n;
    let end = (h.descriptorOffset + h.descriptorSize) * 512n;
    for (const limit of [g.l1OffsetBytes, g.rgdOffsetBytes, g.header.overheadSectors * SECTOR_SIZE]) {
      if (limit > 0 && BigInt(limit) < end) end = BigInt(limit);
    }
    if (end <= start || end > BigInt(Number.MAX_SAFE_INTEGER)) return { storage: this.storage, kind: 'sparse' };
    return { storage: this.storage, kind: 'sparse', area: { start: Number(start), end: Number(end) } };
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    return this.writerOrFail().write(offset, data);
  }

  async writeZeroes(offset: number, length: number, options?: WriteZeroesOptions): Promise<void> {
    return this.writerOrFail().writeZeroes(offset, length, options);
  }

  async flush(): Promise<void> {
    if (this.writer) await this.writer.flush();
  }

  setBackingReader(read: BackingRead): void {
    this.writer?.setBackingReader(read);
  }

  private writerOrFail(): VmdkWriter {
    if (!this.writer) throw new VmimgError('WRITE_FAILED', `vmdk image '${this.filename}' was not opened for writing`, { file: this.filename });
    return this.writer;
  }

  references(): FileReference[] {
    return this.extents.filter((e) => e.name !== undefined).map((e) => ({ kind: 'extent' as const, name: e.name! }));
  }

  /** The extent holding guest byte `offset` (< virtualSize), by binary search. */
  extentIndexAt(offset: number): number {
    const sector = Math.floor(offset / SECTOR_SIZE);
    let lo = 0;
    let hi = this.extents.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.extents[mid]!.startSector <= sector) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  async map(start: number, length: number): Promise<Extent[]> {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(length) || start < 0 || length < 0 || start + length > this.virtualSize) {
      throw new VmimgError('OUT_OF_BOUNDS', `map of ${length} bytes at ${start} is outside '${this.filename}' (virtual size ${this.virtualSize})`, { start, length });
    }
    const out: Extent[] = [];
    for (let pos = start, end = start + length; pos < end; ) {
      const index = this.extentIndexAt(pos);
      const e = this.extents[index]!;
      const base = e.startSector * SECTOR_SIZE;
      const n = Math.min(end, base + e.sectors * SECTOR_SIZE) - pos;
      if (e.kind === 'sparse') await e.sparse.map(pos - base, n, base, out);
      else if (e.kind === 'flat') await this.mapFlat(index, e, pos - base, n, pos, out);
      else throw denied(e);
      pos += n;
    }
    return out;
  }

  /** A flat extent's bytes, with the holes of its file reported as data and zero (QEMU's recursion). */
  private async mapFlat(index: number, e: VmdkExtent & { kind: 'flat' }, rel: number, length: number, guest: number, out: Extent[]): Promise<void> {
    const host = e.flatStart + BigInt(rel);
    if (host < 0n || host + BigInt(length) > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new VmimgError('CORRUPT_IMAGE', `vmdk flat extent '${e.name}' of '${this.filename}' starts at byte ${e.flatStart}, outside any file`, { name: e.name, offset: e.flatStart.toString() });
    }
    const storage = await this.flatFile(index, e);
    for (let done = 0; done < length; ) {
      const offset = Number(host) + done;
      const st = storage.blockStatus ? await storage.blockStatus(offset, length - done) : { data: true, length: length - done };
      const n = Math.min(Math.max(1, st.length), length - done);
      const prev = out[out.length - 1];
      const kind = st.data ? 'data' : 'zero';
      if (prev && prev.kind === kind && 'storage' in prev && prev.storage === storage && prev.start + prev.length === guest + done && prev.offset! + prev.length === offset) {
        prev.length += n;
      } else {
        out.push(st.data ? { kind: 'data', start: guest + done, length: n, storage, offset } : { kind: 'zero', start: guest + done, length: n, storage, offset, data: true });
      }
      done += n;
    }
  }

  /** Opens (once) the file of flat extent `index` through the policy; failures are not cached. */
  private flatFile(index: number, e: VmdkExtent): Promise<Storage> {
    let p = this.flatFiles.get(index);
    if (!p) {
      p = this.options.openReference({ kind: 'extent', name: e.name! }).then((s) => {
        this.opened.push(s);
        return s;
      });
      p.catch(() => this.flatFiles.delete(index));
      this.flatFiles.set(index, p);
    }
    return p;
  }

  /** The file holding extent `index` (opened through the policy if needed). */
  async extentStorage(index: number): Promise<Storage> {
    const e = this.extents[index]!;
    if (e.kind === 'sparse') return e.sparse.storage;
    if (e.kind === 'flat') return this.flatFile(index, e);
    throw denied(e);
  }

  info(): ImageInfoFields {
    return vmdkInfoFields(this.facts, this.extents);
  }

  safetyIssues(): string[] {
    return [...this.safety];
  }

  /**
   * QEMU's vmdk_get_allocated_file_size: the image file plus every extent file that is not the
   * image file (one per extent, repeats included). An extent the policy denies is not opened
   * and adds nothing; a missing one fails, as qemu-img info fails on it.
   */
  async allocatedSize(): Promise<number> {
    let total = await this.storage.allocatedSize();
    for (const [i, e] of this.extents.entries()) {
      if (e.kind === 'denied' || (e.kind === 'sparse' && e.own)) continue;
      let s: Storage;
      try {
        s = await this.extentStorage(i);
      } catch (err) {
        if (err instanceof VmimgError && err.code === 'REFERENCE_DENIED') continue;
        throw err;
      }
      total += await s.allocatedSize();
    }
    return total;
  }

  check(fix: CheckFix, report: (line: string) => void): Promise<CheckResult> {
    return checkVmdk(this, fix, report);
  }

  async close(): Promise<void> {
    await this.writer?.idle();
    await Promise.allSettled(this.flatFiles.values());
    for (const s of this.opened.splice(0)) await s.close().catch(() => undefined);
    await this.storage.close();
  }
}

/** A fresh REFERENCE_DENIED for an extent the policy refused at open. */
export function denied(e: VmdkExtent & { kind: 'denied' }): VmimgError {
  return new VmimgError('REFERENCE_DENIED', e.reason.message, { ...e.reason.details });
}
