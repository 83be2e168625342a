/**
 * vhdx creation options (qemu-img 7.2's vhdx_create_opts, in its order), their validation in the
 * order vhdx_co_create_opts / vhdx_co_create apply it, and the BAT geometry shared by the
 * planner and the reader.
 *
 * qemu-img rounds before it validates: the size up to 512 bytes, log_size and block_size up to
 * 1 MiB (in 64-bit arithmetic, so a value within 1 MiB of 2^64 wraps to 0), a block_size of 0
 * means "choose", and one above 256 MiB is silently lowered to 256 MiB. What remains to reject is
 * a size above 64 TiB, a log of 0 or of 4 GiB and more, and a block size that is not a power of
 * two.
 */
import { VmimgError } from '../../util/errors.js';
import { roundUpBig, SECTOR_SIZE } from '../../util/units.js';
import { PROTOCOL_OPTIONS_UNSUPPORTED, type OptionSpec } from '../options.js';
import type { CreateContext } from '../types.js';
import { BLOCK_SIZE_MAX, BLOCK_SIZE_MIN, MAX_SECTORS_PER_BLOCK, MiB } from './structs.js';

export const VHDX_OPTIONS: readonly OptionSpec[] = [
  { name: 'size', type: 'size', help: 'Virtual disk size; max of 64TB.' },
  { name: 'log_size', type: 'size', help: 'Log size; min 1MB.', defaultText: '1048576' },
  { name: 'block_size', type: 'size', help: 'Block Size; min 1MB, max 256MB. 0 means auto-calculate based on image size.', defaultText: '0' },
  { name: 'subformat', type: 'str', help: "VHDX format type, can be either 'dynamic' or 'fixed'. Default is 'dynamic'." },
  {
    name: 'block_state_zero',
    type: 'bool',
    help: "Force use of payload blocks of type 'ZERO'. Non-standard, but default.  Do not set to 'off' when using 'qemu-img convert' with subformat=dynamic.",
  },
];

/** qemu-img also takes the file protocol's options for vhdx; it ignores preallocation there. */
export const VHDX_UNSUPPORTED: Readonly<Record<string, string>> = {
  ...PROTOCOL_OPTIONS_UNSUPPORTED,
  preallocation: 'file-protocol options are not supported (for vhdx, qemu-img ignores preallocation anyway)',
};

/** vmimg's version, recorded in the file identifier's creator field. */
export const VMIMG_VERSION = '0.1.0';
export const CREATOR = `vmimg v${VMIMG_VERSION}`;

export const TiB = 1n << 40n;
export const GiB = 1n << 30n;
/** VHDX_MAX_IMAGE_SIZE: 64 TiB. */
export const MAX_IMAGE_SIZE = 64n * TiB;
export const DEFAULT_LOG_SIZE = MiB;
/** The logical (and physical) sector size qemu-img writes. */
export const CREATE_SECTOR_SIZE = 512;

const U64 = 1n << 64n;
const MIB = BigInt(MiB);

export type VhdxSubformat = 'dynamic' | 'fixed';

export interface VhdxCreateParams {
  /** Virtual size rounded up to 512 bytes. */
  size: bigint;
  logSize: number;
  blockSize: number;
  subformat: VhdxSubformat;
  /** block_state_zero: BAT entries of payload blocks are ZERO rather than NOT_PRESENT/FULLY_PRESENT. */
  blockStateZero: boolean;
}

/** The block size qemu-img chooses when none is given (vhdx_co_create). */
export function autoBlockSize(size: bigint): number {
  if (size > 32n * TiB) return 64 * MiB;
  if (size > 100n * GiB) return 32 * MiB;
  if (size > GiB) return 16 * MiB;
  return 8 * MiB;
}

/** ROUND_UP(value, 1 MiB) in uint64_t arithmetic (wraps past 2^64). */
function roundUpMiB64(value: bigint): bigint {
  return roundUpBig(value, MIB) % U64;
}

function invalid(key: string, value: string, message: string): VmimgError {
  return new VmimgError('INVALID_OPTION', message, { key, value });
}

export function parseVhdxParams(ctx: CreateContext): VhdxCreateParams {
  const o = ctx.options;
  const subformat = o.str('subformat') ?? 'dynamic';
  if (subformat !== 'dynamic' && subformat !== 'fixed') {
    throw invalid('subformat', subformat, `Parameter 'subformat' does not accept value '${subformat}' (allowed: dynamic, fixed)`);
  }
  const size = roundUpBig(ctx.size, BigInt(SECTOR_SIZE));
  const logGiven = o.big('log_size');
  const logRounded = logGiven === undefined ? undefined : roundUpMiB64(logGiven);
  let blockRounded = o.big('block_size') === undefined ? 0n : roundUpMiB64(o.big('block_size')!);
  if (blockRounded > BigInt(BLOCK_SIZE_MAX)) blockRounded = BigInt(BLOCK_SIZE_MAX);

  if (size > MAX_IMAGE_SIZE) {
    throw new VmimgError('SIZE_OUT_OF_RANGE', `Image size too large; max of 64TB (${ctx.size} bytes)`, {
      size: ctx.size.toString(),
      max: MAX_IMAGE_SIZE.toString(),
    });
  }
  let logSize = DEFAULT_LOG_SIZE;
  if (logRounded !== undefined) {
    const text = o.get('log_size')!.text;
    if (logRounded > 0xffff_ffffn) throw invalid('log_size', text, `Log size must be smaller than 4 GB (log_size=${text})`);
    if (logRounded < MIB || logRounded % MIB !== 0n) throw invalid('log_size', text, `Log size must be a multiple of 1 MB (log_size=${text})`);
    logSize = Number(logRounded);
  }
  const blockStateZero = o.bool('block_state_zero', true);
  const blockSize = blockRounded === 0n ? autoBlockSize(size) : Number(blockRounded);
  const blockText = o.get('block_size')?.text ?? String(blockSize);
  if (blockSize < BLOCK_SIZE_MIN || blockSize % MiB !== 0) {
    throw invalid('block_size', blockText, `Block size must be a multiple of 1 MB (block_size=${blockText} is used as ${blockSize})`);
  }
  if ((blockSize & (blockSize - 1)) !== 0) {
    throw invalid('block_size', blockText, `Block size must be a power of two (block_size=${blockText} is used as ${blockSize})`);
  }
  if (blockSize > BLOCK_SIZE_MAX) throw invalid('block_size', blockText, `Block size must not exceed ${BLOCK_SIZE_MAX}`);
  return { size, logSize, blockSize, subformat, blockStateZero };
}

/** The BAT's shape for a disk (VHDX spec §3.4; QEMU's vhdx_calc_bat_entries). */
export interface BatGeometry {
  blockSize: number;
  logicalSectorSize: number;
  /** Payload blocks per sector bitmap block: 2^23 × logical sector size / block size. */
  chunkRatio: number;
  chunkRatioBits: number;
  /**
   * Payload blocks, as QEMU counts them: ceil(size / block size) truncated to 32 bits. Exact for
   * every disk whose block count fits in 32 bits (all that vmimg creates or accepts).
   */
  dataBlocks: number;
  /**
   * BAT entries QEMU requires, payload and sector bitmap entries interleaved, computed in
   * 32-bit unsigned arithmetic like QEMU: for an empty disk (no data blocks) "data blocks − 1"
   * wraps, so QEMU expects (2^32 − 1) >> chunkRatioBits entries.
   */
  batEntries: number;
}

export function batGeometry(virtualSize: bigint, blockSize: number, logicalSectorSize: number): BatGeometry {
  const chunkRatio = Number((BigInt(MAX_SECTORS_PER_BLOCK) * BigInt(logicalSectorSize)) / BigInt(blockSize));
  const chunkRatioBits = Math.round(Math.log2(chunkRatio));
  const dataBlocks = Number(((virtualSize + BigInt(blockSize) - 1n) / BigInt(blockSize)) & 0xffff_ffffn);
  const batEntries = (dataBlocks + ((dataBlocks - 1) >>> chunkRatioBits)) >>> 0;
  return { blockSize, logicalSectorSize, chunkRatio, chunkRatioBits, dataBlocks, batEntries };
}

/** BAT index of payload block `block` (its sector bitmap entries interleaved before it). */
export function payloadBatIndex(g: BatGeometry, block: number): number {
  return block + Math.floor(block / g.chunkRatio);
}
