/**
 * raw: the disk bytes as they are. Creation is a sparse file of ROUND_UP(size, 512) bytes
 * (QEMU's file driver works in sectors), physically allocated with preallocation=falloc|full.
 */
import { VmimgError } from '../../util/errors.js';
import { toSafeNumber } from '../../util/size.js';
import { roundUpBig, SECTOR_SIZE } from '../../util/units.js';
import type { Storage } from '../../storage/types.js';
import type { OptionSpec } from '../options.js';
import type { CreateContext, FormatDriver, HeaderSummary, Layout } from '../types.js';
import { openRaw } from './image.js';

export const RAW_OPTIONS: readonly OptionSpec[] = [
  { name: 'size', type: 'size', help: 'Virtual disk size' },
  { name: 'preallocation', type: 'str', help: 'Preallocation mode (allowed values: off, falloc, full)' },
];

export type Preallocation = 'off' | 'metadata' | 'falloc' | 'full';

/** Reads a preallocation option, allowing only `allowed` modes (QEMU's error wording). */
export function preallocationOf(ctx: CreateContext, allowed: readonly Preallocation[]): Preallocation {
  const text = ctx.options.str('preallocation') ?? 'off';
  if (!(allowed as readonly string[]).includes(text)) {
    throw new VmimgError('INVALID_OPTION', `Parameter 'preallocation' does not accept value '${text}' (allowed: ${allowed.join(', ')})`, { key: 'preallocation', value: text });
  }
  return text as Preallocation;
}

export const rawDriver: FormatDriver = {
  name: 'raw',
  createOptions: RAW_OPTIONS,

  probe(): number {
    return 1;
  },

  async readHeader(storage: Storage): Promise<HeaderSummary> {
    const length = BigInt(await storage.size());
    return { format: 'raw', virtualSize: roundUpBig(length, BigInt(SECTOR_SIZE)) };
  },

  open: openRaw,

  planCreate(ctx: CreateContext): Layout {
    const prealloc = preallocationOf(ctx, ['off', 'falloc', 'full']);
    const length = toSafeNumber(roundUpBig(ctx.size, BigInt(SECTOR_SIZE)), 'raw image size');
    return {
      length,
      writes: [],
      allocate: prealloc === 'off' || length === 0 ? [] : [{ offset: 0, length, write: prealloc === 'full' }],
      summary: { virtualSize: BigInt(length) },
    };
  },
};
