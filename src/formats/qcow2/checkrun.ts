/**
 * `qemu-img check` for qcow2, part 2: the run (QEMU 7.2 qcow2_co_check_locked and
 * qcow2_check_refcounts): count references, compare them with the stored refcounts
 * (compare_refcounts), repair leaks/corruptions or rebuild the refcount structure when asked,
 * check the OFLAG_COPIED bits (check_oflag_copied), and report the image end offset.
 *
 * Messages and counters follow QEMU exactly; per-problem lines go to `report` (qemu-img's
 * stderr). A check that cannot complete throws CORRUPT_IMAGE with QEMU's errno text.
 */
import { emptyCheckResult, type CheckFix, type CheckResult } from '../image.js';
import { calculateRefcounts, checkFailed, newImrt, type CheckCtx } from './check.js';
import { INT_MAX, L1E_SIZE } from './constants.js';
import { readAt, view } from './io.js';
import { clusterType, COPIED_HI, entryOffset, hex, isCopied, readWord } from './l2.js';
import { getRefcount, RefblockError, RefcountReader } from './reftable.js';
import { markCleanAndConsistent, rebuildRefcountStructure, writeMetadata } from './repair.js';
import type { Qcow2State, TableReader } from './state.js';

const NO_FIX: CheckFix = { leaks: false, errors: false };

/**
 * compare_refcounts(): stored refcount vs. references for every cluster. Returns whether the
 * refcount structure must be rebuilt (a referenced cluster with refcount 0) and the highest
 * cluster in use. With `fix`, leaks (and, with errors, under-counts) are set to the reference
 * count in place.
 */
async function compareRefcounts(ctx: CheckCtx, fix: CheckFix): Promise<{ rebuild: boolean; highest: number }> {
  const refs = ctx.refs;
  const perBlock = 2 ** refs.blockBits;
  let rebuild = false;
  let highest = 0;
  const n = ctx.imrt.size;
  for (let blockStart = 0; blockStart < n; blockStart += perBlock) {
    let block: Uint8Array | undefined;
    let failure: string | undefined;
    try {
      const offset = await refs.blockOffset(blockStart);
      if (offset) block = await refs.block(offset);
    } catch (e) {
      if (!(e instanceof RefblockError)) throw e;
      failure = 'Input/output error';
    }
    const blockEnd = Math.min(n, blockStart + perBlock);
    for (let i = blockStart; i < blockEnd; i++) {
      if (failure) {
        ctx.report(`Can't get refcount for cluster ${i}: ${failure}`);
        ctx.res.checkErrors++;
        continue;
      }
      const stored = block ? getRefcount(block, refs.order, i - blockStart) : 0;
      const counted = ctx.imrt.get(i);
      if (stored > 0 || counted > 0) highest = i;
      if (stored === counted) continue;
      let fixed: 'leaksFixed' | 'corruptionsFixed' | undefined;
      if (stored === 0) rebuild = true;
      else if (stored > counted && fix.leaks) fixed = 'leaksFixed';
      else if (stored < counted && fix.errors) fixed = 'corruptionsFixed';
      const what = fixed ? 'Repairing' : stored < counted ? 'ERROR' : 'Leaked';
      ctx.report(`${what} cluster ${i} refcount=${stored} reference=${counted}`);
      if (fixed) {
        await refs.set(i, counted);
        if (counted === 0) await discardCluster(ctx, i);
        block = await refs.block((await refs.blockOffset(i))!);
        ctx.res[fixed]++;
        continue;
      }
      if (stored < counted) ctx.res.corruptions++;
      else ctx.res.leaks++;
    }
  }
  return { rebuild, highest };
}

/**
 * A cluster whose refcount a repair dropped to 0 is discarded by QEMU (its file bytes become a
 * hole). Storage has no hole punching, so its bytes inside the file are overwritten with zeros:
 * the same contents, though still allocated.
 */
async function discardCluster(ctx: CheckCtx, cluster: number): Promise<void> {
  const cs = ctx.s.clusterSize;
  const start = cluster * cs;
  const end = Math.min(start + cs, ctx.fileSize);
  if (end > start) await ctx.s.storage.write(start, new Uint8Array(end - start));
}

/** check_oflag_copied(): COPIED must be set exactly on entries whose cluster has refcount 1. */
async function checkOflagCopied(ctx: CheckCtx, fix: CheckFix): Promise<void> {
  const s = ctx.s;
  const res = ctx.res;
  const repair = fix.errors || (fix.leaks && !res.checkErrors && !res.corruptions && !res.leaks);
  const refcountOf = async (cluster: number): Promise<number | undefined> => {
    try {
      return await ctx.refs.get(cluster);
    } catch (e) {
      if (e instanceof RefblockError) return undefined; // reported by compare_refcounts already
      throw e;
    }
  };
  for (let i = 0; i < s.l1Size; i++) {
    const l1e = await ctx.tables.l1Entry(i);
    const l2Offset = entryOffset(l1e);
    if (l2Offset === 0) continue;
    const l2Refcount = await refcountOf(Math.floor(l2Offset / s.clusterSize));
    if (l2Refcount !== undefined && (l2Refcount === 1) !== isCopied(l1e)) {
      res.corruptions++;
      ctx.report(`${repair ? 'Repairing' : 'ERROR'} OFLAG_COPIED L2 cluster: l1_index=${i} l1_entry=${hex(l1e)} refcount=${l2Refcount}`);
      if (repair) {
        const fixedEntry = new Uint8Array(8);
        const v = view(fixedEntry);
        v.setUint32(0, l2Refcount === 1 ? (l1e.hi | COPIED_HI) >>> 0 : l1e.hi & 0x7fffffff);
        v.setUint32(4, l1e.lo);
        await ctx.s.storage.write(Number(s.l1Offset) + i * L1E_SIZE, fixedEntry);
        ctx.tables.invalidate();
        res.corruptions--;
        res.corruptionsFixed++;
      }
    }
    const table = await readAt(s.storage, l2Offset, s.l2Entries * s.l2EntrySize);
    const tv = view(table);
    let dirty = 0;
    for (let j = 0; j < s.l2Entries; j++) {
      const e = readWord(tv, j * s.l2EntrySize);
      const type = clusterType(e, s.extendedL2, s.hasDataFile);
      if (type !== 'normal' && type !== 'zero-alloc') continue;
      const refcount = s.hasDataFile ? 1 : await refcountOf(Math.floor(entryOffset(e) / s.clusterSize));
      if (refcount === undefined || (refcount === 1) === isCopied(e)) continue;
      res.corruptions++;
      ctx.report(`${repair ? 'Repairing' : 'ERROR'} OFLAG_COPIED data cluster: l2_entry=${hex(e)} refcount=${refcount}`);
      if (repair) {
        tv.setUint32(j * s.l2EntrySize, refcount === 1 ? (e.hi | COPIED_HI) >>> 0 : e.hi & 0x7fffffff);
        dirty++;
      }
    }
    if (dirty > 0) {
      try {
        await writeMetadata(ctx, l2Offset, table.subarray(0, s.clusterSize), 'active-l2', 'ERROR: Could not write L2 table; metadata overlap check failed');
      } catch (e) {
        res.checkErrors++;
        throw e;
      }
      ctx.tables.invalidate();
      res.corruptions -= dirty;
      res.corruptionsFixed += dirty;
    }
  }
}

/** qcow2_check_refcounts(). */
async function checkRefcounts(ctx: CheckCtx, fix: CheckFix): Promise<void> {
  const res = ctx.res;
  let rebuild = await calculateRefcounts(ctx, fix);
  const preCompare = { ...res };
  let cmp = await compareRefcounts(ctx, NO_FIX);
  rebuild ||= cmp.rebuild;
  if (rebuild && fix.errors) {
    const old = { ...res };
    ctx.report('Rebuilding refcount structure');
    await rebuildRefcountStructure(ctx);
    res.corruptions = 0;
    res.leaks = 0;
    ctx.imrt.clear();
    await calculateRefcounts(ctx, NO_FIX);
    let freshLeaks = 0;
    if (fix.leaks) {
      const saved = { ...res };
      Object.assign(res, emptyCheckResult());
      cmp = await compareRefcounts(ctx, { leaks: true, errors: false });
      if (cmp.rebuild) ctx.report('ERROR rebuilt refcount structure is still broken');
      freshLeaks = res.leaks;
      Object.assign(res, saved);
    }
    if (res.corruptions < old.corruptions) res.corruptionsFixed += old.corruptions - res.corruptions;
    if (res.leaks < old.leaks) res.leaksFixed += old.leaks - res.leaks;
    res.leaks += freshLeaks;
  } else if (fix.leaks || fix.errors) {
    if (rebuild) {
      ctx.report('ERROR need to rebuild refcount structures');
      res.checkErrors++;
      throw checkFailed('Input/output error');
    }
    if (res.leaks || res.corruptions) {
      Object.assign(res, preCompare);
      cmp = await compareRefcounts(ctx, fix);
    }
  }
  await checkOflagCopied(ctx, fix);
  res.imageEndOffset = (cmp.highest + 1) * ctx.s.clusterSize;
}

/** qcow2_co_check_locked(): the whole check of an opened image. */
export async function checkQcow2(s: Qcow2State, tables: TableReader, fix: CheckFix, report: (line: string) => void): Promise<CheckResult> {
  const res = emptyCheckResult();
  if (s.snapshotError) {
    // qcow2_check_read_snapshot_table(): the check cannot go on without the snapshot table.
    const e = s.snapshotError;
    report(/too large|offset invalid/.test(e.message) ? `ERROR ${e.message.replace(/^qcow2 image '[^']*': /, '')}` : `ERROR failed to read the snapshot table: ${e.message.replace(/^qcow2 image '[^']*': /, '')}`);
    res.checkErrors++;
    throw checkFailed(/too (large|big)|Too much/.test(e.message) ? 'File too large' : 'Invalid argument');
  }
  const fileSize = await s.storage.size();
  const clusters = Math.ceil(fileSize / s.clusterSize);
  if (clusters > INT_MAX) {
    res.checkErrors++;
    throw checkFailed('File too large', { clusters });
  }
  res.totalClusters = Math.ceil(s.virtualSize / s.clusterSize);
  const refs = new RefcountReader(s.storage, s.clusterBits, s.refcountOrder, s.reftableOffset, s.reftableEntries);
  const ctx: CheckCtx = { s, tables, refs, report, res, imrt: newImrt(s, fileSize), fileSize };
  await checkRefcounts(ctx, fix);
  if ((fix.leaks || fix.errors) && res.checkErrors === 0 && res.corruptions === 0) await markCleanAndConsistent(s);
  if (fix.leaks || fix.errors) await s.storage.flush();
  return res;
}
