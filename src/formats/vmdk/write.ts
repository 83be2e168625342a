/**
 * Writing opened vmdk images in place (the optional write side of the Image contract, see
 * src/formats/image.ts), for `convert -n` and the virtio-blk device model; QEMU 7.2
 * block/vmdk.c vmdk_pwritev / vmdk_co_pwrite_zeroes.
 *
 * - Requests are split at extent and grain boundaries. Sparse extents (monolithicSparse,
 *   twoGbMaxExtentSparse, streamOptimized) go through write-grain.ts; flat extents
 *   (monolithicFlat, twoGbMaxExtentFlat, vmfs) are written straight into their file at the
 *   line's offset, the file opened through the chain Policy like every extent.
 * - The first write or zero write after open gives the descriptor a new random CID, as QEMU does
 *   (write-cid.ts), before any data is written.
 * - Images with a backing file (parentFileNameHint) read the chain's bytes for the rest of a
 *   grain they allocate, through the reader the chain layer sets (setBackingReader).
 * - Calls run one after another; allocation state is never shared between two in flight.
 *
 * Refused at open (vmdkWriteRefusal), where QEMU refuses or would damage the image:
 * version 3 sparse extents that are not compressed (QEMU: "VMDK version 3 must be read only"),
 * compressed extents without grain markers (QEMU fails every such write), streamOptimized files
 * whose tables are described by a footer (gdOffset GD_AT_END: a grain appended after the footer
 * would hide it from the next open), and COWD (vmfsSparse) extents, whose free-sector field vmimg
 * does not maintain.
 */
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import { SECTOR_SIZE } from '../../util/units.js';
import type { BackingRead, WriteZeroesOptions } from '../image.js';
import type { VmdkExtent } from './extents.js';
import type { VmdkFacts } from './open.js';
import { GrainWriter } from './write-grain.js';
import { randomCid, writeCid, type CidTarget } from './write-cid.js';
import { checkWriteRange, serialQueue } from '../write-common.js';

/** Why the image cannot be written in place, or undefined. */
export function vmdkWriteRefusal(facts: VmdkFacts, extents: readonly VmdkExtent[]): string | undefined {
  if (facts.kind === 'cowd') return 'COWD (vmfsSparse) extents cannot be written by vmimg';
  for (const e of extents) {
    if (e.kind !== 'sparse') continue;
    const g = e.sparse.geometry;
    const name = e.name ?? e.path;
    if (g.header.magic === 'cowd') return `extent '${name}' is a COWD (vmfsSparse) extent, which vmimg cannot write`;
    if (g.header.version === 3 && !g.compressed) return `VMDK version 3 must be read only (extent '${name}')`;
    if (g.compressed && !g.hasMarker) return `extent '${name}' is compressed without grain markers, which QEMU cannot write either`;
    if (g.header.gdAtEnd) return `extent '${name}' is a streamOptimized stream whose grain directory is described by a footer; appending a grain would hide the footer`;
  }
  return undefined;
}

/** What the writer needs from the opened image. */
export interface VmdkWriteHost {
  filename: string;
  virtualSize: number;
  extents: readonly VmdkExtent[];
  /** True when the image names a backing file. */
  hasBacking: boolean;
  extentIndexAt(offset: number): number;
  /** The file of extent `index` (flat files opened through the policy); throws for a denied extent. */
  extentStorage(index: number): Promise<Storage>;
  cid: CidTarget;
  barriers: boolean;
}

const ZERO_CHUNK = 1 << 20;

export class VmdkWriter {
  /** Calls run one after another (grain allocation reads and moves the file's end). */
  private readonly serial = serialQueue();
  private backing: BackingRead | undefined;
  private cidUpdated = false;
  private readonly grains = new Map<number, GrainWriter>();
  /** Every extent file written so far (flushed by flush()). */
  private readonly touched = new Set<Storage>();

  constructor(private readonly host: VmdkWriteHost) {}

  setBackingReader(read: BackingRead): void {
    this.backing = read;
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    return this.serial(async () => {
      this.bounds(offset, data.length);
      await this.run(offset, data.length, (pos, n) => data.subarray(pos - offset, pos - offset + n), false);
    });
  }

  writeZeroes(offset: number, length: number, options?: WriteZeroesOptions): Promise<void> {
    return this.serial(async () => {
      this.bounds(offset, length);
      await this.run(offset, length, () => null, options?.mayUnmap ?? false);
    });
  }

  flush(): Promise<void> {
    return this.serial(async () => {
      for (const s of this.touched) await s.flush();
    });
  }

  /** Resolves when no call is in flight (before close). */
  idle(): Promise<void> {
    return this.serial(() => Promise.resolve()).catch(() => undefined);
  }

  private bounds(offset: number, length: number): void {
    checkWriteRange('vmdk', this.host.filename, this.host.virtualSize, offset, length);
  }

  /** Splits [offset, offset+length) at extent and grain boundaries; `piece` gives the data of a part (null: zeros). */
  private async run(offset: number, length: number, piece: (pos: number, n: number) => Uint8Array | null, mayUnmap: boolean): Promise<void> {
    if (length === 0) return;
    if (!this.cidUpdated) {
      await writeCid(this.host.cid, randomCid());
      if (this.host.barriers) await this.host.cid.storage.flush();
      this.touched.add(this.host.cid.storage);
      this.cidUpdated = true;
    }
    for (let pos = offset, end = offset + length; pos < end; ) {
      const index = this.host.extentIndexAt(pos);
      const e = this.host.extents[index]!;
      const base = e.startSector * SECTOR_SIZE;
      const extentEnd = Math.min(end, base + e.sectors * SECTOR_SIZE);
      const storage = await this.host.extentStorage(index);
      this.touched.add(storage);
      if (e.kind === 'flat') {
        await this.writeFlat(storage, e, pos - base, piece(pos, extentEnd - pos), extentEnd - pos);
        pos = extentEnd;
        continue;
      }
      if (e.kind !== 'sparse') throw new VmimgError('WRITE_FAILED', `vmdk extent '${e.name}' of '${this.host.filename}' cannot be written`, { name: e.name });
      const writer = this.grainWriter(index, e, base);
      const grainBytes = e.sparse.grainBytes;
      while (pos < extentEnd) {
        const rel = pos - base;
        const grain = Math.floor(rel / grainBytes);
        const inGrain = rel - grain * grainBytes;
        const n = Math.min(grainBytes - inGrain, extentEnd - pos);
        await writer.write({ grain, inGrain, length: n, data: piece(pos, n), mayUnmap });
        pos += n;
      }
    }
  }

  private grainWriter(index: number, e: VmdkExtent & { kind: 'sparse' }, base: number): GrainWriter {
    let w = this.grains.get(index);
    if (!w) {
      const backing = this.host.hasBacking ? (offset: number, length: number) => this.readBacking(offset, length) : undefined;
      w = new GrainWriter(e.sparse, base, { filename: this.host.filename, backing, barriers: this.host.barriers });
      this.grains.set(index, w);
    }
    return w;
  }

  private readBacking(offset: number, length: number): Promise<Uint8Array> {
    if (!this.backing) {
      throw new VmimgError('WRITE_FAILED', `vmdk image '${this.host.filename}' has a backing file that was not opened: a partial grain cannot be written without it`, { file: this.host.filename });
    }
    return this.backing(offset, length);
  }

  /** A flat extent: guest byte rel of the extent is file byte flatStart + rel (QEMU writes past the file's end too). */
  private async writeFlat(storage: Storage, e: VmdkExtent & { kind: 'flat' }, rel: number, data: Uint8Array | null, length: number): Promise<void> {
    const host = e.flatStart + BigInt(rel);
    if (host < 0n || host + BigInt(length) > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new VmimgError('CORRUPT_IMAGE', `vmdk flat extent '${e.name}' of '${this.host.filename}' starts at byte ${e.flatStart}, outside any file`, { name: e.name, offset: e.flatStart.toString() });
    }
    const at = Number(host);
    if (data) {
      await storage.write(at, data);
      return;
    }
    // Past the file's end the extent reads as zeros already.
    const stop = Math.min(at + length, Math.max(at, await storage.size()));
    const zeros = new Uint8Array(Math.min(ZERO_CHUNK, Math.max(1, stop - at)));
    for (let k = at; k < stop; k += zeros.length) await storage.write(k, zeros.subarray(0, Math.min(zeros.length, stop - k)));
  }
}
