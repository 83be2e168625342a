/**
 * `qemu-img check` for qcow2, part 1: building the in-memory refcount table (QEMU 7.2
 * block/qcow2-refcount.c calculate_refcounts and its helpers). Every structure the spec says
 * occupies host clusters is counted: the header cluster, the active and snapshot L1 tables and
 * the L2 tables and data clusters they reach, the snapshot table, the refcount table and blocks,
 * and persistent bitmaps. While walking, L1/L2 entries are checked (reserved bits, alignment,
 * compressed-cluster and subcluster-bitmap rules) with QEMU's messages, which go to `report`.
 *
 * Bounds: one L2 table (≤ 2 MiB) in memory at a time, L1 tables read in pages, counters in the
 * paged Imrt; a reference more than a cluster past the end of the file is an error, never a
 * reason to grow the counters.
 */
import type { CheckFix, CheckResult } from '../image.js';
import { VmimgError } from '../../util/errors.js';
import { forEachBitmapTableEntry, readBitmapDirectory } from './bitmaps.js';
import { L1E_SIZE, MAX_L1_SIZE_BYTES, REFTABLE_ENTRY_SIZE } from './constants.js';
import { Imrt } from './imrt.js';
import { readAt, view } from './io.js';
import {
  altHex,
  clusterType,
  compressedRef,
  entryOffset,
  hex,
  isCopied,
  l1Reserved,
  l2Reserved,
  NO_BITMAP,
  readBitmap,
  readWord,
  ZERO_LO,
  type Word,
} from './l2.js';
import type { RefcountReader } from './reftable.js';
import { reftableOffset, reftableReserved } from './reftable.js';
import type { Qcow2State, TableReader } from './state.js';
import { fixL2EntryByZero } from './repair.js';

/** The state one check run works on. */
export interface CheckCtx {
  s: Qcow2State;
  tables: TableReader;
  refs: RefcountReader;
  report: (line: string) => void;
  res: CheckResult;
  imrt: Imrt;
  /** Current length of the image file (bdrv_getlength of bs->file). */
  fileSize: number;
}

/** A check that cannot complete (QEMU returns -errno; qemu-img prints "Check failed: <strerror>"). */
export function checkFailed(reason: string, details: Record<string, unknown> = {}): VmimgError {
  return new VmimgError('CORRUPT_IMAGE', reason, details);
}

/**
 * qcow2_inc_refcounts_imrt(): counts one reference to every cluster touching
 * [offset, offset+size). A range ending a cluster or more past the end of the file is a
 * corruption and is not counted.
 */
export function inc(ctx: CheckCtx, offset: number | bigint, size: number): void {
  if (size <= 0) return;
  const cs = ctx.s.clusterSize;
  const off = BigInt(offset);
  if (off + BigInt(size) - BigInt(ctx.fileSize) >= BigInt(cs)) {
    ctx.report(`ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x${hex(off)} size 0x${hex(size)}`);
    ctx.res.corruptions++;
    return;
  }
  const start = Number(off) - (Number(off) % cs);
  const last = Number(off) + size - 1 - ((Number(off) + size - 1) % cs);
  for (let c = start; c <= last; c += cs) {
    const k = c / cs;
    if (k >= ctx.imrt.size) ctx.imrt.grow(k + 1);
    const refcount = ctx.imrt.get(k);
    if (refcount === ctx.imrt.max) {
      ctx.report(`ERROR: overflow cluster offset=0x${hex(c)}`);
      ctx.report('Use qemu-img amend to increase the refcount entry width or qemu-img convert to create a clean copy if the image cannot be opened for writing');
      ctx.res.corruptions++;
      continue;
    }
    ctx.imrt.set(k, refcount + 1);
  }
}

/** check_refcounts_l2(): one L2 table's entries. */
async function checkL2(ctx: CheckCtx, l2Offset: number, frag: boolean, fix: CheckFix, active: boolean): Promise<void> {
  const s = ctx.s;
  const table = await readAt(s.storage, l2Offset, s.clusterSize);
  const v = view(table);
  let nextContiguous = 0;
  for (let i = 0; i < s.l2Entries; i++) {
    let entry: Word = readWord(v, i * s.l2EntrySize);
    const bitmap = s.extendedL2 ? readBitmap(v, i * s.l2EntrySize + 8) : NO_BITMAP;
    const type = clusterType(entry, s.extendedL2, s.hasDataFile);
    if (type !== 'compressed' && l2Reserved(entry)) {
      ctx.report(`ERROR found l2 entry with reserved bits set: ${hex(entry)}`);
      ctx.res.corruptions++;
    }
    switch (type) {
      case 'compressed': {
        const ref = compressedRef(entry, s.clusterBits);
        if (isCopied(entry)) {
          ctx.report(`ERROR: coffset=0x${hex(ref.offset)}: copied flag must never be set for compressed clusters`);
          entry = { hi: entry.hi & 0x7fffffff, lo: entry.lo };
          ctx.res.corruptions++;
        }
        if (s.hasDataFile) {
          ctx.report(`ERROR compressed cluster ${i} with data file, entry=0x${hex(entry)}`);
          ctx.res.corruptions++;
          break;
        }
        if (bitmap.alloc !== 0 || bitmap.zero !== 0) {
          ctx.report(`ERROR compressed cluster ${i} with non-zero subcluster allocation bitmap, entry=0x${hex(entry)}`);
          ctx.res.corruptions++;
          break;
        }
        inc(ctx, ref.offset, ref.length);
        if (frag) {
          ctx.res.allocatedClusters++;
          ctx.res.compressedClusters++;
          ctx.res.fragmentedClusters++;
        }
        break;
      }
      case 'zero-alloc':
      case 'normal': {
        const offset = entryOffset(entry);
        if ((bitmap.alloc & bitmap.zero) !== 0) {
          ctx.res.corruptions++;
          ctx.report(`ERROR offset=${hex(offset)}: Allocated cluster has corrupted subcluster allocation bitmap`);
        }
        if (offset % s.clusterSize !== 0) {
          ctx.res.corruptions++;
          const containsData = s.extendedL2 ? bitmap.alloc !== 0 : (entry.lo & ZERO_LO) === 0;
          if (!containsData) {
            ctx.report(`${fix.errors ? 'Repairing' : 'ERROR'} offset=${hex(offset)}: Preallocated cluster is not properly aligned; L2 entry corrupted.`);
            if (fix.errors && (await fixL2EntryByZero(ctx, l2Offset, table, i, active))) continue;
          } else {
            ctx.report(`ERROR offset=${hex(offset)}: Data cluster is not properly aligned; L2 entry corrupted.`);
          }
        }
        if (frag) {
          ctx.res.allocatedClusters++;
          if (nextContiguous !== 0 && offset !== nextContiguous) ctx.res.fragmentedClusters++;
          nextContiguous = offset + s.clusterSize;
        }
        if (!s.hasDataFile) inc(ctx, offset, s.clusterSize);
        break;
      }
      case 'zero-plain':
        break;
      case 'unallocated':
        if (bitmap.alloc !== 0) {
          ctx.res.corruptions++;
          ctx.report('ERROR: Unallocated cluster has non-zero subcluster allocation map');
        }
        break;
    }
  }
}

/** L1 entries read per chunk while checking. */
const L1_CHUNK = 4096;

/** check_refcounts_l1(): an L1 table, its L2 tables and everything they map. */
export async function checkL1(ctx: CheckCtx, l1Offset: bigint, l1Size: number, frag: boolean, fix: CheckFix, active: boolean): Promise<void> {
  if (l1Size === 0) return;
  inc(ctx, l1Offset, l1Size * L1E_SIZE);
  const cs = ctx.s.clusterSize;
  for (let first = 0; first < l1Size; first += L1_CHUNK) {
    const n = Math.min(L1_CHUNK, l1Size - first);
    const v = view(await readAt(ctx.s.storage, l1Offset + BigInt(first * L1E_SIZE), n * L1E_SIZE));
    for (let j = 0; j < n; j++) {
      const e = readWord(v, j * L1E_SIZE);
      if (e.hi === 0 && e.lo === 0) continue;
      if (l1Reserved(e)) {
        ctx.report(`ERROR found L1 entry with reserved bits set: ${hex(e)}`);
        ctx.res.corruptions++;
      }
      const l2Offset = entryOffset(e);
      inc(ctx, l2Offset, cs);
      if (l2Offset % cs !== 0) {
        ctx.report(`ERROR l2_offset=${hex(l2Offset)}: Table is not cluster aligned; L1 entry corrupted`);
        ctx.res.corruptions++;
      }
      await checkL2(ctx, l2Offset, frag, fix, active);
    }
  }
}

/**
 * check_refblocks(): every refcount table entry must be free of reserved bits, aligned and
 * inside the file, and its block referenced exactly once. Returns whether the refcount
 * structure must be rebuilt. With fix.errors a block past the end of the file is repaired by
 * growing the file to hold it (QEMU does the same).
 */
async function checkRefblocks(ctx: CheckCtx, fix: CheckFix): Promise<boolean> {
  const cs = ctx.s.clusterSize;
  let rebuild = false;
  const table = await ctx.refs.entries();
  for (let i = 0; i < table.length; i++) {
    const w = table[i]!;
    const offset = reftableOffset(w);
    const cluster = Math.floor(offset / cs);
    if (reftableReserved(w)) {
      ctx.report(`ERROR refcount table entry ${i} has reserved bits set`);
      ctx.res.corruptions++;
      rebuild = true;
      continue;
    }
    if (offset % cs !== 0) {
      ctx.report(`ERROR refcount block ${i} is not cluster aligned; refcount table entry corrupted`);
      ctx.res.corruptions++;
      rebuild = true;
      continue;
    }
    if (cluster >= ctx.imrt.size) {
      ctx.res.corruptions++;
      ctx.report(`${fix.errors ? 'Repairing' : 'ERROR'} refcount block ${i} is outside image`);
      if (fix.errors) {
        const grown = await growFileFor(ctx, offset);
        if (grown === undefined) {
          ctx.res.corruptions--;
          ctx.res.corruptionsFixed++;
          inc(ctx, offset, cs);
          continue;
        }
        rebuild = true;
        ctx.report(`ERROR could not resize image: ${grown}`);
      }
      continue;
    }
    if (offset !== 0) {
      inc(ctx, offset, cs);
      const counted = ctx.imrt.get(cluster);
      if (counted !== 1) {
        ctx.report(`ERROR refcount block ${i} refcount=${counted}`);
        ctx.res.corruptions++;
        rebuild = true;
      }
    }
  }
  return rebuild;
}

/** How far a repair may extend the image file to reach a refcount block past its end. */
export const MAX_REPAIR_GROWTH = 64 * 1024 * 1024;

/** Grows the image file to hold the cluster at `offset`; returns an error text on failure. */
async function growFileFor(ctx: CheckCtx, offset: number): Promise<string | undefined> {
  const cs = ctx.s.clusterSize;
  if (!Number.isSafeInteger(offset + cs)) return 'Invalid argument';
  // vmimg's limit (QEMU has none): a pointer read from the file may grow it by at most 64 MiB.
  if (offset + cs > ctx.fileSize + MAX_REPAIR_GROWTH) return 'File too large';
  try {
    await ctx.s.storage.truncate(offset + cs);
  } catch (e) {
    return (e as Error).message;
  }
  ctx.fileSize = await ctx.s.storage.size();
  const clusters = Math.ceil(ctx.fileSize / cs);
  ctx.imrt.grow(clusters);
  return Math.floor(offset / cs) < ctx.imrt.size ? undefined : 'Invalid argument';
}

/** calculate_refcounts(): fills ctx.imrt from every structure; returns "rebuild needed". */
export async function calculateRefcounts(ctx: CheckCtx, fix: CheckFix): Promise<boolean> {
  const s = ctx.s;
  inc(ctx, 0, s.clusterSize);
  await checkL1(ctx, s.l1Offset, s.l1Size, true, fix, true);
  if (s.hasDataFile && s.snapshots.length > 0) {
    ctx.report(`ERROR ${s.snapshots.length} snapshots in image with data file`);
    ctx.res.corruptions++;
  }
  for (const sn of s.snapshots) {
    if (sn.l1Offset % BigInt(s.clusterSize) !== 0n) {
      ctx.report(`ERROR snapshot ${sn.id} (${sn.name}) l1_offset=${altHex(sn.l1Offset)}: L1 table is not cluster aligned; snapshot table entry corrupted`);
      ctx.res.corruptions++;
      continue;
    }
    if (sn.l1Size > MAX_L1_SIZE_BYTES / L1E_SIZE) {
      ctx.report(`ERROR snapshot ${sn.id} (${sn.name}) l1_size=${altHex(sn.l1Size)}: L1 table is too large; snapshot table entry corrupted`);
      ctx.res.corruptions++;
      continue;
    }
    await checkL1(ctx, sn.l1Offset, sn.l1Size, false, fix, false);
  }
  inc(ctx, s.vh.header.snapshotsOffset, s.snapshotsSize);
  inc(ctx, s.reftableOffset, s.reftableEntries * REFTABLE_ENTRY_SIZE);
  await checkBitmaps(ctx);
  return checkRefblocks(ctx, fix);
}

/** qcow2_check_bitmaps_refcounts(): the directory, each bitmap table and its data clusters. */
async function checkBitmaps(ctx: CheckCtx): Promise<void> {
  const s = ctx.s;
  if (!s.bitmaps) return;
  inc(ctx, s.bitmaps.directoryOffset, Number(s.bitmaps.directorySize));
  let list;
  try {
    list = await readBitmapDirectory(s.storage, s.name, s.bitmaps, s.clusterSize, s.virtualSize);
  } catch (e) {
    ctx.res.corruptions++;
    throw checkFailed('Invalid argument', { cause: (e as Error).message });
  }
  for (const bm of list) {
    inc(ctx, bm.tableOffset, bm.tableEntries * 8);
    // bitmap_table_load() rejects the whole table when any entry is invalid, and the check fails.
    let broken = false;
    await forEachBitmapTableEntry(s.storage, bm, s.clusterSize, (offset) => {
      if (offset === undefined) broken = true;
    });
    if (broken) {
      ctx.res.corruptions++;
      throw checkFailed('Invalid argument', { bitmap: bm.name });
    }
    await forEachBitmapTableEntry(s.storage, bm, s.clusterSize, (offset) => {
      if (offset) inc(ctx, offset, s.clusterSize);
    });
  }
}

/** Fresh counters for a check over a file of `fileSize` bytes (QEMU refuses > INT_MAX clusters). */
export function newImrt(s: Qcow2State, fileSize: number): Imrt {
  return new Imrt(Math.ceil(fileSize / s.clusterSize), s.refcountOrder);
}

