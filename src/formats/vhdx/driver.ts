/**
 * vhdx format driver: Microsoft "VHDX Format Specification" v1.00, with the behaviour of
 * qemu-img 7.2's block/vhdx.c. Creation writes fixed and dynamic disks structurally identical to
 * `qemu-img create -f vhdx` (same offsets, tables and BAT; random GUIDs, sequence number and the
 * creator string differ) (plan.ts); readHeader applies vhdx_open's checks (header.ts); open()
 * reads, maps and checks images (image.ts, bat.ts, check.ts) and writes them in place when opened
 * writable (write.ts); createWriter makes it a convert
 * target laid out like `qemu-img convert -O vhdx`, and measure answers with the same arithmetic
 * (writer.ts).
 */
import type { Storage } from '../../storage/types.js';
import type { CreateContext, FormatDriver, HeaderSummary, Layout } from '../types.js';
import { readVhdxFacts } from './header.js';
import { VHDX_OPTIONS, VHDX_UNSUPPORTED } from './params.js';
import { planVhdxCreate } from './plan.js';
import { hasFileSignature } from './structs.js';

/** QEMU's vhdx_probe: "vhdxfile" at offset 0. */
export function probeVhdx(head: Uint8Array): number {
  return hasFileSignature(head) ? 100 : 0;
}

/* Readers, writers and measure load on first use: `create` needs none of them (start-up time). */
export const vhdxDriver: FormatDriver = {
  name: 'vhdx',
  createOptions: VHDX_OPTIONS,
  unsupportedCreateOptions: VHDX_UNSUPPORTED,

  probe: probeVhdx,

  async readHeader(storage: Storage): Promise<HeaderSummary> {
    const facts = await readVhdxFacts(storage);
    return { format: 'vhdx', virtualSize: facts.virtualSize };
  },

  async open(storage, options) {
    return (await import('./image.js')).openVhdx(storage, options);
  },

  planCreate(ctx: CreateContext): Layout {
    return planVhdxCreate(ctx);
  },

  async createWriter(storage, ctx, compress) {
    return (await import('./writer.js')).createVhdxWriter(storage, ctx, compress);
  },

  async measure(ctx, source) {
    return (await import('./writer.js')).measureVhdx(ctx, source);
  },
};
