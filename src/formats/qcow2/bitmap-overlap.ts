/**
 * Before a writable open takes over the persistent bitmaps (bitmap-live.ts), whose clusters it
 * frees at close: every cluster a loaded bitmap's table and data occupy must belong to that
 * bitmap alone. A crafted table pointing into the header, the L1 or refcount tables, a refcount
 * block, an active or snapshot L1/L2 table, the snapshot table or the bitmap directory, into a
 * cluster shared with a snapshot (refcount ≠ 1), past the end of the file, or twice, would have
 * that cluster freed and later reused. QEMU frees such clusters too and catches the damage only
 * when a later write trips its metadata overlap checks (qcow2_pre_write_overlap_check, marking
 * the image corrupt); vmimg refuses the open instead (CORRUPT_IMAGE).
 *
 * Bounds: the L1 tables and the refcount table were bounded at open (≤ 32 MiB, ≤ 8 MiB); the set
 * of metadata clusters holds at most one entry per L1/refcount table entry plus their clusters.
 */
import { VmimgError } from '../../util/errors.js';
import type { Allocator } from './alloc.js';
import { BITMAP_FLAG_IN_USE, forEachBitmapTableEntry, type BitmapEntry } from './bitmaps.js';
import { L1E_SIZE, REFTABLE_ENTRY_SIZE } from './constants.js';
import { readAt, view } from './io.js';
import { entryOffset, readWord } from './l2.js';
import { reftableOffset } from './reftable.js';
import type { Qcow2State, TableReader } from './state.js';

/** Clusters [offset, offset+length) as indices into `into`. */
function addRange(into: Set<number>, cs: number, offset: number | bigint, length: number): void {
  const first = Math.floor(Number(offset) / cs);
  const last = Math.floor((Number(offset) + Math.max(length, 1) - 1) / cs);
  for (let c = first; c <= last; c++) into.add(c);
}

async function metadataClusters(s: Qcow2State, tables: TableReader): Promise<Set<number>> {
  const cs = s.clusterSize;
  const out = new Set<number>([0]);
  addRange(out, cs, s.reftableOffset, s.reftableEntries * REFTABLE_ENTRY_SIZE);
  const rt = view(await readAt(s.storage, s.reftableOffset, s.reftableEntries * REFTABLE_ENTRY_SIZE));
  for (let i = 0; i < s.reftableEntries; i++) {
    const block = reftableOffset(readWord(rt, i * REFTABLE_ENTRY_SIZE));
    if (block) addRange(out, cs, block, cs);
  }
  const l1s: Array<[bigint, number]> = [[s.l1Offset, s.l1Size], ...s.snapshots.map((sn): [bigint, number] => [sn.l1Offset, sn.l1Size])];
  for (const [offset, size] of l1s) {
    if (size === 0) continue;
    addRange(out, cs, offset, size * L1E_SIZE);
    for (let i = 0; i < size; i++) {
      const l2 = entryOffset(await tables.l1Entry(i, offset, size));
      if (l2) addRange(out, cs, l2, cs);
    }
  }
  if (s.snapshotsSize > 0) addRange(out, cs, s.vh.header.snapshotsOffset, s.snapshotsSize);
  if (s.bitmaps) addRange(out, cs, s.bitmaps.directoryOffset, Number(s.bitmaps.directorySize));
  return out;
}

/** Throws CORRUPT_IMAGE unless each bitmap that is not in use owns its clusters (see above). */
export async function checkBitmapClusters(s: Qcow2State, tables: TableReader, alloc: Allocator, entries: readonly BitmapEntry[]): Promise<void> {
  const loaded = entries.filter((e) => (e.flags & BITMAP_FLAG_IN_USE) === 0);
  if (loaded.length === 0) return;
  const cs = s.clusterSize;
  const fileClusters = Math.ceil((await s.storage.size()) / cs);
  const taken = await metadataClusters(s, tables);
  for (const e of loaded) {
    const clusters: number[] = [];
    const tableClusters = Math.ceil((e.tableEntries * 8) / cs);
    for (let i = 0; i < tableClusters; i++) clusters.push(Number(e.tableOffset) / cs + i);
    await forEachBitmapTableEntry(s.storage, e, cs, (offset) => {
      if (offset) clusters.push(offset / cs);
    });
    for (const c of clusters) {
      if (c >= fileClusters || taken.has(c) || (await alloc.refcount(c)) !== 1) {
        throw new VmimgError('CORRUPT_IMAGE', `qcow2 image '${s.name}': bitmap '${e.name}' uses cluster at offset ${c * cs} that is not its own (metadata, shared, unallocated or past the end of the file)`, {
          file: s.name,
          bitmap: e.name,
          offset: c * cs,
        });
      }
      taken.add(c);
    }
  }
}
