/**
 * raw: the disk bytes as they are. Creation is a sparse file of ROUND_UP(size, 512) bytes
 * (QEMU's file driver works in sectors), physically allocated with preallocation=falloc|full.
 * With preallocation=off or falloc (after the fallocate) its first block is written as zeros, as
 * QEMU's file-posix create does
 * (allocate_first_block, so that alignment probing works): `qemu-img map` then shows the first
 * 4096 bytes (512 in a file shorter than 4096) as data, and `measure` counts them.
 */
import { toSafeNumber } from '../../util/size.js';
import { roundUpBig, SECTOR_SIZE } from '../../util/units.js';
import type { Storage } from '../../storage/types.js';
import { preallocationOf, PROTOCOL_OPTIONS_UNSUPPORTED, type OptionSpec } from '../options.js';
import type { CreateContext, FormatDriver, HeaderSummary, Layout } from '../types.js';

export const RAW_OPTIONS: readonly OptionSpec[] = [
  { name: 'size', type: 'size', help: 'Virtual disk size' },
  { name: 'preallocation', type: 'str', help: 'Preallocation mode (allowed values: off, falloc, full)' },
];

/* Readers, writers and measure load on first use: `create` needs none of them (start-up time). */
export const rawDriver: FormatDriver = {
  name: 'raw',
  createOptions: RAW_OPTIONS,
  unsupportedCreateOptions: PROTOCOL_OPTIONS_UNSUPPORTED,

  probe(): number {
    return 1;
  },

  async readHeader(storage: Storage): Promise<HeaderSummary> {
    const length = BigInt(await storage.size());
    return { format: 'raw', virtualSize: roundUpBig(length, BigInt(SECTOR_SIZE)) };
  },

  async open(storage, options) {
    return (await import('./image.js')).openRaw(storage, options);
  },
  async createWriter(storage, ctx, compress) {
    return (await import('./writer.js')).createRawWriter(storage, ctx, compress);
  },

  /** A raw file needs exactly its (sector-rounded) size, whatever the source holds. */
  async measure(ctx) {
    const size = roundUpBig(ctx.size, BigInt(SECTOR_SIZE));
    return { required: size, fullyAllocated: size };
  },

  planCreate(ctx: CreateContext): Layout {
    const prealloc = preallocationOf(ctx, ['off', 'falloc', 'full']);
    const length = toSafeNumber(roundUpBig(ctx.size, BigInt(SECTOR_SIZE)), 'raw image size');
    return {
      length,
      writes: prealloc !== 'full' && length > 0 ? [{ offset: 0, data: new Uint8Array(firstBlockLength(length)) }] : [],
      allocate: prealloc === 'off' || length === 0 ? [] : [{ offset: 0, length, write: prealloc === 'full' }],
      summary: { virtualSize: BigInt(length) },
    };
  },
};

/** How much of a fresh raw file QEMU's create writes at offset 0 (file-posix allocate_first_block). */
export function firstBlockLength(fileLength: number): number {
  return Math.min(fileLength, fileLength < 4096 ? SECTOR_SIZE : 4096);
}
