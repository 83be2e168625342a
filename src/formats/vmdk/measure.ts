/**
 * `measure -O vmdk` (qemu-img 7.2 refuses: "Block driver 'vmdk' does not support size
 * measurement"; vmimg answers from the writer's layout, writer.ts):
 *
 * - monolithicSparse: overHead + 64 KiB per grain that holds data in the source. Exact for what
 *   `convert` writes, unless a grain the source maps as data reads as all zeros (convert then
 *   leaves it unallocated and the file is smaller).
 * - streamOptimized: an upper bound, since compressed sizes are unknown until compressed: every
 *   grain at its worst case (marker + zlib's compressBound, in whole sectors) plus the final
 *   end-of-stream sector. fully-allocated uses the same bound for every grain.
 */
import { SECTOR_SIZE } from '../../util/units.js';
import type { MeasureResult, MeasureSource } from '../types.js';
import type { VmdkCreateParams } from './params.js';
import { sparseGeometry } from './plan.js';
import { GRAIN_BYTES, MARKER_BYTES, zlibBound } from './writer.js';

/** Largest space one streamOptimized grain can take in the file. */
export const STREAM_GRAIN_MAX = Math.ceil((MARKER_BYTES + zlibBound(GRAIN_BYTES)) / SECTOR_SIZE) * SECTOR_SIZE;

export async function measureVmdk(p: VmdkCreateParams, source: MeasureSource | undefined): Promise<MeasureResult> {
  const g = sparseGeometry(p.size);
  const head = BigInt(g.grainOffset) * BigInt(SECTOR_SIZE);
  const used = source ? BigInt(Math.ceil((await source.allocatedBytes(GRAIN_BYTES)) / GRAIN_BYTES)) : 0n;
  const size = (grains: bigint): bigint => {
    if (p.subformat !== 'streamOptimized') return head + grains * BigInt(GRAIN_BYTES);
    return grains === 0n ? head : head + grains * BigInt(STREAM_GRAIN_MAX) + BigInt(SECTOR_SIZE);
  };
  return { required: size(used), fullyAllocated: size(BigInt(g.grains)) };
}
