/**
 * The L1 table and L2 tables of an image being planned (spec "Cluster mapping"), allocated through
 * the refcount model the way QEMU 7.2's qcow2-cluster.c does: qcow2_grow_l1_table() writes the
 * new L1 table unpadded at a first-fit allocation; l2_allocate() takes one cluster first-fit and
 * points the L1 entry at it with the COPIED flag. L2 tables are one slice each (QEMU's default
 * l2-cache-entry-size is the cluster size).
 */
import { VmimgError } from '../../util/errors.js';
import { INT_MAX, L1E_SIZE, MAX_L1_SIZE_BYTES } from './constants.js';
import type { SparseFile } from './disk.js';
import { tooLarge, type RefcountModel } from './refcount.js';

export interface L2Table {
  offset: number;
  /** Host cluster offset per entry, 0 = unallocated; every non-zero entry carries COPIED. */
  entries: Float64Array;
}

/** L1 entries needed for a virtual size: ceil(size / (clusterSize × entries per L2 table)). */
export function l1EntriesFor(size: bigint, clusterSize: number, l2EntrySize: number): bigint {
  const perL1Entry = BigInt(clusterSize) * BigInt(clusterSize / l2EntrySize);
  return (size + perL1Entry - 1n) / perL1Entry;
}

export class TableModel {
  /** L2 entries per table. */
  readonly l2Size: number;
  l1 = new Float64Array(0);
  l1Offset = 0;
  readonly l2 = new Map<number, L2Table>();

  constructor(
    readonly clusterSize: number,
    readonly l2EntrySize: number,
    private readonly refcounts: RefcountModel,
    private readonly file: SparseFile,
  ) {
    this.l2Size = clusterSize / l2EntrySize;
  }

  /** qcow2_grow_l1_table(exact_size) on an image without an L1 table yet. */
  createL1(entries: bigint): void {
    if (this.l1.length !== 0) throw new VmimgError('INTERNAL', 'qcow2 planner: L1 table created twice');
    if (entries === 0n) return;
    if (entries > BigInt(Math.floor(INT_MAX / L1E_SIZE)) || entries > BigInt(MAX_L1_SIZE_BYTES / L1E_SIZE)) {
      throw tooLarge(`an L1 table of ${entries} entries`);
    }
    const bytes = Number(entries) * L1E_SIZE;
    this.l1Offset = this.refcounts.allocClusters(bytes);
    this.file.extend(this.l1Offset + bytes);
    this.l1 = new Float64Array(Number(entries));
  }

  /** get_cluster_table(): the L2 table mapping `guestOffset` and the entry index in it. */
  clusterTable(guestOffset: number): { table: L2Table; index: number } {
    const span = this.clusterSize * this.l2Size;
    const l1Index = Math.floor(guestOffset / span);
    if (l1Index >= this.l1.length) throw new VmimgError('INTERNAL', `qcow2 planner: guest offset ${guestOffset} beyond the L1 table`);
    let table = this.l2.get(l1Index);
    if (!table) table = this.allocateL2(l1Index);
    return { table, index: Math.floor((guestOffset % span) / this.clusterSize) };
  }

  /** l2_allocate(): a zeroed table, written at once (QEMU flushes the L2 cache), then linked. */
  private allocateL2(l1Index: number): L2Table {
    const offset = this.refcounts.allocClusters(this.clusterSize);
    this.file.extend(offset + this.clusterSize);
    const table = { offset, entries: new Float64Array(this.l2Size) };
    this.l2.set(l1Index, table);
    this.l1[l1Index] = offset;
    return table;
  }

  encodeL1(): Uint8Array {
    return encodeEntries(this.l1, L1E_SIZE);
  }

  /** An L2 table; with extended entries each is followed by a 64-bit subcluster bitmap (0 here). */
  encodeL2(table: L2Table): Uint8Array {
    return encodeEntries(table.entries, this.l2EntrySize);
  }
}

/** Table entries as big-endian u64 with COPIED (bit 63) on every non-zero offset. */
function encodeEntries(entries: Float64Array, stride: number): Uint8Array {
  const out = new Uint8Array(entries.length * stride);
  const v = new DataView(out.buffer);
  entries.forEach((offset, i) => {
    if (offset === 0) return;
    v.setUint32(i * stride, Math.floor(offset / 2 ** 32) | 0x80000000);
    v.setUint32(i * stride + 4, offset % 2 ** 32);
  });
  return out;
}
