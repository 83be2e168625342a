/**
 * The qcow2 write path behind Image.write / writeZeroes / flush (contract in
 * src/formats/image.ts; what it does in docs/formats/qcow2.md "Writing"). Requests are split at
 * cluster boundaries into transactions of at most TXN_BYTES guest bytes (txn.ts), run one at a
 * time: calls are serialised, so allocation state is never shared between two in flight.
 *
 * Refused at open (writeRefusal): a data-file image naming no data file, the corrupt bit, the
 * dirty bit (refcounts may be stale under lazy_refcounts: repair first). External data files are
 * written through datafile-write.ts. Persistent dirty bitmaps are kept up to date as QEMU keeps
 * them (bitmap-live.ts): loaded and marked in use at open, dirtied by every write and
 * write-zeroes, stored at close. Unknown autoclear feature bits are cleared on
 * the first write, as the spec asks of a writer that does not know them.
 */
import { VmimgError } from '../../util/errors.js';
import { decodeUnit } from '../compression.js';
import type { BackingRead, Extent, WriteZeroesOptions } from '../image.js';
import type { BitmapToStore } from '../writer.js';
import { Allocator } from './alloc.js';
import { addBitmapsInPlace, checkBitmapsInPlace } from './bitmap-inplace.js';
import { checkLiveMemory, LiveBitmaps } from './bitmap-live.js';
import { checkBitmapClusters } from './bitmap-overlap.js';
import type { BitmapEntry } from './bitmaps.js';
import { AUTOCLEAR_BITMAPS, AUTOCLEAR_DATA_FILE_RAW, INCOMPAT_CORRUPT, INCOMPAT_DIRTY } from './constants.js';
import { subclusterMask } from './cow.js';
import { zeroRawDataFile } from './datafile-write.js';
import type { Storage } from '../../storage/types.js';
import type { Qcow2State, TableReader } from './state.js';
import { runTxn, type Piece, type TxnHost } from './txn.js';

/** Guest bytes per transaction (at least one cluster). */
const TXN_BYTES = 8 * 1024 * 1024;
/** Header offset of autoclear_features (u64, version 3). */
const HEADER_AUTOCLEAR = 88;

/** Why this image may not be opened for writing, or undefined. */
export function writeRefusal(s: Qcow2State): VmimgError | undefined {
  const name = s.name;
  const refuse = (message: string): VmimgError => new VmimgError('UNSUPPORTED_IMAGE', `qcow2 image '${name}': ${message}`, { file: name });
  const incompat = s.vh.header.incompatibleFeatures;
  if (!s.storage.writable) return new VmimgError('WRITE_FAILED', `qcow2 image '${name}' must be opened writable to be written`, { file: name });
  if ((incompat & INCOMPAT_CORRUPT) !== 0n) {
    return new VmimgError('CORRUPT_IMAGE', `qcow2 image '${name}' is marked corrupt and cannot be opened for writing; repair it with 'check -r all'`, { file: name });
  }
  if ((incompat & INCOMPAT_DIRTY) !== 0n) {
    return refuse("was not closed cleanly (dirty bit set: with lazy_refcounts its refcounts may be stale); repair it first with 'check -r all'");
  }
  if (s.hasDataFile && s.dataFileName === undefined) return refuse("'data-file' is required for this image");
  return undefined;
}

export interface WriterSource {
  s: Qcow2State;
  tables: TableReader;
  /** This layer's map (Image.map without the range checks). */
  map(start: number, length: number): Promise<Extent[]>;
  barriers: boolean;
  /** The external data file (opened through the chain policy), for images that have one. */
  dataStorage?(): Promise<Storage>;
}

export class Qcow2Writer {
  private queue: Promise<unknown> = Promise.resolve();
  private alloc: Allocator | undefined;
  private backing: BackingRead | undefined;
  private unit: { offset: number; bytes: Uint8Array } | undefined;
  private bitmaps: LiveBitmaps | undefined;

  constructor(private readonly src: WriterSource) {}

  setBackingReader(read: BackingRead): void {
    this.backing = read;
  }

  private get s(): Qcow2State {
    return this.src.s;
  }

  /**
   * Runs `fn` (a check or repair, or close) with no write in flight; cached refcounts are
   * reloaded afterwards, since a repair may rewrite them.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.serial(async () => {
      try {
        return await fn();
      } finally {
        this.alloc = undefined;
      }
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private check(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.s.virtualSize) {
      throw new VmimgError('OUT_OF_BOUNDS', `Write of ${length} bytes at ${offset} is outside the image (virtual size ${this.s.virtualSize})`, { offset, length });
    }
  }

  private barrier = async (): Promise<void> => {
    if (this.src.barriers) await this.s.storage.flush();
  };

  private async host(): Promise<TxnHost> {
    if (!this.alloc) {
      const h = this.s.vh.header;
      const known = AUTOCLEAR_BITMAPS | AUTOCLEAR_DATA_FILE_RAW;
      if (this.s.version >= 3 && (h.autoclearFeatures & ~known) !== 0n) {
        const bytes = new Uint8Array(8);
        new DataView(bytes.buffer).setBigUint64(0, h.autoclearFeatures & known);
        await this.s.storage.write(HEADER_AUTOCLEAR, bytes);
        h.autoclearFeatures &= known;
      }
      this.alloc = await Allocator.load(this.s, this.barrier);
    }
    // With a data file, guest data there must be durable before an L2 entry points at it.
    const data = this.s.hasDataFile ? await this.src.dataStorage?.() : undefined;
    const barrier = data && this.src.barriers ? async () => (await data.flush(), this.barrier()) : this.barrier;
    return { s: this.s, tables: this.src.tables, alloc: this.alloc, readGuest: (o, n) => this.readGuest(o, n), barrier, data };
  }

  /**
   * Adds persistent bitmaps: to an image that has none at once (bitmap-inplace.ts); to the
   * bitmaps of an image that has some, stored with them at close (bitmap-live.ts).
   */
  addBitmaps(bitmaps: readonly BitmapToStore[]): Promise<void> {
    return this.serial(async () => {
      if (this.bitmaps) return this.bitmaps.add(bitmaps);
      const h = await this.host();
      await addBitmapsInPlace(this.s, h.alloc, this.barrier, bitmaps);
    });
  }

  /**
   * Throws when addBitmaps could not store bitmaps in this image (see checkBitmapsInPlace); an
   * image that already has bitmaps has its extension, so the live store has room.
   */
  checkAddBitmaps(): Promise<void> {
    return this.serial(async () => {
      if (!this.bitmaps) await checkBitmapsInPlace(this.s);
    });
  }

  /** At open, with the image's bitmap directory: loads the bitmaps and marks them in use. */
  openBitmaps(entries: BitmapEntry[]): Promise<void> {
    return this.serial(async () => {
      if (!this.s.bitmaps) return;
      checkLiveMemory(this.s, entries); // before the ownership scan reads every table
      const h = await this.host();
      await checkBitmapClusters(this.s, this.src.tables, h.alloc, entries);
      this.bitmaps = await LiveBitmaps.open(this.s, entries, this.barrier);
    });
  }

  /** At close: stores the bitmaps (new clusters, directory, header), frees the old ones. */
  closeBitmaps(): Promise<void> {
    return this.serial(async () => {
      const live = this.bitmaps;
      if (!live?.needsStore) return;
      this.bitmaps = undefined;
      const h = await this.host();
      await live.store(h.alloc, this.barrier);
      await this.s.storage.flush();
    });
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    this.check(offset, data.length);
    return this.serial(async () => {
      this.bitmaps?.dirty(offset, data.length);
      const h = await this.host();
      const cs = this.s.clusterSize;
      for (const [from, to] of chunks(offset, offset + data.length, cs)) {
        const pieces: Piece[] = [];
        for (let pos = from; pos < to; ) {
          const guest = pos - (pos % cs);
          const end = Math.min(to, guest + cs);
          pieces.push({ kind: 'data', guest, a: pos - guest, data: data.subarray(pos - offset, end - offset) });
          pos = end;
        }
        await this.txn(h, pieces);
      }
    });
  }

  /** One transaction; the decoded-unit cache does not outlive it (freed clusters are reused). */
  private async txn(h: TxnHost, pieces: Piece[]): Promise<void> {
    try {
      await runTxn(h, pieces);
    } finally {
      this.unit = undefined;
    }
  }

  /**
   * v3: whole clusters become zero clusters (planZeroCluster), whole subclusters of extended-L2
   * clusters get their zero bits; the remaining partial pieces are written as zero bytes unless
   * they already read as zeros. v2 (no zero flag): zero bytes wherever the range does not read
   * as zeros already (an unallocated cluster without a backing file stays unallocated).
   */
  writeZeroes(offset: number, length: number, options: WriteZeroesOptions = {}): Promise<void> {
    this.check(offset, length);
    return this.serial(async () => {
      this.bitmaps?.dirty(offset, length);
      const h = await this.host();
      const s = this.s;
      await zeroRawDataFile(s, h.data, offset, length);
      const cs = s.clusterSize;
      const ss = s.subclusterSize;
      const vs = s.virtualSize;
      const noBacking = s.vh.backingFile === undefined;
      for (const [from, to] of chunks(offset, offset + length, cs)) {
        const heads: Piece[] = [];
        const tails: Piece[] = [];
        const meta: Piece[] = [];
        const bytes = async (into: Piece[], guest: number, a: number, b: number): Promise<void> => {
          if (b > a && !(await this.readsZero(guest + a, b - a))) into.push({ kind: 'data', guest, a, data: new Uint8Array(b - a) });
        };
        for (let pos = from; pos < to; ) {
          const guest = pos - (pos % cs);
          const end = Math.min(to, guest + cs);
          const a = pos - guest;
          const b = end - guest;
          const toEnd = end === vs;
          pos = end;
          if (s.version < 3) {
            await bytes(heads, guest, a, b);
          } else if (a === 0 && (b === cs || toEnd)) {
            meta.push({ kind: 'zero', guest, mayUnmap: options.mayUnmap ?? false, keepUnallocated: noBacking });
          } else if (!s.extendedL2 || (await this.compressed(guest))) {
            await bytes(heads, guest, a, b);
          } else {
            const first = Math.ceil(a / ss);
            const last = toEnd ? Math.ceil(b / ss) : Math.floor(b / ss);
            if (first >= last) {
              await bytes(heads, guest, a, b);
              continue;
            }
            await bytes(heads, guest, a, first * ss);
            await bytes(tails, guest, Math.max(a, last * ss), b);
            meta.push({ kind: 'zero-mask', guest, mask: subclusterMask(first, last) });
          }
        }
        for (const pieces of [heads, tails, meta]) if (pieces.length > 0) await this.txn(h, pieces);
      }
    });
  }

  flush(): Promise<void> {
    return this.serial(async () => {
      if (this.alloc) await this.alloc.writeDirty();
      if (this.alloc && this.s.hasDataFile) await (await this.src.dataStorage?.())?.flush();
      await this.s.storage.flush();
    });
  }

  private async readsZero(offset: number, length: number): Promise<boolean> {
    const noBacking = this.s.vh.backingFile === undefined;
    return (await this.src.map(offset, length)).every((e) => e.kind === 'zero' || (e.kind === 'unallocated' && noBacking));
  }

  private async compressed(guest: number): Promise<boolean> {
    const n = Math.min(this.s.clusterSize, this.s.virtualSize - guest);
    return (await this.src.map(guest, n)).some((e) => e.kind === 'compressed');
  }

  /** What the guest reads now (this layer over the backing reader); zeros past the virtual size. */
  async readGuest(offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    const n = Math.max(0, Math.min(length, this.s.virtualSize - offset));
    if (n === 0) return out;
    for (const e of await this.src.map(offset, n)) {
      const at = e.start - offset;
      if (e.kind === 'data') await e.storage.readInto(e.offset, out.subarray(at, at + e.length));
      else if (e.kind === 'compressed') {
        if (this.unit?.offset !== e.offset) {
          const raw = await e.storage.read(e.offset, e.compressedLength);
          this.unit = { offset: e.offset, bytes: decodeUnit(e.codec, raw, e.unitLength, `${this.s.name} at guest offset ${e.unitStart}`) };
        }
        out.set(this.unit.bytes.subarray(e.start - e.unitStart, e.start - e.unitStart + e.length), at);
      } else if (e.kind === 'unallocated' && this.s.vh.backingFile !== undefined) {
        if (!this.backing) {
          throw new VmimgError('BACKING_UNREADABLE', `qcow2 image '${this.s.name}': a partial-cluster write needs its backing file, which was not opened (open the image with its chain)`, { file: this.s.name });
        }
        out.set(await this.backing(e.start, e.length), at);
      }
    }
    return out;
  }
}

/** [from, to) split at multiples of max(TXN_BYTES, cluster size). */
function chunks(from: number, to: number, clusterSize: number): [number, number][] {
  const step = Math.max(TXN_BYTES, clusterSize);
  const out: [number, number][] = [];
  for (let pos = from; pos < to; ) {
    const end = Math.min(to, pos - (pos % step) + step);
    out.push([pos, end]);
    pos = end;
  }
  return out;
}
