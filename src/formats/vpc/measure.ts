/**
 * `measure -O vpc`: qemu-img 7.2 refuses it ("Block driver 'vpc' does not support size
 * measurement"); vmimg answers with the sizes its own writer (writer.ts) produces, for the
 * options `create` would take (size rounded by the CHS search, force_size, subformat).
 *
 * - dynamic: required = headers + BAT + one block (bitmap + 2 MiB) for every 2 MiB of the
 *   source that holds data + footer; an upper bound on the file convert writes (a block whose
 *   data is all zeros is not allocated). With --size (no source): the empty image.
 *   fully-allocated = every BAT entry allocated.
 * - fixed: both are the rounded virtual size plus the footer (the file's length; zero runs are
 *   holes in it, as raw's measure counts a sparse raw file at its full length).
 */
import type { CreateContext, MeasureResult, MeasureSource } from '../types.js';
import { FOOTER_SIZE } from './footer.js';
import { batEntriesFor, parseVpcParams, VPC_CREATE_BLOCK_SIZE } from './plan.js';
import { dynamicFileLength } from './writer.js';

export async function measureVpc(ctx: CreateContext, source: MeasureSource | undefined): Promise<MeasureResult> {
  const p = parseVpcParams(ctx);
  if (p.subformat === 'fixed') {
    const size = p.size + BigInt(FOOTER_SIZE);
    return { required: size, fullyAllocated: size };
  }
  const entries = batEntriesFor(p.size);
  const blocks = source ? Math.min(entries, Math.ceil((await source.allocatedBytes(VPC_CREATE_BLOCK_SIZE)) / VPC_CREATE_BLOCK_SIZE)) : 0;
  return {
    required: BigInt(dynamicFileLength(entries, blocks)),
    fullyAllocated: BigInt(dynamicFileLength(entries, entries)),
  };
}
