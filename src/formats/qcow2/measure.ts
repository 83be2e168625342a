/**
 * `measure -O qcow2`, as qemu-img 7.2's qcow2_measure() (block/qcow2.c) computes it:
 *
 * - only these options are read, in this order and with these messages: extended_l2,
 *   cluster_size, compat (0.10 or 1.1 only), refcount_bits, preallocation, backing_file (present
 *   or not), encrypt.format (vmimg refuses encrypt.* options before this runs). Every other
 *   option is accepted and ignored (compression_type, lazy_refcounts, backing_fmt, data_file …),
 *   and no create-time combination rule applies (extended_l2 with compat=0.10 is measured);
 * - the "too large" check uses the `size` option (--size or -o size; 0 when absent), not the
 *   source: L2 tables × 8 bytes must fit in QCOW_MAX_L1_SIZE (32 MiB);
 * - fully-allocated = qcow2_calc_prealloc_size(ROUND_UP(virtual, cluster)): header cluster, every
 *   L2 table, the L1 table padded to a cluster, then the refcount table and blocks that count
 *   all of that (qcow2_refcount_metadata_size, not generous), plus the data;
 * - required = fully-allocated − data + the source's data clusters (clusters touched by
 *   DATA|ALLOCATED, non-ZERO block status anywhere in its chain); the whole data area with a
 *   backing file in -o, or with preallocation=falloc|full; none with --size;
 * - bitmaps: only for a compat=1.1 target and a source that supports persistent bitmaps (qcow2
 *   v3): per bitmap ROUND_UP(bitmap bytes) + ROUND_UP(8 × bitmap clusters), plus the directory
 *   entries' bytes rounded up to a cluster (qcow2_get_persistent_dirty_bitmap_size).
 */
import { VmimgError } from '../../util/errors.js';
import type { CreateContext, MeasureResult, MeasureSource, PersistentBitmap } from '../types.js';
import { DEFAULT_CLUSTER_SIZE, EXTL2_SUBCLUSTERS, L1E_SIZE, L2E_SIZE_EXTENDED, L2E_SIZE_NORMAL, MAX_CLUSTER_BITS, MAX_L1_SIZE_BYTES, MIN_CLUSTER_BITS } from './constants.js';
import { directoryEntrySize } from './bitmaps.js';
import { refcountMetadataSize } from './refcount.js';


/** Sizes of the Bitmap directory entry header and of a bitmap table entry (spec "Bitmaps"). */
const BITMAP_TABLE_ENTRY_SIZE = 8n;

function invalid(key: string, value: string, message: string): VmimgError {
  return new VmimgError('INVALID_OPTION', message, { key, value });
}

function roundUp(n: bigint, to: bigint): bigint {
  return ((n + to - 1n) / to) * to;
}

interface MeasureParams {
  clusterSize: bigint;
  version: 2 | 3;
  refcountOrder: number;
  extendedL2: boolean;
  preallocation: 'off' | 'metadata' | 'falloc' | 'full';
  hasBackingFile: boolean;
}

/** The option reading of qcow2_measure(), with QEMU's messages. */
function measureParams(ctx: CreateContext): MeasureParams {
  const o = ctx.options;
  const extendedL2 = o.bool('extended_l2', false);

  // qcow2_opt_get_cluster_size_del(): ctz32 of the value must name it exactly.
  const cs = o.big('cluster_size') ?? BigInt(DEFAULT_CLUSTER_SIZE);
  const low32 = Number(cs & 0xffffffffn);
  const bits = low32 === 0 ? 32 : 31 - Math.clz32(low32 & -low32);
  if (bits < MIN_CLUSTER_BITS || bits > MAX_CLUSTER_BITS || 1n << BigInt(bits) !== cs) {
    throw invalid('cluster_size', String(cs), `Cluster size must be a power of two between ${2 ** MIN_CLUSTER_BITS} and ${2 ** (MAX_CLUSTER_BITS - 10)}k`);
  }
  const minExtended = 2 ** MIN_CLUSTER_BITS * EXTL2_SUBCLUSTERS;
  if (extendedL2 && cs < BigInt(minExtended)) {
    throw invalid('cluster_size', String(cs), `Extended L2 entries are only supported with cluster sizes of at least ${minExtended} bytes`);
  }

  // qcow2_opt_get_version_del(): unlike create, "v2"/"v3" are not accepted here.
  const compat = o.str('compat');
  let version: 2 | 3 = 3;
  if (compat === '0.10') version = 2;
  else if (compat !== undefined && compat !== '1.1') throw invalid('compat', compat, `Invalid compatibility level: '${compat}'`);

  // qcow2_opt_get_refcount_bits_del()
  const refcountBits = o.big('refcount_bits') ?? 16n;
  if (refcountBits > 64n || refcountBits === 0n || (refcountBits & (refcountBits - 1n)) !== 0n) {
    throw invalid('refcount_bits', String(refcountBits), 'Refcount width must be a power of two and may not exceed 64 bits');
  }
  if (version < 3 && refcountBits !== 16n) {
    throw invalid('refcount_bits', String(refcountBits), 'Different refcount widths than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)');
  }

  // qapi_enum_parse(&PreallocMode_lookup, …)
  const prealloc = o.str('preallocation') ?? 'off';
  if (prealloc !== 'off' && prealloc !== 'metadata' && prealloc !== 'falloc' && prealloc !== 'full') {
    throw invalid('preallocation', prealloc, `invalid parameter value: ${prealloc}`);
  }

  return {
    clusterSize: cs,
    version,
    refcountOrder: Math.log2(Number(refcountBits)),
    extendedL2,
    preallocation: prealloc,
    hasBackingFile: o.str('backing_file') !== undefined,
  };
}

/**
 * qcow2_calc_prealloc_size(): the file length of a fully allocated image of `alignedSize`
 * (already a multiple of the cluster size). Cluster counts stay below 2^53 for every size qemu
 * can describe (a qcow2 source is at most 2^61 bytes; 2^52 clusters of 512 bytes), so the
 * refcount fixed point runs on numbers; byte totals are bigints.
 */
export function preallocSize(alignedSize: bigint, clusterSize: bigint, refcountOrder: number, extendedL2: boolean): bigint {
  const l2e = BigInt(extendedL2 ? L2E_SIZE_EXTENDED : L2E_SIZE_NORMAL);
  const l1e = BigInt(L1E_SIZE);
  let meta = clusterSize;
  const l2Entries = roundUp(alignedSize / clusterSize, clusterSize / l2e);
  meta += l2Entries * l2e;
  const l1Entries = roundUp((l2Entries * l2e) / clusterSize, clusterSize / l1e);
  meta += l1Entries * l1e;
  const clusters = Number((meta + alignedSize) / clusterSize);
  const { blocks, table } = refcountMetadataSize(clusters, Number(clusterSize), refcountOrder, false);
  meta += BigInt(blocks + table) * clusterSize;
  return meta + alignedSize;
}

/** qcow2_get_persistent_dirty_bitmap_size() for a target with `clusterSize`. */
export function bitmapsSize(bitmaps: readonly PersistentBitmap[], virtualSize: bigint, clusterSize: bigint): bigint {
  let total = 0n;
  let directory = 0n;
  for (const b of bitmaps) {
    const bitsNeeded = (virtualSize + BigInt(b.granularity) - 1n) / BigInt(b.granularity);
    const bytes = (bitsNeeded + 7n) / 8n;
    const clusters = (bytes + clusterSize - 1n) / clusterSize;
    total += clusters * clusterSize;
    total += roundUp(clusters * BITMAP_TABLE_ENTRY_SIZE, clusterSize);
    directory += BigInt(directoryEntrySize((b.nameBytes ?? new TextEncoder().encode(b.name)).length));
  }
  return total + roundUp(directory, clusterSize);
}

export async function measureQcow2(ctx: CreateContext, source: MeasureSource | undefined): Promise<MeasureResult> {
  const p = measureParams(ctx);
  const cs = p.clusterSize;
  const l2e = BigInt(p.extendedL2 ? L2E_SIZE_EXTENDED : L2E_SIZE_NORMAL);

  let virtual = roundUp(ctx.options.big('size') ?? 0n, cs);
  const l2Tables = (virtual / cs + cs / l2e - 1n) / (cs / l2e);
  if (l2Tables * BigInt(L1E_SIZE) > BigInt(MAX_L1_SIZE_BYTES)) {
    throw new VmimgError('SIZE_OUT_OF_RANGE', 'The image size is too large (try using a larger cluster size)', { size: virtual.toString(), clusterSize: cs.toString() });
  }

  let data = 0n;
  if (source) {
    virtual = roundUp(BigInt(source.virtualSize), cs);
    data = p.hasBackingFile ? virtual : BigInt(await source.allocatedBytes(Number(cs)));
  }
  if (p.preallocation === 'falloc' || p.preallocation === 'full') data = virtual;

  const fullyAllocated = preallocSize(virtual, cs, p.refcountOrder, p.extendedL2);
  const result: MeasureResult = { required: fullyAllocated - virtual + data, fullyAllocated };
  if (p.version >= 3 && source?.persistentBitmaps) {
    result.bitmaps = bitmapsSize(source.persistentBitmaps, BigInt(source.virtualSize), cs);
  }
  return result;
}
