/**
 * A pure model of QEMU 7.2's qcow2 cluster allocator (block/qcow2-refcount.c), faithful enough
 * that replaying qemu-img's create sequence on it places every structure where QEMU does:
 *
 * - first-fit allocation from `freeClusterIndex`, which only moves forward while searching and
 *   moves back when a cluster's refcount drops to zero or an allocation is restarted;
 * - a missing refcount block is allocated first-fit too; it describes itself when it lands in
 *   the range it covers, else its own refcount is set first (recursively) in the block that does;
 * - hooking up a new refcount block makes the whole allocation restart (QEMU's -EAGAIN): the
 *   refcounts already raised for it are undone and the search starts again at its first cluster;
 * - when the refcount table is full it is replaced by refcount_area(): new self-describing
 *   refcount blocks and a new table placed after the covered area, the old table freed.
 *
 * Refcounts are kept per refcount block (keyed by the block's file offset, like QEMU's cache) and
 * written out whole at the end, as QEMU's refcount cache does. Offsets are byte offsets in the
 * image file; cluster indices are offset / clusterSize.
 */
import { VmimgError } from '../../util/errors.js';
import { MAX_CLUSTER_OFFSET, MAX_REFTABLE_SIZE_BYTES, REFTABLE_ENTRY_SIZE } from './constants.js';
import type { SparseFile } from './disk.js';

/** QEMU's -EAGAIN from update_refcount/alloc_refcount_block: restart the allocation. */
export const AGAIN = 'again';
type Again = typeof AGAIN;

/** How often one allocation may restart before we call it a bug (QEMU loops forever). */
const MAX_RESTARTS = 100_000;

/** The image is too large for qcow2 with these options (QEMU: -EFBIG). */
export function tooLarge(detail: string): VmimgError {
  return new VmimgError('SIZE_OUT_OF_RANGE', "The image size is too large for file format 'qcow2' (try using a larger cluster size)", { detail });
}

function internal(message: string): VmimgError {
  return new VmimgError('INTERNAL', `qcow2 allocator model: ${message}`);
}

export interface MetadataSize {
  /** Refcount blocks needed. */
  blocks: number;
  /** Refcount table clusters needed. */
  table: number;
}

/**
 * qcow2_refcount_metadata_size(): the fixed point of refcount blocks + table clusters needed to
 * count `clusters` clusters and themselves; `generous` adds half the table again first.
 */
export function refcountMetadataSize(clusters: number, clusterSize: number, refcountOrder: number, generous: boolean): MetadataSize {
  const perTableCluster = clusterSize / REFTABLE_ENTRY_SIZE;
  const perBlock = (clusterSize * 8) / 2 ** refcountOrder;
  let table = 0;
  let blocks = 0;
  let n = 0;
  let last: number;
  let count = clusters;
  do {
    last = n;
    blocks = Math.ceil((count + table + blocks) / perBlock);
    table = Math.ceil(blocks / perTableCluster);
    n = count + blocks + table;
    if (n === last && generous) {
      count += Math.ceil(table / 2);
      n = 0;
      generous = false;
    }
  } while (n !== last);
  return { blocks, table };
}

export class RefcountModel {
  readonly clusterSize: number;
  readonly refcountOrder: number;
  /** Refcount entries per refcount block. */
  readonly refblockSize: number;
  readonly refcountMax: number;

  reftable: Float64Array;
  reftableOffset: number;
  maxReftableIndex = 0;
  freeClusterIndex = 0;
  /** Refcount block contents by file offset (values are tiny during create; 0..255 kept). */
  readonly blocks = new Map<number, Uint8Array>();

  /**
   * The state qemu-img's create leaves before opening the image: a one-cluster refcount table at
   * cluster 1 whose entry 0 points at an all-zero refcount block at cluster 2.
   */
  constructor(
    clusterBits: number,
    refcountOrder: number,
    private readonly file: SparseFile,
  ) {
    this.clusterSize = 2 ** clusterBits;
    this.refcountOrder = refcountOrder;
    this.refblockSize = (this.clusterSize * 8) / 2 ** refcountOrder;
    this.refcountMax = 2 ** Math.min(2 ** refcountOrder, 53) - 1;
    this.reftable = new Float64Array(this.clusterSize / REFTABLE_ENTRY_SIZE);
    this.reftable[0] = 2 * this.clusterSize;
    this.reftableOffset = this.clusterSize;
    this.blocks.set(2 * this.clusterSize, new Uint8Array(this.refblockSize));
  }

  get reftableClusters(): number {
    return (this.reftable.length * REFTABLE_ENTRY_SIZE) / this.clusterSize;
  }

  getRefcount(clusterIndex: number): number {
    const tableIndex = Math.floor(clusterIndex / this.refblockSize);
    if (tableIndex >= this.reftable.length) return 0;
    const blockOffset = this.reftable[tableIndex]!;
    if (blockOffset === 0) return 0;
    return this.block(blockOffset)[clusterIndex % this.refblockSize]!;
  }

  private block(offset: number): Uint8Array {
    const b = this.blocks.get(offset);
    if (!b) throw internal(`no refcount block at ${offset}`);
    return b;
  }

  /** alloc_clusters_noref(): first fit for `size` bytes; refcounts untouched. */
  allocClustersNoref(size: number, max: number): number {
    const n = Math.ceil(size / this.clusterSize);
    let found = 0;
    while (found < n) {
      const index = this.freeClusterIndex++;
      found = this.getRefcount(index) === 0 ? found + 1 : 0;
    }
    if (this.freeClusterIndex > 0 && this.freeClusterIndex - 1 > Math.floor(max / this.clusterSize)) {
      throw tooLarge(`host cluster ${this.freeClusterIndex - 1} past the largest offset ${max}`);
    }
    return (this.freeClusterIndex - n) * this.clusterSize;
  }

  /** qcow2_alloc_clusters(): allocate and count `size` bytes of clusters, restarting on AGAIN. */
  allocClusters(size: number): number {
    for (let tries = 0; tries < MAX_RESTARTS; tries++) {
      const offset = this.allocClustersNoref(size, MAX_CLUSTER_OFFSET);
      if (this.updateRefcount(offset, size, false) !== AGAIN) return offset;
    }
    throw internal(`allocation of ${size} bytes does not settle`);
  }

  /** qcow2_alloc_clusters_at(): take up to `count` free clusters at `offset`; returns how many. */
  allocClustersAt(offset: number, count: number): number {
    if (count === 0) return 0;
    for (let tries = 0; tries < MAX_RESTARTS; tries++) {
      const first = offset / this.clusterSize;
      let i = 0;
      while (i < count && this.getRefcount(first + i) === 0) i++;
      if (this.updateRefcount(offset, i * this.clusterSize, false) !== AGAIN) return i;
    }
    throw internal(`allocation at ${offset} does not settle`);
  }

  /** qcow2_free_clusters(): errors are ignored, as QEMU only prints them. */
  freeClusters(offset: number, size: number): void {
    this.updateRefcount(offset, size, true);
  }

  /** qcow2_get_last_cluster(): the last cluster below `size` bytes with a non-zero refcount. */
  lastUsedCluster(size: number): number {
    for (let i = Math.ceil(size / this.clusterSize) - 1; i >= 0; i--) {
      if (this.getRefcount(i) > 0) return i;
    }
    throw internal('no cluster is referenced');
  }

  /**
   * update_refcount(): add or subtract 1 for every cluster touching [offset, offset+length).
   * On AGAIN the clusters already changed are changed back and the free-cluster search restarts
   * no later than the first of them.
   */
  updateRefcount(offset: number, length: number, decrease: boolean): void | Again {
    if (length <= 0) return;
    const cs = this.clusterSize;
    const start = Math.floor(offset / cs) * cs;
    const last = Math.floor((offset + length - 1) / cs) * cs;
    let oldTableIndex = -1;
    let block: Uint8Array | undefined;
    for (let clusterOffset = start; clusterOffset <= last; clusterOffset += cs) {
      const clusterIndex = clusterOffset / cs;
      const tableIndex = Math.floor(clusterIndex / this.refblockSize);
      if (tableIndex !== oldTableIndex) {
        const got = this.allocRefcountBlock(clusterIndex);
        if (got === AGAIN) {
          if (this.freeClusterIndex > start / cs) this.freeClusterIndex = start / cs;
          this.updateRefcount(offset, clusterOffset - offset, !decrease);
          return AGAIN;
        }
        block = got;
      }
      oldTableIndex = tableIndex;
      const i = clusterIndex % this.refblockSize;
      const refcount = block![i]! + (decrease ? -1 : 1);
      if (refcount < 0 || refcount > Math.min(this.refcountMax, 255)) {
        throw internal(`refcount of cluster ${clusterIndex} would become ${refcount}`);
      }
      if (refcount === 0 && clusterIndex < this.freeClusterIndex) this.freeClusterIndex = clusterIndex;
      block![i] = refcount;
    }
  }

  private sameRefblock(offsetA: number, offsetB: number): boolean {
    const span = this.refblockSize * this.clusterSize;
    return Math.floor(offsetA / span) === Math.floor(offsetB / span);
  }

  /** alloc_refcount_block(): the block covering `clusterIndex`, allocating it (then AGAIN). */
  private allocRefcountBlock(clusterIndex: number): Uint8Array | Again {
    const tableIndex = Math.floor(clusterIndex / this.refblockSize);
    if (tableIndex < this.reftable.length && this.reftable[tableIndex] !== 0) {
      return this.block(this.reftable[tableIndex]!);
    }
    const cs = this.clusterSize;
    const newBlock = this.allocClustersNoref(cs, Number.MAX_SAFE_INTEGER);
    if (newBlock === 0) throw internal('refcount block allocated at offset 0');
    const contents = new Uint8Array(this.refblockSize);
    if (this.sameRefblock(newBlock, clusterIndex * cs)) {
      contents[(newBlock / cs) % this.refblockSize] = 1;
    } else if (this.updateRefcount(newBlock, cs, false) === AGAIN) {
      return AGAIN;
    }
    this.blocks.set(newBlock, contents);
    this.file.extend(newBlock + cs);

    if (tableIndex < this.reftable.length) {
      this.reftable[tableIndex] = newBlock;
      this.maxReftableIndex = Math.max(this.maxReftableIndex, tableIndex);
      return AGAIN;
    }
    const blocksUsed = Math.ceil(Math.max(clusterIndex + 1, newBlock / cs + 1) / this.refblockSize);
    this.refcountArea(blocksUsed * this.refblockSize * cs, 0, false, tableIndex, newBlock);
    return AGAIN;
  }

  /**
   * qcow2_refcount_area(): at `startOffset` (end of the used file) build a new refcount table and
   * the refcount blocks that cover it, itself and `additionalClusters` more clusters; optionally
   * enter `newBlockOffset` at `newBlockIndex`; switch to the new table and free the old one.
   * Returns the offset just past the new structures.
   */
  refcountArea(startOffset: number, additionalClusters: number, exactSize: boolean, newBlockIndex: number, newBlockOffset: number): number {
    const cs = this.clusterSize;
    const entriesPerCluster = cs / REFTABLE_ENTRY_SIZE;
    const { blocks: totalBlocks } = refcountMetadataSize(startOffset / cs + additionalClusters, cs, this.refcountOrder, !exactSize);
    if (totalBlocks > MAX_REFTABLE_SIZE_BYTES) throw tooLarge(`${totalBlocks} refcount blocks`);
    const areaIndex = Math.floor(startOffset / cs / this.refblockSize);
    let tableSize = exactSize ? totalBlocks : totalBlocks + Math.ceil(totalBlocks / 2);
    tableSize = Math.ceil(tableSize / entriesPerCluster) * entriesPerCluster;
    const tableClusters = (tableSize * REFTABLE_ENTRY_SIZE) / cs;
    if (tableSize > MAX_REFTABLE_SIZE_BYTES) throw tooLarge(`a refcount table of ${tableSize} entries`);

    const table = new Float64Array(tableSize);
    const keep = tableSize > this.maxReftableIndex ? this.maxReftableIndex + 1 : tableSize;
    table.set(this.reftable.subarray(0, Math.min(keep, this.reftable.length)));
    if (newBlockOffset !== 0) table[newBlockIndex] = newBlockOffset;

    let newBlocks = 0;
    for (let i = areaIndex; i < totalBlocks; i++) if (table[i] === 0) newBlocks++;
    const tableOffset = startOffset + newBlocks * cs;
    const endOffset = tableOffset + tableClusters * cs;

    let blockOffset = startOffset;
    for (let i = areaIndex; i < totalBlocks; i++) {
      let contents: Uint8Array;
      if (table[i] !== 0) {
        contents = this.block(table[i]!);
      } else {
        contents = new Uint8Array(this.refblockSize);
        this.blocks.set(blockOffset, contents);
        table[i] = blockOffset;
        blockOffset += cs;
        this.file.extend(blockOffset);
      }
      const firstCovered = i * this.refblockSize * cs;
      if (firstCovered < endOffset) {
        const from = firstCovered < startOffset ? (startOffset - firstCovered) / cs : 0;
        const to = Math.min((endOffset - firstCovered) / cs, this.refblockSize);
        for (let j = from; j < to; j++) {
          if (contents[j] !== 0) throw internal(`cluster ${i * this.refblockSize + j} in the new refcount area is in use`);
          contents[j] = 1;
        }
      }
    }
    this.file.extend(endOffset);

    const oldOffset = this.reftableOffset;
    const oldTable = this.reftable;
    this.reftable = table;
    this.reftableOffset = tableOffset;
    this.maxReftableIndex = lastNonZero(table);
    this.file.write(oldOffset, encodeReftable(oldTable));
    this.freeClusters(oldOffset, oldTable.length * REFTABLE_ENTRY_SIZE);
    return endOffset;
  }

  /** A refcount block's contents in on-disk form (refcount_order packing, spec). */
  encodeBlock(contents: Uint8Array): Uint8Array {
    return encodeRefcounts(contents, this.refcountOrder, this.clusterSize);
  }
}

function lastNonZero(table: Float64Array): number {
  let i = table.length - 1;
  while (i > 0 && table[i] === 0) i--;
  return i;
}

/** Reftable entries, big-endian u64 each. */
export function encodeReftable(table: Float64Array): Uint8Array {
  const out = new Uint8Array(table.length * REFTABLE_ENTRY_SIZE);
  const v = new DataView(out.buffer);
  table.forEach((entry, i) => {
    if (entry !== 0) v.setBigUint64(i * REFTABLE_ENTRY_SIZE, BigInt(entry));
  });
  return out;
}

/**
 * Packs refcounts of 2^order bits each into a cluster (spec "Host cluster management"): widths
 * below 8 bits fill each byte from its least significant bit; wider ones are big-endian.
 */
export function encodeRefcounts(values: Uint8Array, order: number, clusterSize: number): Uint8Array {
  const out = new Uint8Array(clusterSize);
  const bits = 2 ** order;
  for (let i = 0; i < values.length; i++) {
    const value = values[i]!;
    if (value === 0) continue;
    if (bits < 8) {
      const bit = i * bits;
      out[bit >> 3] = out[bit >> 3]! | (value << (bit & 7));
    } else {
      out[(i + 1) * (bits / 8) - 1] = value;
    }
  }
  return out;
}
