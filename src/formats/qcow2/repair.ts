/**
 * `qemu-img check -r` for qcow2: the writes a repair makes, as QEMU 7.2 makes them
 * (block/qcow2-refcount.c): zeroing a misaligned preallocated L2 entry, rebuilding the whole
 * refcount structure from the in-memory refcounts (rebuild_refcount_structure with its
 * first-fit allocator alloc_clusters_imrt), and clearing the dirty and corrupt bits afterwards.
 *
 * Every metadata write is first checked against the image's other metadata (QEMU's "cached"
 * overlap check: header, active L1 and L2 tables, refcount table and blocks, snapshot table and
 * snapshot L1 tables, bitmap directory); an overlap makes the check fail instead of writing.
 * Leaked/over-counted clusters are set to their reference count in place; a cluster whose
 * refcount drops to zero keeps its bytes (QEMU also discards it, punching a hole).
 */
import { VmimgError } from '../../util/errors.js';
import type { CheckCtx } from './check.js';
import { checkFailed } from './check.js';
import { INCOMPAT_CORRUPT, INCOMPAT_DIRTY, L1E_SIZE, REFTABLE_ENTRY_SIZE } from './constants.js';
import { readAt, view } from './io.js';
import { entryOffset, readWord } from './l2.js';
import { reftableOffset, setRefcount } from './reftable.js';
import type { Qcow2State } from './state.js';

/** Which metadata a write is allowed to overlap (QEMU's `ign` mask). */
export type OverlapIgnore = 'none' | 'active-l2';

interface Range {
  start: number;
  end: number;
  what: string;
}

/** The clusters holding metadata, sorted, for overlap checks (built once per repair). */
export class MetadataIndex {
  private constructor(
    private readonly ranges: Range[],
    private readonly l2: Float64Array,
    private readonly clusterSize: number,
  ) {}

  static async build(s: Qcow2State): Promise<MetadataIndex> {
    const ranges: Range[] = [];
    const add = (offset: number | bigint, bytes: number, what: string): void => {
      const start = Number(offset);
      if (bytes > 0 && Number.isSafeInteger(start)) ranges.push({ start, end: start + bytes, what });
    };
    add(0, s.clusterSize, 'qcow2_header');
    add(s.l1Offset, s.l1Size * L1E_SIZE, 'active L1 table');
    add(s.reftableOffset, s.reftableEntries * REFTABLE_ENTRY_SIZE, 'refcount table');
    add(s.vh.header.snapshotsOffset, s.snapshotsSize, 'snapshot table');
    for (const sn of s.snapshots) add(sn.l1Offset, sn.l1Size * L1E_SIZE, 'inactive L1 table');
    if (s.bitmaps) add(s.bitmaps.directoryOffset, Number(s.bitmaps.directorySize), 'bitmap directory');
    const rt = view(await readAt(s.storage, s.reftableOffset, s.reftableEntries * REFTABLE_ENTRY_SIZE));
    for (let i = 0; i < s.reftableEntries; i++) {
      const b = reftableOffset(readWord(rt, i * REFTABLE_ENTRY_SIZE));
      if (b) add(b, s.clusterSize, 'refcount block');
    }
    const l2: number[] = [];
    for (let first = 0; first < s.l1Size; first += 4096) {
      const n = Math.min(4096, s.l1Size - first);
      const v = view(await readAt(s.storage, s.l1Offset + BigInt(first * L1E_SIZE), n * L1E_SIZE));
      for (let j = 0; j < n; j++) {
        const o = entryOffset(readWord(v, j * L1E_SIZE));
        if (o) l2.push(o);
      }
    }
    return new MetadataIndex(ranges, Float64Array.from(l2).sort(), s.clusterSize);
  }

  /** qcow2_check_metadata_overlap(): the name of the first structure [offset, offset+size) touches. */
  overlap(offset: number, size: number, ignore: OverlapIgnore): string | undefined {
    if (size === 0) return undefined;
    const cs = this.clusterSize;
    if (offset < cs) return 'qcow2_header';
    const start = offset - (offset % cs);
    const end = Math.ceil((offset + size) / cs) * cs;
    for (const r of this.ranges) if (r.what !== 'qcow2_header' && r.start < end && start < r.end) return r.what;
    if (ignore !== 'active-l2') {
      // First L2 table starting after start - cluster_size.
      let lo = 0;
      let hi = this.l2.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (this.l2[mid]! + cs <= start) lo = mid + 1;
        else hi = mid;
      }
      if (lo < this.l2.length && this.l2[lo]! < end) return 'active L2 table';
    }
    return undefined;
  }
}

async function index(ctx: CheckCtx): Promise<MetadataIndex> {
  const c = ctx as CheckCtx & { metadata?: MetadataIndex };
  c.metadata ??= await MetadataIndex.build(ctx.s);
  return c.metadata;
}

/**
 * qcow2_pre_write_overlap_check(): false when [offset, offset+size) overlaps other metadata. Then,
 * like qcow2_signal_corruption(), the image is marked corrupt (incompatible bit 1, version 3)
 * and the event reported once; the caller reports its own failure and fails the check.
 */
export async function overlapCheck(ctx: CheckCtx, offset: number, size: number, ignore: OverlapIgnore): Promise<boolean> {
  const hit = (await index(ctx)).overlap(offset, size, ignore);
  if (!hit) return true;
  const c = ctx as CheckCtx & { signaled?: boolean };
  if (!c.signaled) {
    ctx.report(`qcow2: Marking image as corrupt: Preventing invalid write on metadata (overlaps with ${hit}); further corruption events will be suppressed`);
    c.signaled = true;
    const h = ctx.s.vh.header;
    if (ctx.s.version >= 3 && (h.incompatibleFeatures & INCOMPAT_CORRUPT) === 0n) {
      h.incompatibleFeatures |= INCOMPAT_CORRUPT;
      const bytes = new Uint8Array(8);
      view(bytes).setBigUint64(0, h.incompatibleFeatures);
      await ctx.s.storage.write(72, bytes);
    }
  }
  return false;
}

/** Writes metadata after the overlap check; on overlap reports "<what>: Input/output error" and fails. */
export async function writeMetadata(ctx: CheckCtx, offset: number, data: Uint8Array, ignore: OverlapIgnore, what: string): Promise<void> {
  if (!(await overlapCheck(ctx, offset, data.length, ignore))) {
    ctx.report(`${what}: Input/output error`);
    throw checkFailed('Input/output error', { offset });
  }
  await ctx.s.storage.write(offset, data);
  ctx.fileSize = Math.max(ctx.fileSize, offset + data.length);
}

/**
 * fix_l2_entry_by_zero(): turns a misaligned preallocated L2 entry into a zero entry (all its
 * allocated subclusters become zero subclusters). Returns true when fixed; an overlap with
 * other metadata fails the whole check ("ERROR: Overlap check failed").
 */
export async function fixL2EntryByZero(ctx: CheckCtx, l2Offset: number, table: Uint8Array, i: number, active: boolean): Promise<boolean> {
  const s = ctx.s;
  const at = i * s.l2EntrySize;
  const v = view(table);
  if (s.extendedL2) {
    const zero = v.getUint32(at + 8) | v.getUint32(at + 12);
    v.setUint32(at, 0);
    v.setUint32(at + 4, 0);
    v.setUint32(at + 8, zero >>> 0);
    v.setUint32(at + 12, 0);
  } else {
    v.setUint32(at, 0);
    v.setUint32(at + 4, 1);
  }
  const where = l2Offset + at;
  if (!(await overlapCheck(ctx, where, s.l2EntrySize, active ? 'active-l2' : 'none'))) {
    ctx.report('ERROR: Overlap check failed');
    ctx.res.checkErrors++;
    throw checkFailed('Input/output error', { offset: where });
  }
  await s.storage.write(where, table.slice(at, at + s.l2EntrySize));
  ctx.tables.invalidate();
  ctx.res.corruptions--;
  ctx.res.corruptionsFixed++;
  return true;
}

/**
 * alloc_clusters_imrt(): first fit for `count` clusters in the in-memory refcounts, starting at
 * `from.cluster` (which it advances to the first gap seen); grows the counters past the end.
 * Returns the byte offset.
 */
function allocClustersImrt(ctx: CheckCtx, count: number, from: { cluster: number }): number {
  const imrt = ctx.imrt;
  let cluster = from.cluster;
  let firstGap = true;
  let free = 0;
  for (; cluster < imrt.size && free < count; cluster++) {
    if (imrt.get(cluster) === 0) {
      free++;
      if (firstGap) {
        from.cluster = cluster;
        firstGap = false;
      }
    } else {
      free = 0;
    }
  }
  if (free < count) imrt.grow(cluster + count - free);
  cluster -= free;
  for (let i = 0; i < count; i++) imrt.set(cluster + i, 1);
  return cluster * ctx.s.clusterSize;
}

interface OnDiskReftable {
  entries: number[];
}

/** rebuild_refcounts_write_refblocks(): writes the refblocks for [first, end); true if the table grew. */
async function writeRefblocks(ctx: CheckCtx, first: number, end: number, table: OnDiskReftable): Promise<boolean> {
  const s = ctx.s;
  const cs = s.clusterSize;
  const perBlock = (cs * 8) / 2 ** s.refcountOrder;
  const free = { cluster: 0 };
  let grown = false;
  for (let cluster = first; cluster < end; cluster++) {
    if (ctx.imrt.get(cluster) === 0) continue;
    const index = Math.floor(cluster / perBlock);
    const blockStart = index * perBlock;
    let offset: number;
    if (table.entries.length > index && table.entries[index]) {
      offset = table.entries[index]!;
    } else {
      if (free.cluster < blockStart) free.cluster = blockStart;
      offset = allocClustersImrt(ctx, 1, free);
      if (offset / cs >= end) end = offset / cs + 1;
      if (table.entries.length <= index) {
        const n = (Math.ceil(((index + 1) * REFTABLE_ENTRY_SIZE) / cs) * cs) / REFTABLE_ENTRY_SIZE;
        while (table.entries.length < n) table.entries.push(0);
        grown = true;
      }
      table.entries[index] = offset;
    }
    const block = new Uint8Array(cs);
    for (let j = 0; j < perBlock; j++) {
      const value = ctx.imrt.get(blockStart + j);
      if (value) setRefcount(block, s.refcountOrder, j, value);
    }
    await writeMetadata(ctx, offset, block, 'none', 'ERROR writing refblock');
    cluster = blockStart + perBlock - 1;
  }
  return grown;
}

/**
 * rebuild_refcount_structure(): new refcount blocks for every cluster the counters say is in
 * use, then a new refcount table (placed first fit, repeated while it grows), written last and
 * entered in the header. The old structure is left behind as leaks for the caller to fix.
 */
export async function rebuildRefcountStructure(ctx: CheckCtx): Promise<void> {
  const s = ctx.s;
  const cs = s.clusterSize;
  const table: OnDiskReftable = { entries: [] };
  let changed = await writeRefblocks(ctx, 0, ctx.imrt.size, table);
  if (!changed) throw new VmimgError('INTERNAL', 'refcount rebuild produced no refcount table');
  let tableOffset = -1;
  let tableClusters = 0;
  do {
    tableClusters = Math.ceil((table.entries.length * REFTABLE_ENTRY_SIZE) / cs);
    tableOffset = allocClustersImrt(ctx, tableClusters, { cluster: 0 });
    const start = tableOffset / cs;
    changed = await writeRefblocks(ctx, start, start + tableClusters, table);
  } while (changed);
  const bytes = new Uint8Array(table.entries.length * REFTABLE_ENTRY_SIZE);
  const v = view(bytes);
  table.entries.forEach((o, i) => v.setBigUint64(i * REFTABLE_ENTRY_SIZE, BigInt(o)));
  await writeMetadata(ctx, tableOffset, bytes, 'none', 'ERROR writing reftable');
  const header = new Uint8Array(12);
  view(header).setBigUint64(0, BigInt(tableOffset));
  view(header).setUint32(8, tableClusters);
  await s.storage.write(48, header);
  s.reftableOffset = BigInt(tableOffset);
  s.reftableEntries = table.entries.length;
  s.vh.header.refcountTableOffset = BigInt(tableOffset);
  s.vh.header.refcountTableClusters = tableClusters;
  ctx.refs.reset(s.reftableOffset, s.reftableEntries);
  (ctx as CheckCtx & { metadata?: MetadataIndex }).metadata = undefined;
}

/** qcow2_mark_clean() + qcow2_mark_consistent(): clears the dirty and corrupt bits (version 3). */
export async function markCleanAndConsistent(s: Qcow2State): Promise<void> {
  const h = s.vh.header;
  if (s.version < 3) return;
  const cleared = h.incompatibleFeatures & ~(INCOMPAT_DIRTY | INCOMPAT_CORRUPT);
  if (cleared === h.incompatibleFeatures) return;
  const bytes = new Uint8Array(8);
  view(bytes).setBigUint64(0, cleared);
  await s.storage.write(72, bytes);
  await s.storage.flush();
  h.incompatibleFeatures = cleared;
}
