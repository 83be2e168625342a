/**
 * The qcow2 create planner: replays qemu-img 7.2's create sequence (qcow2_co_create) on the pure
 * allocator model and returns the bytes it leaves in the file.
 *
 *  1. cluster 0 header, cluster 1 refcount table (entry 0 → cluster 2), cluster 2 empty refcount
 *     block; the image is opened and clusters 0-2 are allocated (refcount 1);
 *  2. truncate to the size: the L1 table is allocated first-fit (unpadded, none for size 0), then
 *     preallocation (prealloc.ts) runs;
 *  3. the header is rewritten with the backing file format extension, the external data file
 *     name, the feature name table (version 3, clusters > 4 KiB) and the backing file name.
 *
 * With an external data file (datafile.ts) the plan also describes that second file.
 *
 * Tables and refcount blocks end up as their final in-memory state (QEMU writes them from its
 * caches); only a replaced refcount table and COW zero fills are order-dependent writes.
 */
import { VmimgError } from '../../util/errors.js';
import type { Layout } from '../types.js';
import {
  COMPAT_LAZY_REFCOUNTS,
  COMPRESSION_ZLIB,
  CRYPT_NONE,
  INCOMPAT_COMPRESSION,
  INCOMPAT_EXTL2,
  L2E_SIZE_EXTENDED,
  L2E_SIZE_NORMAL,
  MAX_BACKING_NAME,
  QCOW2_MAGIC,
  V2_HEADER_LENGTH,
  V3_HEADER_LENGTH,
} from './constants.js';
import { dataFileFeatures, mapOntoDataFile, markClusterZeroMapped, planDataFile } from './datafile.js';
import { SparseFile } from './disk.js';
import { buildHeaderCluster, HeaderNoSpace, type Qcow2Header } from './header.js';
import type { CreateParams } from './params.js';
import { preallocateData, preallocateMetadata, type PreallocContext } from './prealloc.js';
import { encodeReftable, RefcountModel } from './refcount.js';
import { l1EntriesFor, TableModel } from './tables.js';

/**
 * Preallocation plans mapping more data clusters than this are refused: a Layout holds every L2
 * table and refcount block in memory (2^24 clusters: 128 MiB of L2 entries, 1 TiB with 64 KiB
 * clusters, 32 TiB with 2 MiB clusters).
 */
export const MAX_PREALLOCATED_CLUSTERS = 2 ** 24;

export function planQcow2(p: CreateParams): Layout {
  const cs = p.clusterSize;
  const file = new SparseFile();
  file.extend(3 * cs);
  const refcounts = new RefcountModel(p.clusterBits, p.refcountOrder, file);
  if (refcounts.allocClusters(3 * cs) !== 0) throw new VmimgError('INTERNAL', 'qcow2 planner: first clusters of a new image in use');

  const l2EntrySize = p.extendedL2 ? L2E_SIZE_EXTENDED : L2E_SIZE_NORMAL;
  const tables = new TableModel(cs, l2EntrySize, refcounts, file);
  tables.createL1(l1EntriesFor(p.size, cs, l2EntrySize));

  let allocate: Layout['allocate'] = [];
  if (p.preallocation !== 'off') {
    const dataClusters = (p.size + BigInt(cs) - 1n) / BigInt(cs);
    if (dataClusters > BigInt(MAX_PREALLOCATED_CLUSTERS)) {
      throw new VmimgError(
        'SIZE_OUT_OF_RANGE',
        `preallocation=${p.preallocation} of ${p.size} bytes needs ${dataClusters} data clusters; vmimg plans at most ${MAX_PREALLOCATED_CLUSTERS} (use a larger cluster_size or preallocation=off)`,
        { size: p.size.toString(), clusters: dataClusters.toString() },
      );
    }
    const ctx: PreallocContext = { clusterSize: cs, extendedL2: p.extendedL2, refcounts, tables, file };
    if (p.dataFile !== undefined) mapOntoDataFile(ctx, Number(p.size));
    else if (p.preallocation === 'metadata') allocate = preallocateMetadata(ctx, Number(p.size)).map((r) => ({ ...r, write: true }));
    else {
      const range = preallocateData(ctx, Number(p.size));
      if (range) allocate = [range];
    }
  }

  file.write(0, headerCluster(p, refcounts, tables));
  file.write(refcounts.reftableOffset, encodeReftable(refcounts.reftable));
  for (const [offset, contents] of refcounts.blocks) file.write(offset, refcounts.encodeBlock(contents));
  if (tables.l1.length > 0) file.write(tables.l1Offset, tables.encodeL1());
  for (const [l1Index, table] of tables.l2) {
    const bytes = tables.encodeL2(table);
    if (p.dataFile !== undefined && l1Index === 0) markClusterZeroMapped(bytes);
    file.write(table.offset, bytes);
  }

  const layout: Layout = { length: file.length, writes: file.flatten(), allocate, summary: { virtualSize: p.size, clusterSize: cs } };
  if (p.dataFile !== undefined) layout.dataFile = planDataFile(p, p.dataFile);
  return layout;
}

/** Cluster 0 from the final state; backing name limits as qcow2_change_backing_file() has them. */
function headerCluster(p: CreateParams, refcounts: RefcountModel, tables: TableModel): Uint8Array {
  let incompatible = 0n;
  if (p.compressionType !== COMPRESSION_ZLIB) incompatible |= INCOMPAT_COMPRESSION;
  if (p.extendedL2) incompatible |= INCOMPAT_EXTL2;
  const dataFile = dataFileFeatures(p);
  incompatible |= dataFile.incompatible;
  const header: Qcow2Header = {
    magic: QCOW2_MAGIC,
    version: p.version,
    backingFileOffset: 0n,
    backingFileSize: 0,
    clusterBits: p.clusterBits,
    size: p.size,
    cryptMethod: CRYPT_NONE,
    l1Size: tables.l1.length,
    l1TableOffset: BigInt(tables.l1Offset),
    refcountTableOffset: BigInt(refcounts.reftableOffset),
    refcountTableClusters: refcounts.reftableClusters,
    nbSnapshots: 0,
    snapshotsOffset: 0n,
    incompatibleFeatures: incompatible,
    compatibleFeatures: p.lazyRefcounts ? COMPAT_LAZY_REFCOUNTS : 0n,
    autoclearFeatures: dataFile.autoclear,
    refcountOrder: p.refcountOrder,
    headerLength: p.version === 2 ? V2_HEADER_LENGTH : V3_HEADER_LENGTH,
    compressionType: p.compressionType,
  };
  const nameBytes = p.backingFile === undefined ? 0 : new TextEncoder().encode(p.backingFile).length;
  if (nameBytes > MAX_BACKING_NAME) {
    throw new VmimgError('PATH_TOO_LONG', `Backing file name '${p.backingFile}' is ${nameBytes} bytes; qcow2 allows at most ${MAX_BACKING_NAME}`, {
      backingFile: p.backingFile,
      bytes: nameBytes,
    });
  }
  try {
    return buildHeaderCluster({ header, backingFormat: p.backingFormat, backingFile: p.backingFile, dataFile: p.dataFile, clusterSize: p.clusterSize });
  } catch (e) {
    if (!(e instanceof HeaderNoSpace)) throw e;
    throw new VmimgError(
      'PATH_TOO_LONG',
      `Backing file name '${p.backingFile}' (${nameBytes} bytes) does not fit in the ${p.clusterSize}-byte qcow2 header cluster; use a larger cluster_size or a shorter name`,
      { backingFile: p.backingFile, bytes: nameBytes, clusterSize: p.clusterSize },
    );
  }
}
