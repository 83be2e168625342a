/**
 * vmdk format driver (VMware "Virtual Disk Format 5.0"; behaviour of qemu-img 7.2's
 * block/vmdk.c). Creation writes monolithicSparse or streamOptimized files byte-identical to
 * `qemu-img create -f vmdk` except the random CID (plan.ts); readHeader applies QEMU's open
 * checks to sparse extents and descriptor files without opening any other file (open.ts);
 * open() reads every subformat qemu-img writes, with extents opened only through the chain
 * Policy (image.ts); createWriter streams `convert` output in the layout qemu-img convert writes
 * (writer.ts) and measure answers from that layout (measure.ts).
 * A vmdk child records its parent's CID, so creation needs the parent's header even with -u.
 */
import type { Storage } from '../../storage/types.js';
import type { Image, OpenOptions } from '../image.js';
import type { CreateContext, FormatDriver, HeaderSummary, Layout } from '../types.js';
import { readVmdkFacts } from './open.js';
import { parseCreateParams, VMDK_OPTIONS, VMDK_UNSUPPORTED } from './params.js';
import { planVmdk } from './plan.js';
import { probeVmdk } from './probe.js';

/* Readers, writers and measure load on first use: `create` needs none of them (start-up time). */
export const vmdkDriver: FormatDriver = {
  name: 'vmdk',
  createOptions: VMDK_OPTIONS,
  unsupportedCreateOptions: VMDK_UNSUPPORTED,
  needsBackingHeader: true,

  probe(head: Uint8Array): number {
    return probeVmdk(head);
  },

  async readHeader(storage: Storage): Promise<HeaderSummary> {
    const facts = await readVmdkFacts(storage);
    return { format: 'vmdk', virtualSize: facts.virtualSize, vmdkCid: facts.cid };
  },

  planCreate(ctx: CreateContext): Layout {
    return planVmdk(parseCreateParams(ctx));
  },

  async open(storage: Storage, options: OpenOptions): Promise<Image> {
    return (await import('./image.js')).openVmdk(storage, options);
  },

  async createWriter(storage, ctx, compress) {
    return (await import('./writer.js')).createVmdkWriter(storage, ctx, compress);
  },

  async measure(ctx, source) {
    return (await import('./measure.js')).measureVmdk(parseCreateParams(ctx), source);
  },
};
