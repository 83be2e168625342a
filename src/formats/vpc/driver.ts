/**
 * vpc (VHD) format driver: Microsoft "Virtual Hard Disk Image Format Specification" v1.0, with
 * the behaviour of qemu-img 7.2's block/vpc.c. Creation writes fixed and dynamic disks
 * byte-identical to `qemu-img create -f vpc` except for the footer's timestamp and UUID
 * (plan.ts); readHeader applies vpc_open's checks and size rules (header.ts); open() maps and
 * checks images the way qemu-img 7.2 sees them (image.ts, check.ts); convert writes them as
 * `qemu-img convert -O vpc` lays them out (writer.ts); measure answers for that writer (measure.ts).
 */
import type { Storage } from '../../storage/types.js';
import type { CreateContext, FormatDriver, HeaderSummary, Layout } from '../types.js';
import { FOOTER_COOKIE } from './footer.js';
import { readVpcFacts } from './header.js';
import { parseVpcParams, planVpc, VPC_OPTIONS, VPC_UNSUPPORTED } from './plan.js';

/** QEMU's vpc_probe: "conectix" at offset 0 (only dynamic disks have a footer copy there). */
export function probeVpc(head: Uint8Array): number {
  if (head.length < 8) return 0;
  for (let i = 0; i < 8; i++) if (head[i] !== FOOTER_COOKIE.charCodeAt(i)) return 0;
  return 100;
}

/* Readers, writers and measure load on first use: `create` needs none of them (start-up time). */
export const vpcDriver: FormatDriver = {
  name: 'vpc',
  createOptions: VPC_OPTIONS,
  unsupportedCreateOptions: VPC_UNSUPPORTED,

  probe: probeVpc,

  async readHeader(storage: Storage): Promise<HeaderSummary> {
    const facts = await readVpcFacts(storage);
    return { format: 'vpc', virtualSize: facts.virtualSize };
  },

  async open(storage, options) {
    return (await import('./image.js')).openVpc(storage, options);
  },

  planCreate(ctx: CreateContext): Layout {
    return planVpc(parseVpcParams(ctx));
  },

  async createWriter(storage, ctx, compress) {
    return (await import('./writer.js')).createVpcWriter(storage, ctx, compress);
  },

  async measure(ctx, source) {
    return (await import('./measure.js')).measureVpc(ctx, source);
  },
};
