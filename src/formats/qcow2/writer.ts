/**
 * qcow2 as a convert target (spec docs/interop/qcow2.txt): guest data streams into host clusters
 * allocated in order after the header cluster; compressed clusters are packed byte-wise (spec
 * "Compressed Clusters Descriptor"); L2 tables (only those that map something), the L1 table
 * and the refcount structures are appended and cluster 0 written last, so the tables are sized
 * for the data written. Every refcount equals the references to its cluster: `qemu-img check`
 * finds no leaks and no corruptions.
 *
 * With an external data file (-o data_file, spec "External data file"; datafile.ts) guest data
 * goes to the data file at its guest offset instead, unrefcounted, and the image holds only
 * metadata; preallocation (data_file_raw implies metadata) maps the clusters not written 1:1.
 */
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import { toSafeNumber } from '../../util/size.js';
import type { CreateContext } from '../types.js';
import type { BitmapToStore, ImageWriter, WriterCompression } from '../writer.js';
import {
  AUTOCLEAR_BITMAPS,
  COMPAT_LAZY_REFCOUNTS,
  COMPRESSION_ZSTD,
  EXTL2_SUBCLUSTERS,
  INCOMPAT_COMPRESSION,
  INCOMPAT_EXTL2,
  L1E_SIZE,
  L2E_SIZE_EXTENDED,
  L2E_SIZE_NORMAL,
  MAX_L1_SIZE_BYTES,
  MAX_REFTABLE_SIZE_BYTES,
  OFLAG_COPIED,
  QCOW2_MAGIC,
  V2_HEADER_LENGTH,
  V3_HEADER_LENGTH,
} from './constants.js';
import { Appender } from '../appender.js';
import type { BitmapsExtension } from './bitmaps.js';
import { storeBitmaps } from './bitmap-store.js';
import { dataFileFeatures, initDataFile, planDataFile, writeSparse } from './datafile.js';
import { buildHeaderCluster, HeaderNoSpace } from './header.js';
import { parseCreateParams, type CreateParams } from './params.js';
import { encodeReftable, encodeRefcounts, refcountMetadataSize } from './refcount.js';

/** Appended data at least this long is written directly rather than staged. */
const DIRECT_WRITE = 1024 * 1024;
/** L2 entry bits (spec "Standard Cluster Descriptor"). */
const OFLAG_COMPRESSED = 1n << 62n;
const OFLAG_ZERO = 1n;
/** Host cluster offset bits of a standard cluster descriptor (spec: bits 9-55). */
const HOST_OFFSET_MASK = 0x00fffffffffffe00n;

/** Allocation bits (low word) of the subclusters covering [inCluster, inCluster+length). */
function subclusterBits(inCluster: number, length: number, sc: number): bigint {
  const first = Math.floor(inCluster / sc);
  const last = Math.ceil((inCluster + length) / sc);
  return ((1n << BigInt(last - first)) - 1n) << BigInt(first);
}

export async function createQcow2Writer(storage: Storage, ctx: CreateContext, compress: boolean, companion?: Storage): Promise<ImageWriter> {
  const p = parseCreateParams(ctx);
  if (p.dataFile !== undefined) {
    // QEMU refuses compressed writes to an image with a data file (qcow2_co_pwritev_compressed: -ENOTSUP).
    if (compress) throw new VmimgError('UNSUPPORTED_OPTION', `Compression is not supported with an external data file (qemu-img: error while writing at byte 0: Operation not supported); data_file is '${p.dataFile}'`, { key: 'data_file', value: p.dataFile });
    if (!companion) throw new VmimgError('UNSUPPORTED_OPTION', `qcow2 data_file '${p.dataFile}' is not supported here (the caller must create the data file with the image)`, { key: 'data_file', value: p.dataFile });
    await initDataFile(companion, planDataFile(p, p.dataFile));
  } else if (p.preallocation !== 'off') {
    throw new VmimgError('UNSUPPORTED_OPTION', `convert to qcow2 with preallocation=${p.preallocation} is not supported by vmimg yet`, { key: 'preallocation', value: p.preallocation });
  }
  const w = new Qcow2Writer(storage, p, compress, ctx.filename, companion);
  w.checkHeaderFits();
  return w;
}

class Qcow2Writer implements ImageWriter {
  readonly virtualSize: number;
  readonly granularity: number;
  readonly compression?: WriterCompression;
  private readonly cs: number;
  /** One cluster of zeros (v2 masks over a backing file). */
  private zeroCluster: Uint8Array | undefined;
  /** Subcluster size with extended L2, else the cluster size. */
  private readonly sc: number;
  private readonly l2Entries: number;
  private readonly l1Entries: number;
  private readonly words: number;
  /** L2 tables that map something: index in L1 → entries (2 words each with extended L2). */
  private readonly l2 = new Map<number, BigUint64Array>();
  /** Next free byte in the file (data and compressed clusters are appended here). */
  private end: number;
  /** Refcount per host cluster. */
  private refcounts = new Uint8Array(1024);
  private readonly maxRefcount: number;
  private readonly csizeShift: number;
  private readonly offsetLimit: number;
  /** Data and compressed clusters, staged; large pieces (convert's chunks) go straight through. */
  private readonly out: Appender;
  /** The bitmaps extension, once writeBitmaps stored some. */
  private bitmaps: BitmapsExtension | undefined;

  constructor(
    private readonly storage: Storage,
    private readonly p: CreateParams,
    compress: boolean,
    private readonly filename: string,
    /** The external data file: guest data goes there at its guest offset (datafile.ts), unrefcounted. */
    private readonly data?: Storage,
  ) {
    this.out = new Appender(storage, { directWrite: DIRECT_WRITE });
    this.cs = p.clusterSize;
    this.virtualSize = toSafeNumber(p.size, 'qcow2 virtual size');
    // With extended L2 (uncompressed) QEMU allocates subclusters: a data run inside a new
    // cluster allocates the cluster but marks only the subclusters written, the others stay
    // unallocated (spec "Extended L2 Entries"). Compressed clusters have no subclusters.
    this.sc = p.extendedL2 && !compress ? this.cs / EXTL2_SUBCLUSTERS : this.cs;
    this.granularity = this.sc;
    this.words = p.extendedL2 ? 2 : 1;
    this.l2Entries = this.cs / (p.extendedL2 ? L2E_SIZE_EXTENDED : L2E_SIZE_NORMAL);
    this.l1Entries = Math.ceil(this.virtualSize / (this.cs * this.l2Entries));
    if (this.l1Entries * L1E_SIZE > MAX_L1_SIZE_BYTES) {
      throw new VmimgError('SIZE_OUT_OF_RANGE', `The image size is too large for file format 'qcow2' (try using a larger cluster size)`, { size: this.virtualSize });
    }
    this.end = this.cs; // cluster 0 is the header
    this.refcounts[0] = 1;
    this.maxRefcount = Math.min(255, 2 ** 2 ** p.refcountOrder - 1);
    this.csizeShift = 62 - (p.clusterBits - 8);
    this.offsetLimit = 2 ** this.csizeShift;
    if (compress) this.compression = { codec: p.compressionType === COMPRESSION_ZSTD ? 'zstd' : 'qcow2-deflate', maxCompressed: this.cs };
  }

  /** Fails early (before any data) when cluster 0 cannot hold the backing file name. */
  checkHeaderFits(): void {
    this.headerCluster(0, 0, 0, 0);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (this.data) return this.writeDataFile(offset, data);
    let done = 0;
    if (this.sc !== this.cs && (offset % this.cs !== 0 || data.length < this.cs)) {
      // A run starting or ending inside a cluster (extended L2 only): the first cluster may
      // already hold an earlier run's subclusters (writes ascend), so it is placed on its own.
      const head = Math.min(data.length, this.cs - (offset % this.cs));
      const { entry, bitmap } = this.getEntry(offset);
      const host = entry !== 0n ? Number(entry & HOST_OFFSET_MASK) : this.allocClusters(1);
      await this.out.append(host + (offset % this.cs), data.subarray(0, head));
      const bits = subclusterBits(offset % this.cs, head, this.sc);
      this.setEntry(offset, BigInt(host) | OFLAG_COPIED, (bitmap & ~(bits << 32n)) | bits);
      done = head;
    }
    if (done === data.length) return;
    const rest = data.length - done;
    const clusters = Math.ceil(rest / this.cs);
    const host = this.allocClusters(clusters);
    await this.out.append(host, done === 0 ? data : data.subarray(done));
    for (let i = 0; i < clusters; i++) {
      const entry = BigInt(host + i * this.cs) | OFLAG_COPIED;
      const bits = this.p.extendedL2 ? subclusterBits(0, Math.min(this.cs, rest - i * this.cs), this.sc) : 0n;
      this.setEntry(offset + done + i * this.cs, entry, bits);
    }
  }

  async writeCompressed(offset: number, _length: number, compressed: Uint8Array): Promise<void> {
    const first = Math.floor(this.end / this.cs);
    if (this.end % this.cs !== 0 && this.refcountOf(first) >= this.maxRefcount) this.end = (first + 1) * this.cs;
    const host = this.end;
    const last = Math.floor((host + compressed.length - 1) / this.cs);
    if (host + compressed.length >= this.offsetLimit) throw new VmimgError('SIZE_OUT_OF_RANGE', 'qcow2 image grew past the compressed cluster offset limit', { host });
    for (let c = Math.floor(host / this.cs); c <= last; c++) this.addRef(c);
    await this.out.append(host, compressed);
    this.end = host + compressed.length;
    const extraSectors = BigInt(Math.floor((host + compressed.length - 1) / 512) - Math.floor(host / 512));
    this.setEntry(offset, OFLAG_COMPRESSED | (extraSectors << BigInt(this.csizeShift)) | BigInt(host), 0n);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    if (this.p.extendedL2) {
      // Zero bits for the subclusters covered, keeping what earlier runs set in the cluster.
      for (let pos = offset; pos < offset + length; ) {
        const inCluster = pos % this.cs;
        const n = Math.min(offset + length - pos, this.cs - inCluster);
        const { entry, bitmap } = this.getEntry(pos);
        const bits = subclusterBits(inCluster, n, this.sc);
        this.setEntry(pos, entry, (bitmap & ~bits) | (bits << 32n));
        pos += n;
      }
      return;
    }
    for (let pos = offset; pos < offset + length; pos += this.cs) {
      if (this.p.version >= 3) {
        this.setEntry(pos, OFLAG_ZERO, 0n);
      } else {
        // Version 2 has no zero clusters: a host cluster of zeros hides the backing data. The
        // zeros are written, as QEMU's write-zeroes fallback does (so the file has data there).
        const host = this.allocClusters(1);
        this.zeroCluster ??= new Uint8Array(this.cs);
        await this.out.append(host, this.zeroCluster);
        this.setEntry(pos, BigInt(host) | OFLAG_COPIED, 0n);
      }
    }
  }

  /** With a data file: the bytes go to the same offset there; each cluster touched maps 1:1. */
  private async writeDataFile(offset: number, data: Uint8Array): Promise<void> {
    await writeSparse(this.data!, offset, data);
    for (let pos = offset; pos < offset + data.length; ) {
      const inCluster = pos % this.cs;
      const n = Math.min(offset + data.length - pos, this.cs - inCluster);
      const { bitmap } = this.getEntry(pos);
      const bits = this.p.extendedL2 ? subclusterBits(inCluster, n, this.sc) : 0n;
      this.setEntry(pos, BigInt(pos - inCluster) | OFLAG_COPIED, (bitmap & ~(bits << 32n)) | bits);
      pos += n;
    }
  }

  /** Bitmap data, tables and directory go after the guest data (bitmap-store.ts). */
  async writeBitmaps(bitmaps: readonly BitmapToStore[]): Promise<void> {
    if (this.p.version < 3) throw new VmimgError('UNSUPPORTED_OPTION', "Format driver 'qcow2' does not support bitmaps (compat=0.10)", { compat: '0.10' });
    this.bitmaps = await storeBitmaps(bitmaps, this.virtualSize, this.cs, this.filename, {
      allocClusters: (n) => this.allocClusters(n),
      append: (at, data) => this.out.append(at, data),
    });
  }

  /**
   * The header cluster must hold the bitmaps extension next to the backing file name, its format
   * and the data file name. QEMU finds out only when it stores the bitmaps at close, warns "Lost
   * persistent bitmaps …: Failed to update bitmap extension: No space left on device" and keeps
   * the target without them (exit 0); vmimg refuses before copying anything.
   */
  checkBitmaps(): void {
    if (this.p.version < 3) return; // writeBitmaps refuses these
    this.headerCluster(0, 0, 0, 0, { count: 1, directoryOffset: 0n, directorySize: 0n });
  }

  async finish(): Promise<void> {
    await this.out.flush();
    if (this.data) {
      // Preallocation (data_file_raw implies metadata): every cluster not written maps 1:1 too.
      if (this.p.preallocation !== 'off') {
        for (let guest = 0; guest < this.virtualSize; guest += this.cs) if (this.getEntry(guest).entry === 0n) this.setEntry(guest, BigInt(guest) | OFLAG_COPIED, 0n);
      }
      await this.data.flush();
    }
    this.end = Math.ceil(this.end / this.cs) * this.cs;
    const writes: Array<{ offset: number; data: Uint8Array }> = [];
    const l1 = new BigUint64Array(this.l1Entries);
    for (const [index, table] of [...this.l2].sort((a, b) => a[0] - b[0])) {
      const at = this.allocClusters(1);
      l1[index] = BigInt(at) | OFLAG_COPIED;
      writes.push({ offset: at, data: encodeBigEndian(table) });
    }
    const l1Bytes = this.l1Entries * L1E_SIZE;
    const l1Offset = l1Bytes === 0 ? 0 : this.allocClusters(Math.ceil(l1Bytes / this.cs));
    if (l1Bytes > 0) writes.push({ offset: l1Offset, data: encodeBigEndian(l1) });

    const used = this.end / this.cs;
    const meta = refcountMetadataSize(used, this.cs, this.p.refcountOrder, false);
    if (meta.table * this.cs > MAX_REFTABLE_SIZE_BYTES) throw new VmimgError('SIZE_OUT_OF_RANGE', 'qcow2 refcount table would exceed 8 MiB (try using a larger cluster size)', {});
    const tableOffset = this.allocClusters(meta.table);
    const blocksOffset = this.allocClusters(meta.blocks);
    const perBlock = (this.cs * 8) / 2 ** this.p.refcountOrder;
    const reftable = new Float64Array((meta.table * this.cs) / 8);
    for (let b = 0; b < meta.blocks; b++) {
      const at = blocksOffset + b * this.cs;
      reftable[b] = at;
      const slice = this.refcounts.subarray(b * perBlock, Math.min((b + 1) * perBlock, this.end / this.cs));
      writes.push({ offset: at, data: encodeRefcounts(slice, this.p.refcountOrder, this.cs) });
    }
    writes.push({ offset: tableOffset, data: encodeReftable(reftable) });
    writes.push({ offset: 0, data: this.headerCluster(l1Offset, tableOffset, meta.table, l1Bytes === 0 ? 0 : this.l1Entries) });
    for (const w of writes) await this.storage.write(w.offset, w.data);
    await this.storage.truncate(this.end);
    await this.storage.flush();
  }

  private headerCluster(l1Offset: number, reftableOffset: number, reftableClusters: number, l1Size: number, bitmaps = this.bitmaps): Uint8Array {
    const p = this.p;
    let incompatible = 0n;
    if (p.compressionType === COMPRESSION_ZSTD) incompatible |= INCOMPAT_COMPRESSION;
    if (p.extendedL2) incompatible |= INCOMPAT_EXTL2;
    const dataFile = dataFileFeatures(p);
    incompatible |= dataFile.incompatible;
    try {
      return buildHeaderCluster({
        clusterSize: this.cs,
        backingFile: p.backingFile,
        backingFormat: p.backingFormat,
        dataFile: p.dataFile,
        ...(bitmaps ? { bitmaps } : {}),
        header: {
          magic: QCOW2_MAGIC,
          version: p.version,
          backingFileOffset: 0n,
          backingFileSize: 0,
          clusterBits: p.clusterBits,
          size: p.size,
          cryptMethod: 0,
          l1Size,
          l1TableOffset: BigInt(l1Offset),
          refcountTableOffset: BigInt(reftableOffset),
          refcountTableClusters: reftableClusters,
          nbSnapshots: 0,
          snapshotsOffset: 0n,
          incompatibleFeatures: p.version >= 3 ? incompatible : 0n,
          compatibleFeatures: p.version >= 3 && p.lazyRefcounts ? COMPAT_LAZY_REFCOUNTS : 0n,
          autoclearFeatures: (bitmaps ? AUTOCLEAR_BITMAPS : 0n) | dataFile.autoclear,
          refcountOrder: p.refcountOrder,
          headerLength: p.version >= 3 ? V3_HEADER_LENGTH : V2_HEADER_LENGTH,
          compressionType: p.compressionType,
        },
      });
    } catch (e) {
      if (e instanceof HeaderNoSpace && bitmaps && this.headerCluster(l1Offset, reftableOffset, reftableClusters, l1Size, undefined)) {
        throw new VmimgError(
          'UNSUPPORTED_OPTION',
          `Cannot store persistent bitmaps in '${this.filename}': its ${this.cs}-byte qcow2 header cluster has no room for the bitmaps extension next to the backing and data file names (qemu-img drops the bitmaps there: "Failed to update bitmap extension: No space left on device"); use a larger cluster_size or shorter file names`,
          { file: this.filename, clusterSize: this.cs },
        );
      }
      if (e instanceof HeaderNoSpace) throw new VmimgError('PATH_TOO_LONG', `Backing file name '${p.backingFile}' does not fit in the qcow2 header cluster (${e.message})`, { backingFile: p.backingFile });
      throw e;
    }
  }

  /** Appends `n` whole clusters (cluster-aligned) with refcount 1; returns the byte offset. */
  private allocClusters(n: number): number {
    const first = Math.ceil(this.end / this.cs);
    for (let c = first; c < first + n; c++) this.addRef(c);
    this.end = (first + n) * this.cs;
    return first * this.cs;
  }

  private refcountOf(cluster: number): number {
    return cluster < this.refcounts.length ? this.refcounts[cluster]! : 0;
  }

  private addRef(cluster: number): void {
    if (cluster >= this.refcounts.length) {
      const grown = new Uint8Array(Math.max(cluster + 1, this.refcounts.length * 2));
      grown.set(this.refcounts);
      this.refcounts = grown;
    }
    this.refcounts[cluster] = this.refcounts[cluster]! + 1;
  }

  private getEntry(guestOffset: number): { entry: bigint; bitmap: bigint } {
    const cluster = Math.floor(guestOffset / this.cs);
    const table = this.l2.get(Math.floor(cluster / this.l2Entries));
    if (!table) return { entry: 0n, bitmap: 0n };
    const i = (cluster % this.l2Entries) * this.words;
    return { entry: table[i]!, bitmap: this.words === 2 ? table[i + 1]! : 0n };
  }

  private setEntry(guestOffset: number, entry: bigint, bitmap: bigint): void {
    const cluster = Math.floor(guestOffset / this.cs);
    const l1Index = Math.floor(cluster / this.l2Entries);
    let table = this.l2.get(l1Index);
    if (!table) {
      table = new BigUint64Array(this.l2Entries * this.words);
      this.l2.set(l1Index, table);
    }
    const i = (cluster % this.l2Entries) * this.words;
    table[i] = entry;
    if (this.words === 2) table[i + 1] = bitmap;
  }
}

function encodeBigEndian(words: BigUint64Array): Uint8Array {
  const out = new Uint8Array(words.length * 8);
  const v = new DataView(out.buffer);
  for (let i = 0; i < words.length; i++) if (words[i] !== 0n) v.setBigUint64(i * 8, words[i]!);
  return out;
}
