/**
 * An opened qcow2 image (the Image contract of src/formats/image.ts): mapping through the L1/L2
 * tables (map.ts), `qemu-img info` fields (info.ts), check and repair (check*.ts, repair.ts).
 *
 * The external data file (spec "External data file", incompatible bit 2) is opened lazily through
 * the ReferenceOpener the first time a mapping needs its bytes, so `info` never touches it and
 * the chain Policy decides whether it may be opened at all. Note that QEMU opens a relative data
 * file name relative to its working directory; vmimg resolves it against the image's directory,
 * like backing files.
 *
 * What only some opens need loads on first use (start-up time): the write path for writable
 * opens, check and repair, snapshot tables, and bitmap bits.
 */
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import { checkMapRange } from '../extents.js';
import type { BackingRead, CheckFix, CheckResult, Extent, FileReference, Image, ImageInfoFields, OpenOptions, WriteZeroesOptions } from '../image.js';
import { BITMAP_FLAG_AUTO, BITMAP_FLAG_IN_USE, type BitmapEntry } from './bitmaps.js';
import { infoFields, qcow2SafetyIssues } from './info.js';
import { mapRange } from './map.js';
import type { BitmapBits, PersistentBitmap } from '../types.js';
import type { BitmapToStore } from '../writer.js';
import { openQcow2State } from './open.js';
import { RefcountReader } from './reftable.js';
import { TableReader, type Qcow2State } from './state.js';
import type { Qcow2Writer } from './write.js';

export async function openQcow2(storage: Storage, options: OpenOptions): Promise<Image> {
  const opened = await openQcow2State(storage, options.filename, { check: options.check ?? false });
  const { bitmaps } = opened;
  let state = opened.state;
  if (options.snapshot) {
    if (options.writable) throw new VmimgError('UNSUPPORTED_OPTION', `qcow2 image '${options.filename}': an internal snapshot is opened read-only`, { file: options.filename });
    state = (await import('./snapshot-load.js')).loadSnapshotTables(state, options.snapshot);
  }
  // The write path (write.ts) is for plain writable opens; check's repairs write on their own.
  const writable = (options.writable ?? false) && !(options.check ?? false);
  const write = writable ? await import('./write.js') : undefined;
  const refusal = write?.writeRefusal(state);
  if (refusal) throw refusal;
  return new Qcow2Image(state, bitmaps, options, write?.Qcow2Writer);
}

class Qcow2Image implements Image {
  readonly format = 'qcow2' as const;
  readonly filename: string;
  readonly storage: Storage;
  readonly virtualSize: number;
  readonly backing?: { name: string; format?: string };
  private readonly tables: TableReader;
  private data: Promise<Storage> | undefined;
  private metadataPrealloc: Promise<boolean> | undefined;
  private readonly writer: Qcow2Writer | undefined;
  readonly writable: boolean;

  constructor(
    private readonly s: Qcow2State,
    private readonly bitmaps: BitmapEntry[],
    private readonly options: OpenOptions,
    /** The write path's class (write.ts), given for a writable open. */
    Writer?: typeof Qcow2Writer,
  ) {
    this.filename = options.filename;
    this.storage = s.storage;
    this.virtualSize = s.virtualSize;
    if (s.vh.backingFile !== undefined) this.backing = { name: s.vh.backingFile, format: s.vh.backingFormat };
    this.tables = new TableReader(s);
    this.writable = Writer !== undefined;
    if (Writer) {
      const map = (start: number, length: number): Promise<Extent[]> => this.map(start, length);
      this.writer = new Writer({ s, tables: this.tables, map, barriers: options.writeBarriers ?? true, dataStorage: () => this.dataStorage() });
    }
  }

  private requireWriter(): Qcow2Writer {
    if (!this.writer) throw new VmimgError('WRITE_FAILED', `qcow2 image '${this.filename}' was not opened for writing`, { file: this.filename });
    return this.writer;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    return this.requireWriter().write(offset, data);
  }

  async writeZeroes(offset: number, length: number, options?: WriteZeroesOptions): Promise<void> {
    return this.requireWriter().writeZeroes(offset, length, options);
  }

  async flush(): Promise<void> {
    if (this.writer) await this.writer.flush();
  }

  setBackingReader(read: BackingRead): void {
    this.writer?.setBackingReader(read);
  }

  references(): FileReference[] {
    return this.s.hasDataFile && this.s.dataFileName !== undefined ? [{ kind: 'data-file', name: this.s.dataFileName }] : [];
  }

  /** QEMU refuses to open (for I/O) an image with the data-file bit but no data file name. */
  private requireDataFileName(): void {
    if (this.s.hasDataFile && this.s.dataFileName === undefined) {
      throw new VmimgError('CORRUPT_IMAGE', `qcow2 image '${this.filename}': 'data-file' is required for this image`, { file: this.filename });
    }
  }

  async map(start: number, length: number): Promise<Extent[]> {
    checkMapRange('qcow2', this.filename, this.virtualSize, start, length);
    this.requireDataFileName();
    if (length === 0) return [];
    return mapRange({ s: this.s, tables: this.tables, dataStorage: () => this.dataStorage(), recurse: () => this.recurse() }, start, length);
  }

  /** The storage data clusters live in: the image file, or the external data file (opened once). */
  private dataStorage(): Promise<Storage> {
    if (!this.s.hasDataFile) return Promise.resolve(this.s.storage);
    const name = this.s.dataFileName!;
    if (!this.data) {
      this.data = this.options.openReference({ kind: 'data-file', name });
      this.data.catch(() => (this.data = undefined));
    }
    return this.data;
  }

  /**
   * qcow2_detect_metadata_preallocation(): more clusters have a refcount than the file has
   * allocated blocks for (with 10 % slack), so data clusters may be holes worth reporting.
   */
  private recurse(): Promise<boolean> {
    this.metadataPrealloc ??= (async () => {
      const s = this.s;
      if (!s.storage.blockStatus && !s.hasDataFile) return false;
      try {
        const fileLength = await s.storage.size();
        const realClusters = Math.floor((await s.storage.allocatedSize()) / s.clusterSize);
        const threshold = Math.max(Math.floor((realClusters * 10) / 9), realClusters + 2);
        const end = Math.ceil(fileLength / s.clusterSize);
        const refs = new RefcountReader(s.storage, s.clusterBits, s.refcountOrder, s.reftableOffset, s.reftableEntries);
        return (await refs.countUsed(end, threshold)) >= threshold;
      } catch {
        return false;
      }
    })();
    return this.metadataPrealloc;
  }

  /**
   * Version 3 only (qcow2_supports_persistent_dirty_bitmap); none when the extension was
   * dropped (autoclear bit clear).
   */
  persistentBitmaps(): PersistentBitmap[] | undefined {
    if (this.s.version < 3) return undefined;
    return this.bitmaps.map((b) => ({
      name: b.name,
      ...(Buffer.from(b.name, 'utf8').equals(b.nameBytes) ? {} : { nameBytes: b.nameBytes }),
      granularity: 2 ** b.granularityBits,
      enabled: (b.flags & BITMAP_FLAG_AUTO) !== 0,
      inconsistent: (b.flags & BITMAP_FLAG_IN_USE) !== 0,
    }));
  }

  /**
   * Image.activate: a writable image keeps its bitmaps up to date from here until close
   * (bitmap-live.ts), marking them in use now. On failure the data file the write path may have
   * opened is closed; the caller closes the image file.
   */
  async activate(): Promise<void> {
    try {
      await this.writer?.openBitmaps(this.bitmaps);
    } catch (e) {
      await this.closeDataFile();
      throw e;
    }
  }

  storePersistentBitmaps(bitmaps: readonly BitmapToStore[]): Promise<void> {
    return this.requireWriter().addBitmaps(bitmaps);
  }

  checkPersistentBitmaps(): Promise<void> {
    return this.requireWriter().checkAddBitmaps();
  }

  async readPersistentBitmap(name: string, nameBytes?: Uint8Array): Promise<BitmapBits> {
    const b = this.s.version >= 3 ? this.bitmaps.find((x) => (nameBytes ? Buffer.from(x.nameBytes).equals(nameBytes) : x.name === name)) : undefined;
    if (!b) throw new VmimgError('INVALID_OPTION', `qcow2 image '${this.filename}' has no bitmap '${name}'`, { file: this.filename, bitmap: name });
    if (b.flags & BITMAP_FLAG_IN_USE) throw new VmimgError('INCONSISTENT_BITMAP', `Bitmap '${name}' of '${this.filename}' is inconsistent (in use)`, { file: this.filename, bitmap: name });
    return (await import('./bitmap-data.js')).loadBitmapBits(this.s.storage, this.filename, b, this.s.clusterSize, this.s.virtualSize);
  }

  info(): ImageInfoFields {
    return infoFields(this.s, this.bitmaps);
  }

  safetyIssues(): string[] {
    return qcow2SafetyIssues(this.s);
  }

  async check(fix: CheckFix, report: (line: string) => void): Promise<CheckResult> {
    if ((fix.leaks || fix.errors) && !this.s.storage.writable) {
      throw new VmimgError('WRITE_FAILED', `qcow2 image '${this.filename}' must be opened writable to be repaired`, { file: this.filename });
    }
    this.requireDataFileName();
    const run = async (): Promise<CheckResult> => {
      try {
        return await (await import('./checkrun.js')).checkQcow2(this.s, this.tables, fix, report);
      } finally {
        this.tables.invalidate();
      }
    };
    return this.writer ? this.writer.exclusive(run) : run();
  }

  /** Closes the external data file if it was opened (an open that fails after opening it). */
  async closeDataFile(): Promise<void> {
    const data = this.data;
    this.data = undefined;
    if (data) await (await data.catch(() => undefined))?.close().catch(() => undefined);
  }

  /** Stores the bitmaps of a writable image (a failure is thrown after the files are closed). */
  async close(): Promise<void> {
    let failure: unknown;
    await this.writer?.closeBitmaps().catch((e: unknown) => (failure = e));
    await this.writer?.exclusive(async () => undefined).catch(() => undefined);
    await this.closeDataFile();
    await this.s.storage.close();
    if (failure !== undefined) throw failure;
  }
}
