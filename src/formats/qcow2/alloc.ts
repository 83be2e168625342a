/**
 * Host cluster allocation for the qcow2 write path (spec "Host cluster management"): refcounts
 * read and updated through the refcount table, first-fit allocation of clusters whose refcount is
 * 0 (freed clusters are reused, as QEMU's free_cluster_index search does), new refcount blocks
 * and a growing refcount table.
 *
 * Crash contract (the caller's stages rely on it):
 * - alloc() only raises refcounts in memory (the blocks become dirty); writeDirty() writes them.
 *   The caller writes them before anything refers to the new clusters, and decrements only after
 *   the references are gone, so a crash leaks clusters at worst.
 * - A new refcount block is self-describing: it is placed at the first cluster of the range it
 *   covers (every cluster of a range without a block has refcount 0, so that cluster is free),
 *   written with its own refcount 1, and only then (after a barrier) entered in the table.
 * - A full refcount table is replaced (QEMU's refcount_area): new self-describing blocks and the
 *   new table are laid out at the first uncovered range, written, then (barrier) the header is
 *   switched with one 12-byte write, then (barrier) the old table's clusters are freed.
 *
 * Refcount blocks are cached whole; clean ones are dropped beyond CACHE_BYTES.
 */
import { VmimgError } from '../../util/errors.js';
import { MAX_CLUSTER_OFFSET, MAX_REFTABLE_SIZE_BYTES, REFTABLE_ENTRY_SIZE } from './constants.js';
import { readAt, view } from './io.js';
import { readWord } from './l2.js';
import { getRefcount, reftableOffset, reftableReserved, setRefcount } from './reftable.js';
import type { Qcow2State } from './state.js';

const CACHE_BYTES = 32 * 1024 * 1024;
/** Header offsets of refcount_table_offset (u64) and refcount_table_clusters (u32). */
const HEADER_REFTABLE_OFFSET = 48;

export class Allocator {
  private table: number[] = [];
  private readonly blocks = new Map<number, Uint8Array>();
  private readonly dirty = new Set<number>();
  /** No cluster below this index is free (QEMU's free_cluster_index). */
  private hint = 0;
  /** Highest byte end of any cluster allocated by this allocator (the file must reach it). */
  fileEnd = 0;
  private readonly cs: number;
  readonly perBlock: number;
  private readonly max: number;

  private constructor(
    private readonly s: Qcow2State,
    private readonly barrier: () => Promise<void>,
  ) {
    this.cs = s.clusterSize;
    this.perBlock = (s.clusterSize * 8) / 2 ** s.refcountOrder;
    this.max = 2 ** Math.min(2 ** s.refcountOrder, 53) - 1;
  }

  /** Loads the refcount table (≤ 8 MiB, validated at open) and checks its entries. */
  static async load(s: Qcow2State, barrier: () => Promise<void>): Promise<Allocator> {
    const a = new Allocator(s, barrier);
    const v = view(await readAt(s.storage, s.reftableOffset, s.reftableEntries * REFTABLE_ENTRY_SIZE));
    for (let i = 0; i < s.reftableEntries; i++) {
      const w = readWord(v, i * REFTABLE_ENTRY_SIZE);
      const offset = reftableOffset(w);
      if (reftableReserved(w) || offset % s.clusterSize !== 0 || !Number.isSafeInteger(offset)) {
        throw a.corrupt(`refcount table entry ${i} is invalid (reserved bits, unaligned or out of range)`);
      }
      a.table.push(offset);
    }
    if (!a.table[0]) throw a.corrupt('no refcount block covers the header cluster');
    a.fileEnd = await s.storage.size();
    return a;
  }

  private corrupt(message: string): VmimgError {
    return new VmimgError('CORRUPT_IMAGE', `qcow2 image '${this.s.name}' is corrupt: ${message}`, { file: this.s.name });
  }

  /** The cached refcount block at `offset`. */
  private async block(offset: number): Promise<Uint8Array> {
    let b = this.blocks.get(offset);
    if (!b) {
      b = await readAt(this.s.storage, offset, this.cs);
      this.blocks.set(offset, b);
    }
    return b;
  }

  async refcount(cluster: number): Promise<number> {
    const b = Math.floor(cluster / this.perBlock);
    const offset = this.table[b] ?? 0;
    if (offset === 0) return 0;
    return getRefcount(await this.block(offset), this.s.refcountOrder, cluster % this.perBlock);
  }

  /** First cluster of a run of `n` clusters with refcount 0, at or after the hint. */
  private async findFree(n: number): Promise<number> {
    let start = this.hint;
    let c = this.hint;
    while (c - start < n) {
      const b = Math.floor(c / this.perBlock);
      const offset = this.table[b] ?? 0;
      const end = (b + 1) * this.perBlock;
      if (offset === 0) {
        c = Math.min(end, start + n); // a range without a block is free
        continue;
      }
      const block = await this.block(offset);
      for (; c < end && c - start < n; c++) {
        if (getRefcount(block, this.s.refcountOrder, c % this.perBlock) !== 0) start = c + 1;
      }
    }
    if ((start + n) * this.cs - 1 > MAX_CLUSTER_OFFSET) {
      throw new VmimgError('SIZE_OUT_OF_RANGE', `qcow2 image '${this.s.name}': no host offset below 2^56 left to allocate`, { file: this.s.name });
    }
    return start;
  }

  /**
   * Allocates `n` contiguous clusters (refcount 0 → 1, in memory until writeDirty) and returns
   * the byte offset of the first. Creating a refcount block restarts the search (its cluster may
   * have been part of the run), as QEMU's -EAGAIN does.
   */
  async alloc(n: number): Promise<number> {
    for (;;) {
      const first = await this.findFree(n);
      let created = false;
      for (let b = Math.floor(first / this.perBlock); b <= Math.floor((first + n - 1) / this.perBlock); b++) {
        if (!this.table[b]) {
          await this.createBlock(b);
          created = true;
          break;
        }
      }
      if (created) continue;
      for (let c = first; c < first + n; c++) await this.add(c, 1);
      this.hint = first + n;
      this.fileEnd = Math.max(this.fileEnd, (first + n) * this.cs);
      return first * this.cs;
    }
  }

  /** Decrements the refcount of every cluster touching [offset, offset+length). */
  async free(offset: number, length: number): Promise<void> {
    const first = Math.floor(offset / this.cs);
    const last = Math.floor((offset + length - 1) / this.cs);
    for (let c = first; c <= last; c++) {
      await this.add(c, -1);
      if (c < this.hint && (await this.refcount(c)) === 0) this.hint = c;
    }
  }

  private async add(cluster: number, delta: number): Promise<void> {
    const offset = this.table[Math.floor(cluster / this.perBlock)] ?? 0;
    if (offset === 0) throw this.corrupt(`cluster ${cluster} is in use but no refcount block covers it`);
    const block = await this.block(offset);
    const i = cluster % this.perBlock;
    const value = getRefcount(block, this.s.refcountOrder, i) + delta;
    if (value < 0) throw this.corrupt(`refcount of cluster ${cluster} would drop below 0`);
    if (value > this.max) {
      throw new VmimgError('UNSUPPORTED_IMAGE', `qcow2 image '${this.s.name}': refcount of cluster ${cluster} would exceed ${this.max} (refcount_bits ${2 ** this.s.refcountOrder})`, { file: this.s.name });
    }
    setRefcount(block, this.s.refcountOrder, i, value);
    this.dirty.add(offset);
  }

  /** Writes every refcount block changed since the last call; trims the clean cache. */
  async writeDirty(): Promise<boolean> {
    const any = this.dirty.size > 0;
    for (const offset of [...this.dirty].sort((x, y) => x - y)) await this.s.storage.write(offset, this.blocks.get(offset)!);
    this.dirty.clear();
    if (this.blocks.size * this.cs > CACHE_BYTES) this.blocks.clear();
    return any;
  }

  /** A refcount block for range `b` (all of whose clusters have refcount 0). */
  private async createBlock(b: number): Promise<void> {
    if (b >= this.table.length) return this.growTable(b);
    if (b === 0) throw this.corrupt('no refcount block covers the header cluster');
    const at = b * this.perBlock * this.cs;
    const contents = new Uint8Array(this.cs);
    setRefcount(contents, this.s.refcountOrder, 0, 1);
    await this.s.storage.write(at, contents);
    this.blocks.set(at, contents);
    this.fileEnd = Math.max(this.fileEnd, at + this.cs);
    await this.barrier();
    const entry = new Uint8Array(REFTABLE_ENTRY_SIZE);
    view(entry).setBigUint64(0, BigInt(at));
    await this.s.storage.write(Number(this.s.reftableOffset) + b * REFTABLE_ENTRY_SIZE, entry);
    this.table[b] = at;
  }

  /**
   * Replaces the refcount table by one with room for block `b` (and 50 % headroom): k new
   * self-describing blocks then the table, from the first cluster of range `b` — every range
   * from the old table's end on is uncovered, hence free.
   */
  private async growTable(b: number): Promise<void> {
    const cs = this.cs;
    const perTableCluster = cs / REFTABLE_ENTRY_SIZE;
    const area = b * this.perBlock;
    let k = 1;
    let entries = 0;
    for (let last = -1; k !== last; ) {
      last = k;
      entries = Math.ceil(Math.max(b + k, Math.ceil((this.table.length * 3) / 2)) / perTableCluster) * perTableCluster;
      k = Math.ceil((k + entries / perTableCluster) / this.perBlock);
    }
    if (entries * REFTABLE_ENTRY_SIZE > MAX_REFTABLE_SIZE_BYTES) {
      throw new VmimgError('SIZE_OUT_OF_RANGE', `qcow2 image '${this.s.name}': the refcount table would exceed ${MAX_REFTABLE_SIZE_BYTES} bytes (try a larger cluster size)`, { file: this.s.name });
    }
    const tableClusters = entries / perTableCluster;
    const used = k + tableClusters;
    await this.writeDirty();
    const table = this.table.concat(new Array<number>(entries - this.table.length).fill(0));
    for (let j = 0; j < k; j++) {
      const at = (area + j) * cs;
      const contents = new Uint8Array(cs);
      for (let c = 0; c < this.perBlock && j * this.perBlock + c < used; c++) setRefcount(contents, this.s.refcountOrder, c, 1);
      await this.s.storage.write(at, contents);
      this.blocks.set(at, contents);
      table[b + j] = at;
    }
    const tableAt = (area + k) * cs;
    const bytes = new Uint8Array(entries * REFTABLE_ENTRY_SIZE);
    table.forEach((offset, i) => offset && view(bytes).setBigUint64(i * REFTABLE_ENTRY_SIZE, BigInt(offset)));
    await this.s.storage.write(tableAt, bytes);
    this.fileEnd = Math.max(this.fileEnd, tableAt + bytes.length);
    await this.barrier();
    const header = new Uint8Array(12);
    view(header).setBigUint64(0, BigInt(tableAt));
    view(header).setUint32(8, tableClusters);
    await this.s.storage.write(HEADER_REFTABLE_OFFSET, header);
    await this.barrier();
    const oldOffset = Number(this.s.reftableOffset);
    const oldBytes = this.s.reftableEntries * REFTABLE_ENTRY_SIZE;
    this.table = table;
    this.s.reftableOffset = BigInt(tableAt);
    this.s.reftableEntries = entries;
    this.s.vh.header.refcountTableOffset = BigInt(tableAt);
    this.s.vh.header.refcountTableClusters = tableClusters;
    if (oldBytes > 0) await this.free(oldOffset, oldBytes);
    await this.writeDirty();
  }
}
