/**
 * Reading (and, for repairs, updating) the on-disk refcounts (spec "Host cluster management"):
 * a refcount table of 64-bit entries pointing at refcount blocks, each block holding
 * cluster_size × 8 / refcount_bits entries of refcount_bits bits. Widths below 8 bits pack from
 * the least significant bit of each byte; wider entries are big-endian.
 *
 * The table (≤ 8 MiB, validated at open) is loaded once on first use; refcount blocks go
 * through a byte-bounded LRU. Values are JS numbers: a 64-bit refcount above 2^53 (only in a
 * hostile image) loses precision in messages but still compares as non-zero and large.
 */
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import { REFTABLE_ENTRY_SIZE } from './constants.js';
import { ByteLru, readAt, view } from './io.js';
import { hex, readWord, TWO32, type Word } from './l2.js';

/** REFT_OFFSET_MASK bits 9..63 and REFT_RESERVED_MASK bits 0..8. */
export function reftableOffset(w: Word): number {
  return w.hi * TWO32 + ((w.lo & 0xfffffe00) >>> 0);
}

export function reftableReserved(w: Word): boolean {
  return (w.lo & 0x1ff) !== 0;
}

/** Refcount `i` of a refcount block (or of any array in that encoding). */
export function getRefcount(block: Uint8Array, order: number, i: number): number {
  const bits = 2 ** order;
  if (bits < 8) {
    const bit = i * bits;
    return (block[bit >> 3]! >> (bit & 7)) & (2 ** bits - 1);
  }
  const v = view(block);
  if (bits === 8) return block[i]!;
  if (bits === 16) return v.getUint16(i * 2);
  if (bits === 32) return v.getUint32(i * 4);
  return Number(v.getBigUint64(i * 8));
}

/** How many of the first n entries of `bytes` bytes each (8-bit refcounts or wider) are non-zero, up to `limit`. */
function countNonZeroEntries(block: Uint8Array, bytes: number, n: number, limit: number): number {
  let count = 0;
  for (let i = 0, at = 0; i < n && count < limit; i++, at += bytes) {
    for (let k = 0; k < bytes; k++) {
      if (block[at + k] !== 0) {
        count++;
        break;
      }
    }
  }
  return count;
}

/** The same for refcounts narrower than a byte. */
function countNonZeroRefcounts(block: Uint8Array, order: number, n: number, limit: number): number {
  let count = 0;
  for (let i = 0; i < n && count < limit; i++) if (getRefcount(block, order, i) !== 0) count++;
  return count;
}

/** Sets refcount `i` (0 ≤ value ≤ 2^refcount_bits - 1). */
export function setRefcount(block: Uint8Array, order: number, i: number, value: number): void {
  const bits = 2 ** order;
  if (bits < 8) {
    const bit = i * bits;
    const mask = (2 ** bits - 1) << (bit & 7);
    block[bit >> 3] = (block[bit >> 3]! & ~mask) | ((value << (bit & 7)) & mask);
    return;
  }
  const v = view(block);
  if (bits === 8) block[i] = value;
  else if (bits === 16) v.setUint16(i * 2, value);
  else if (bits === 32) v.setUint32(i * 4, value);
  else v.setBigUint64(i * 8, BigInt(value));
}

/** Thrown by RefcountReader.get for a refcount block QEMU cannot use (its -EIO). */
export class RefblockError extends Error {
  constructor(message: string) {
    super(message);
  }
}

export class RefcountReader {
  private table: Word[] | undefined;
  private readonly blocks = new ByteLru<number>(8 * 1024 * 1024);
  /** log2(entries per refcount block). */
  readonly blockBits: number;

  constructor(
    private readonly storage: Storage,
    private readonly clusterBits: number,
    readonly order: number,
    private tableOffset: bigint,
    private tableEntries: number,
  ) {
    this.blockBits = clusterBits + 3 - order;
  }

  /** The refcount table entries (loaded once, ≤ 8 MiB). */
  async entries(): Promise<Word[]> {
    if (!this.table) {
      if (this.tableEntries * REFTABLE_ENTRY_SIZE > 8 * 1024 * 1024) {
        throw new VmimgError('INTERNAL', `refcount table of ${this.tableEntries} entries was not validated`);
      }
      const v = view(await readAt(this.storage, this.tableOffset, this.tableEntries * REFTABLE_ENTRY_SIZE));
      this.table = Array.from({ length: this.tableEntries }, (_, i) => readWord(v, i * REFTABLE_ENTRY_SIZE));
    }
    return this.table;
  }

  /** Switches to another refcount table (after a rebuild). */
  reset(tableOffset: bigint, tableEntries: number): void {
    this.tableOffset = tableOffset;
    this.tableEntries = tableEntries;
    this.table = undefined;
    this.blocks.clear();
  }

  /** The refcount block covering `cluster`: its offset (0 = none). Throws RefblockError if unaligned. */
  async blockOffset(cluster: number): Promise<number> {
    const index = Math.floor(cluster / 2 ** this.blockBits);
    const table = await this.entries();
    if (index >= table.length) return 0;
    const offset = reftableOffset(table[index]!);
    if (offset % 2 ** this.clusterBits !== 0) {
      throw new RefblockError(`Refblock offset 0x${hex(offset)} unaligned (reftable index: 0x${index.toString(16)})`);
    }
    return offset;
  }

  /** qcow2_get_refcount(): 0 outside the table or without a block. */
  async get(cluster: number): Promise<number> {
    const offset = await this.blockOffset(cluster);
    if (offset === 0) return 0;
    return getRefcount(await this.block(offset), this.order, cluster % 2 ** this.blockBits);
  }

  /** How many of clusters [0, end) have a non-zero refcount, counting no further than `limit`. */
  async countUsed(end: number, limit: number): Promise<number> {
    const perBlock = 2 ** this.blockBits;
    let count = 0;
    for (let first = 0; first < end && count < limit; first += perBlock) {
      const offset = await this.blockOffset(first);
      if (offset === 0) continue;
      const block = await this.block(offset);
      const n = Math.min(end, first + perBlock) - first;
      count += this.order >= 3 ? countNonZeroEntries(block, 2 ** (this.order - 3), n, limit - count) : countNonZeroRefcounts(block, this.order, n, limit - count);
    }
    return count;
  }

  async block(offset: number): Promise<Uint8Array> {
    let b = this.blocks.get(offset);
    if (!b) {
      b = await readAt(this.storage, offset, 2 ** this.clusterBits);
      this.blocks.set(offset, b);
    }
    return b;
  }

  /** Sets the refcount of `cluster` on disk (the block must exist): update_refcount for one cluster. */
  async set(cluster: number, value: number): Promise<void> {
    const offset = await this.blockOffset(cluster);
    if (offset === 0) throw new VmimgError('INTERNAL', `no refcount block covers cluster ${cluster}`);
    const block = await this.block(offset);
    setRefcount(block, this.order, cluster % 2 ** this.blockBits, value);
    await this.storage.write(offset, block);
  }
}
