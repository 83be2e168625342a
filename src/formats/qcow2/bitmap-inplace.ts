/**
 * Adding persistent bitmaps to an existing qcow2 v3 image that has none (convert -n --bitmaps),
 * in the order QEMU's qcow2_store_persistent_dirty_bitmaps + update_ext_header_and_dir keep:
 * bitmap data, tables and directory in newly allocated clusters (bitmap-store.ts) and their
 * refcounts, a barrier, then cluster 0 rewritten with the bitmaps extension and the "bitmaps"
 * autoclear bit. Until that last write the new clusters are mere leaks.
 *
 * Cluster 0 keeps the fixed header bytes as they are (header_length of them) and every other
 * extension in its order; the bitmaps extension goes right after the feature name table (QEMU's
 * place for it), or last; the backing file name moves to just after the end marker.
 */
import { VmimgError } from '../../util/errors.js';
import type { BitmapToStore } from '../writer.js';
import type { Allocator } from './alloc.js';
import { storeBitmaps } from './bitmap-store.js';
import { AUTOCLEAR_BITMAPS, EXT_BITMAPS, EXT_FEATURE_TABLE } from './constants.js';
import { encodeBitmapsExtension, encodeExtension } from './header.js';
import { readAt, view } from './io.js';
import type { BitmapsExtension } from './bitmaps.js';
import type { Qcow2State } from './state.js';

/** Header offsets: backing_file_offset (u64), backing_file_size (u32), autoclear_features (u64). */
const HEADER_BACKING_OFFSET = 8;
const HEADER_BACKING_SIZE = 16;
const HEADER_AUTOCLEAR = 88;

export async function addBitmapsInPlace(s: Qcow2State, alloc: Allocator, barrier: () => Promise<void>, bitmaps: readonly BitmapToStore[]): Promise<void> {
  if (s.version < 3) throw new VmimgError('UNSUPPORTED_OPTION', "Format driver 'qcow2' does not support bitmaps", { file: s.name, version: s.version });
  if (s.bitmaps) throw new VmimgError('UNSUPPORTED_IMAGE', `qcow2 image '${s.name}' already has persistent bitmaps`, { file: s.name });
  if (bitmaps.length === 0) return;
  // Before anything is allocated: the new cluster 0 must have room (the extension takes 32 bytes).
  await bitmapsHeader(s, { count: 0, directoryOffset: 0n, directorySize: 0n });
  const ext = await storeBitmaps(bitmaps, s.virtualSize, s.clusterSize, s.name, {
    allocClusters: (n) => alloc.alloc(n),
    append: (at, data) => s.storage.write(at, data),
  });
  if (!ext) return;
  await alloc.writeDirty();
  if ((await s.storage.size()) < alloc.fileEnd) await s.storage.truncate(alloc.fileEnd);
  await barrier();
  await switchBitmapsHeader(s, ext, barrier);
}

/**
 * Throws what addBitmapsInPlace would throw before allocating anything (qcow2 v2, bitmaps already
 * there, no room for the extension in cluster 0), reading only cluster 0: convert -n --bitmaps
 * asks before it writes any guest data.
 */
export async function checkBitmapsInPlace(s: Qcow2State): Promise<void> {
  if (s.version < 3) throw new VmimgError('UNSUPPORTED_OPTION', "Format driver 'qcow2' does not support bitmaps", { file: s.name, version: s.version });
  if (!s.bitmaps) await bitmapsHeader(s, { count: 0, directoryOffset: 0n, directorySize: 0n });
}

/**
 * Points the header at bitmap directory `ext` (QEMU's update_header_sync in
 * update_ext_header_and_dir): cluster 0 rewritten in one write, then a barrier; the autoclear
 * bit set. Everything `ext` names must be written (and counted) before.
 */
export async function switchBitmapsHeader(s: Qcow2State, ext: BitmapsExtension, barrier: () => Promise<void>): Promise<void> {
  const cluster0 = await bitmapsHeader(s, ext);
  await s.storage.write(0, cluster0);
  await barrier();
  s.vh.header.backingFileOffset = view(cluster0).getBigUint64(HEADER_BACKING_OFFSET);
  s.vh.header.autoclearFeatures |= AUTOCLEAR_BITMAPS;
  s.bitmaps = ext;
  const data = encodeBitmapsExtension(ext);
  const at = s.vh.extensions.findIndex((e) => e.type === EXT_BITMAPS);
  if (at >= 0) s.vh.extensions[at] = { ...s.vh.extensions[at]!, data };
}

async function bitmapsHeader(s: Qcow2State, ext: BitmapsExtension): Promise<Uint8Array> {
  const h = s.vh.header;
  const cluster0 = await readAt(s.storage, 0, s.clusterSize);
  const backingName = cluster0.slice(Number(h.backingFileOffset), Number(h.backingFileOffset) + h.backingFileSize);
  return newCluster0(s, cluster0, backingName, ext);
}

function newCluster0(s: Qcow2State, old: Uint8Array, backingName: Uint8Array, ext: { count: number; directoryOffset: bigint; directorySize: bigint }): Uint8Array {
  const h = s.vh.header;
  const parts: Uint8Array[] = [];
  let placed = false;
  for (const e of s.vh.extensions) {
    if (e.type === EXT_BITMAPS) continue; // a stale one (autoclear bit clear): QEMU drops it too
    parts.push(encodeExtension(e.type, e.data));
    if (e.type === EXT_FEATURE_TABLE) {
      parts.push(encodeExtension(EXT_BITMAPS, encodeBitmapsExtension(ext)));
      placed = true;
    }
  }
  if (!placed) parts.push(encodeExtension(EXT_BITMAPS, encodeBitmapsExtension(ext)));
  parts.push(new Uint8Array(8)); // end marker
  const length = h.headerLength + parts.reduce((n, p) => n + p.length, 0) + backingName.length;
  if (length > s.clusterSize) {
    throw new VmimgError('UNSUPPORTED_IMAGE', `qcow2 image '${s.name}': no room in the header cluster for the bitmaps extension`, { file: s.name, needed: length });
  }
  const out = new Uint8Array(s.clusterSize);
  out.set(old.subarray(0, h.headerLength));
  let at = h.headerLength;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  const v = view(out);
  if (backingName.length > 0) {
    out.set(backingName, at);
    v.setBigUint64(HEADER_BACKING_OFFSET, BigInt(at));
    v.setUint32(HEADER_BACKING_SIZE, backingName.length);
  }
  v.setBigUint64(HEADER_AUTOCLEAR, h.autoclearFeatures | AUTOCLEAR_BITMAPS);
  return out;
}
