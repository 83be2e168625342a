/**
 * qcow2 format driver (QEMU docs/interop/qcow2.txt; behaviour of qemu-img 7.2). Creation replays
 * qemu-img's create on a pure allocator model (plan.ts) so the planned file is byte-identical to
 * the one `qemu-img create -f qcow2` writes; readHeader validates cluster 0 as QEMU's open does.
 */
import type { Storage } from '../../storage/types.js';
import type { CreateContext, FormatDriver, HeaderSummary, Layout } from '../types.js';
import { parseCreateParams, QCOW2_OPTIONS, QCOW2_UNSUPPORTED } from './params.js';
import { planQcow2 } from './plan.js';
import { probeQcow2, readQcow2Header } from './validate.js';

/* Readers, writers and measure load on first use: `create` needs none of them (start-up time). */
export const qcow2Driver: FormatDriver = {
  name: 'qcow2',
  createOptions: QCOW2_OPTIONS,
  unsupportedCreateOptions: QCOW2_UNSUPPORTED,

  probe(head: Uint8Array): number {
    return probeQcow2(head);
  },

  async readHeader(storage: Storage): Promise<HeaderSummary> {
    const h = await readQcow2Header(storage);
    return { format: 'qcow2', virtualSize: h.virtualSize };
  },

  planCreate(ctx: CreateContext): Layout {
    return planQcow2(parseCreateParams(ctx));
  },

  async createWriter(storage, ctx, compress, companion) {
    return (await import('./writer.js')).createQcow2Writer(storage, ctx, compress, companion);
  },

  companionFile(ctx: CreateContext): string | undefined {
    return parseCreateParams(ctx).dataFile;
  },

  async open(storage, options) {
    return (await import('./image.js')).openQcow2(storage, options);
  },

  async measure(ctx, source) {
    return (await import('./measure.js')).measureQcow2(ctx, source);
  },
};
