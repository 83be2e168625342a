/**
 * Preallocation as qcow2_co_truncate() performs it while qemu-img 7.2 creates an image (growing
 * from 0 to the final size, no backing file attached yet, no zero-write flag):
 *
 * - metadata: preallocate_co() — repeated qcow2_alloc_host_offset() calls of at most
 *   ALIGN_DOWN(INT_MAX, cluster) bytes, each walking L2 tables and allocating data clusters
 *   first-fit (an L2 table is allocated before the data clusters it maps, and a call stops when
 *   the next run cannot continue contiguously); the new mappings are then linked with COW, which
 *   zero-fills the tail of a last, partial (sub)cluster. Data clusters are otherwise not written;
 *   the file is finally extended to the end of the last mapped byte.
 * - falloc/full: refcount structures covering the whole data area are built at the end of the
 *   file by refcount_area() (which moves the refcount table there and frees the old one), the
 *   data clusters follow contiguously and are allocated physically; L2 tables are allocated
 *   first-fit while linking, so the first one usually reuses the freed refcount table cluster.
 *
 * In both modes the L2 entries carry COPIED and, with extended L2, an all-zero subcluster bitmap
 * (QEMU marks these allocations "prealloc", leaving subclusters unallocated).
 */
import { VmimgError } from '../../util/errors.js';
import { EXTL2_SUBCLUSTERS, INT_MAX } from './constants.js';
import type { SparseFile } from './disk.js';
import type { RefcountModel } from './refcount.js';
import type { TableModel } from './tables.js';

export interface PreallocContext {
  clusterSize: number;
  extendedL2: boolean;
  refcounts: RefcountModel;
  tables: TableModel;
  file: SparseFile;
}

/** QEMU's QCowL2Meta for a new allocation: a guest range mapped to contiguous host clusters. */
interface L2Meta {
  guestOffset: number;
  allocOffset: number;
  clusters: number;
  cowStart: { offset: number; bytes: number };
  cowEnd: { offset: number; bytes: number };
}

/** BDRV_REQUEST_MAX_BYTES: the largest single request QEMU's block layer issues. */
const REQUEST_MAX_BYTES = Math.floor(INT_MAX / 512) * 512;

function subclusterSize(ctx: PreallocContext): number {
  return ctx.extendedL2 ? ctx.clusterSize / EXTL2_SUBCLUSTERS : ctx.clusterSize;
}

/**
 * preallocate_co(bs, 0, length, metadata). Returns the COW zero-fill ranges: QEMU writes those
 * zeros, so they are allocated in its file (`qemu-img map` of the last, partial cluster shows
 * data where the file's block holds them) and must be written, not left as holes.
 */
export function preallocateMetadata(ctx: PreallocContext, length: number): Array<{ offset: number; length: number }> {
  const cowWrites: Array<{ offset: number; length: number }> = [];
  const cs = ctx.clusterSize;
  const chunk = Math.floor(INT_MAX / cs) * cs;
  let offset = 0;
  let remaining = length;
  let hostOffset = 0;
  let lastBytes = 0;
  while (remaining > 0) {
    const got = allocHostOffset(ctx, offset, Math.min(remaining, chunk));
    hostOffset = got.hostOffset;
    lastBytes = got.bytes;
    for (const m of got.metas) {
      linkL2(ctx, m);
      for (const cow of [m.cowStart, m.cowEnd]) if (cow.bytes > 0) cowWrites.push({ offset: m.allocOffset + cow.offset, length: cow.bytes });
    }
    remaining -= got.bytes;
    offset += got.bytes;
  }
  if (lastBytes > 0) ctx.file.extend(hostOffset + lastBytes);
  return cowWrites;
}

/**
 * qcow2_alloc_host_offset() for a range with no mapped clusters yet: returns the host offset of
 * its first byte, how many bytes got contiguous host space, and the allocations, newest first.
 */
function allocHostOffset(ctx: PreallocContext, offset: number, bytes: number): { hostOffset: number; bytes: number; metas: L2Meta[] } {
  const cs = ctx.clusterSize;
  const metas: L2Meta[] = [];
  let start = offset;
  let remaining = bytes;
  let clusterOffset: number | undefined;
  let hostOffset: number | undefined;
  let cur = 0;
  for (;;) {
    if (hostOffset === undefined && clusterOffset !== undefined) hostOffset = clusterOffset;
    start += cur;
    remaining -= cur;
    if (clusterOffset !== undefined) clusterOffset += cur;
    if (remaining === 0) break;
    cur = remaining;

    // handle_copied(): looks the table up (allocating it); nothing is mapped here yet.
    const { table, index } = ctx.tables.clusterTable(start);
    if (table.entries[index] !== 0) throw new VmimgError('INTERNAL', `qcow2 planner: guest offset ${start} mapped twice`);

    // handle_alloc()
    const inCluster = start % cs;
    let n = Math.min(Math.ceil((inCluster + cur) / cs), ctx.tables.l2Size - index, Math.floor(REQUEST_MAX_BYTES / cs));
    let allocOffset: number;
    if (clusterOffset === undefined) {
      allocOffset = ctx.refcounts.allocClusters(n * cs);
    } else {
      allocOffset = Math.floor(clusterOffset / cs) * cs;
      n = ctx.refcounts.allocClustersAt(allocOffset, n);
    }
    if (n === 0) {
      cur = 0;
      break;
    }
    const mapped = Math.min(cur + inCluster, n * cs);
    clusterOffset = allocOffset + inCluster;
    cur = Math.min(cur, mapped - inCluster);
    metas.unshift(l2Meta(ctx, allocOffset, start, cur));
  }
  if (hostOffset === undefined) throw new VmimgError('INTERNAL', `qcow2 planner: no host space for guest offset ${offset}`);
  return { hostOffset, bytes: bytes - remaining, metas };
}

/** calculate_l2_meta() for unallocated clusters (COW regions round out to subclusters). */
function l2Meta(ctx: PreallocContext, allocOffset: number, guestOffset: number, bytes: number): L2Meta {
  const cs = ctx.clusterSize;
  const sc = subclusterSize(ctx);
  const startTo = guestOffset % cs;
  const endFrom = startTo + bytes;
  const startFrom = Math.floor(startTo / sc) * sc;
  const endTo = Math.ceil(endFrom / sc) * sc;
  return {
    guestOffset: guestOffset - startTo,
    allocOffset,
    clusters: Math.ceil(endFrom / cs),
    cowStart: { offset: startFrom, bytes: startTo - startFrom },
    cowEnd: { offset: endFrom, bytes: endTo - endFrom },
  };
}

/**
 * qcow2_alloc_cluster_link_l2() for a "prealloc" allocation: COW copies the (all-zero, nothing
 * is mapped yet) guest data around the range into place, then the entries are set.
 */
function linkL2(ctx: PreallocContext, m: L2Meta): void {
  if (m.cowStart.bytes > 0) ctx.file.write(m.allocOffset + m.cowStart.offset, new Uint8Array(m.cowStart.bytes));
  if (m.cowEnd.bytes > 0) ctx.file.write(m.allocOffset + m.cowEnd.offset, new Uint8Array(m.cowEnd.bytes));
  const { table, index } = ctx.tables.clusterTable(m.guestOffset);
  for (let i = 0; i < m.clusters; i++) table.entries[index + i] = m.allocOffset + i * ctx.clusterSize;
}

/** The falloc/full branch of qcow2_co_truncate(); returns the range to allocate physically. */
export function preallocateData(ctx: PreallocContext, length: number): { offset: number; length: number } | undefined {
  const cs = ctx.clusterSize;
  const lastUsed = ctx.refcounts.lastUsedCluster(ctx.file.length);
  const oldFileSize = (lastUsed + 1) * cs;
  let dataClusters = Math.ceil(length / cs);
  const l2Tables = Math.ceil(dataClusters / ctx.tables.l2Size) + 1;
  const allocationStart = ctx.refcounts.refcountArea(oldFileSize, dataClusters + l2Tables, true, 0, 0);
  const got = ctx.refcounts.allocClustersAt(allocationStart, dataClusters);
  if (got !== dataClusters) throw new VmimgError('INTERNAL', `qcow2 planner: ${got} of ${dataClusters} data clusters free at ${allocationStart}`);
  const currentLength = ctx.file.length;
  const newFileSize = allocationStart + dataClusters * cs;
  ctx.file.extend(newFileSize);

  let host = allocationStart;
  let guest = 0;
  while (dataClusters > 0) {
    const n = Math.min(dataClusters, ctx.tables.l2Size - (Math.floor(guest / cs) % ctx.tables.l2Size));
    linkL2(ctx, { guestOffset: guest, allocOffset: host, clusters: n, cowStart: { offset: 0, bytes: 0 }, cowEnd: { offset: n * cs, bytes: 0 } });
    guest += n * cs;
    host += n * cs;
    dataClusters -= n;
  }
  return newFileSize > currentLength ? { offset: currentLength, length: newFileSize - currentLength } : undefined;
}
