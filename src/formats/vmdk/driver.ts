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
import { openVmdk } from './image.js';
import { readVmdkFacts } from './open.js';
import { parseCreateParams, VMDK_OPTIONS, VMDK_UNSUPPORTED } from './params.js';
import { planVmdk } from './plan.js';
import { probeVmdk } from './probe.js';
import { measureVmdk } from './measure.js';
import { createVmdkWriter } from './writer.js';

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

  open(storage: Storage, options: OpenOptions): Promise<Image> {
    return openVmdk(storage, options);
  },

  createWriter: createVmdkWriter,

  measure(ctx, source) {
    return measureVmdk(parseCreateParams(ctx), source);
  },
};
