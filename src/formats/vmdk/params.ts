/**
 * vmdk creation options (qemu-img 7.2's vmdk_create_opts, in its order) and their validation,
 * in the order vmdk_co_create_opts / vmdk_co_do_create check them, followed by vmimg's own
 * refusals of inputs for which qemu-img 7.2 writes an image it cannot open or that contradicts
 * itself (see docs/formats/vmdk.md, "Where vmimg refuses").
 */
import { VmimgError } from '../../util/errors.js';
import { roundUpBig, SECTOR_SIZE } from '../../util/units.js';
import { PROTOCOL_OPTIONS_UNSUPPORTED, type OptionSpec } from '../options.js';
import type { CreateContext } from '../types.js';
import { CREATE_GRAIN_SECTORS, CREATE_GTES_PER_GT, MAX_PARENT_HINT_BYTES, PARENT_LINE_BUFFER } from './constants.js';

export const VMDK_OPTIONS: readonly OptionSpec[] = [
  { name: 'size', type: 'size', help: 'Virtual disk size' },
  { name: 'adapter_type', type: 'str', help: 'Virtual adapter type, can be one of ide (default), lsilogic, buslogic or legacyESX' },
  { name: 'backing_file', type: 'str', help: 'File name of a base image' },
  { name: 'backing_fmt', type: 'str', help: "Must be 'vmdk' if present" },
  { name: 'compat6', type: 'bool', help: 'VMDK version 6 image', defaultText: 'off' },
  { name: 'hwversion', type: 'str', help: 'VMDK hardware version', defaultText: 'undefined' },
  { name: 'toolsversion', type: 'str', help: 'VMware guest tools version' },
  {
    name: 'subformat',
    type: 'str',
    help: 'VMDK flat extent format, can be one of {monolithicSparse (default) | monolithicFlat | twoGbMaxExtentSparse | twoGbMaxExtentFlat | streamOptimized} ',
  },
  { name: 'zeroed_grain', type: 'bool', help: 'Enable efficient zero writes using the zeroed-grain GTE feature' },
];

/**
 * qemu-img accepts the file protocol's options for vmdk too. `preallocation` has no effect there
 * (the extent file is created empty, then written), but vmimg does not take protocol options.
 */
export const VMDK_UNSUPPORTED: Readonly<Record<string, string>> = {
  ...PROTOCOL_OPTIONS_UNSUPPORTED,
  preallocation: 'file-protocol options are not supported (for vmdk, qemu-img ignores preallocation anyway)',
};

export const ADAPTER_TYPES = ['ide', 'buslogic', 'lsilogic', 'legacyESX'] as const;
export type AdapterType = (typeof ADAPTER_TYPES)[number];

export const SUBFORMATS = ['monolithicSparse', 'monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat', 'streamOptimized'] as const;
export type Subformat = (typeof SUBFORMATS)[number];
export type SupportedSubformat = 'monolithicSparse' | 'streamOptimized';

/**
 * Largest virtual size (after rounding up to a sector) vmimg creates: 2^32 − 512 grains of
 * 64 KiB. QEMU counts grains and grain tables in 32-bit integers; one grain more and the count
 * wraps, so qemu-img 7.2 writes a grain directory far too small for the capacity it records.
 */
export const MAX_CREATE_GRAINS = 2n ** 32n - BigInt(CREATE_GTES_PER_GT);
export const MAX_CREATE_BYTES = MAX_CREATE_GRAINS * BigInt(CREATE_GRAIN_SECTORS * SECTOR_SIZE);

/** Validated creation parameters. */
export interface VmdkCreateParams {
  /** Virtual size rounded up to whole sectors (QEMU's total_size), 0 < size ≤ MAX_CREATE_BYTES. */
  size: bigint;
  subformat: SupportedSubformat;
  adapterType: AdapterType;
  hwVersion: string;
  toolsVersion: string;
  zeroedGrain: boolean;
  /** The new image's basename, written into the extent line. */
  fileName: string;
  /** Backing file name as given, and the parent's CID. */
  backing?: { fileName: string; parentCid: number };
  /** The CID of the new image. */
  cid: number;
}

const FLAT_REASON = 'vmimg creates only the single-file subformats monolithicSparse and streamOptimized';

function invalidValue(key: string, value: string, allowed: readonly string[]): VmimgError {
  return new VmimgError('INVALID_OPTION', `Parameter '${key}' does not accept value '${value}' (allowed: ${allowed.join(', ')})`, { key, value });
}

/** The final path component (g_path_get_basename on POSIX). */
export function baseName(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  if (trimmed === '') return path === '' ? '.' : '/';
  return trimmed.slice(trimmed.lastIndexOf('/') + 1);
}

/** Reads and validates the options of `ctx`; throws VmimgError with qemu-img's reasons. */
export function parseCreateParams(ctx: CreateContext): VmdkCreateParams {
  const o = ctx.options;
  const backingFmt = o.str('backing_fmt');
  if (backingFmt !== undefined && backingFmt !== 'vmdk') {
    throw new VmimgError('BACKING_FORMAT_UNSUPPORTED', `backing_file must be a vmdk image (backing_fmt is '${backingFmt}')`, { backingFormat: backingFmt });
  }
  const adapterText = o.str('adapter_type') ?? 'ide';
  if (!(ADAPTER_TYPES as readonly string[]).includes(adapterText)) throw invalidValue('adapter_type', adapterText, ADAPTER_TYPES);
  const subformatText = o.str('subformat') ?? 'monolithicSparse';
  if (!(SUBFORMATS as readonly string[]).includes(subformatText)) throw invalidValue('subformat', subformatText, SUBFORMATS);

  let hwVersion = o.str('hwversion');
  if (hwVersion === 'undefined') hwVersion = undefined;
  if (o.bool('compat6', false)) {
    if (hwVersion !== undefined) {
      throw new VmimgError('INVALID_OPTION', `compat6 cannot be enabled with hwversion set (hwversion=${hwVersion})`, { key: 'compat6', hwversion: hwVersion });
    }
    hwVersion = '6';
  }
  if (subformatText !== 'monolithicSparse' && subformatText !== 'streamOptimized') {
    throw new VmimgError('UNSUPPORTED_OPTION', `vmdk subformat '${subformatText}' is not supported: ${FLAT_REASON}`, { key: 'subformat', value: subformatText });
  }

  const backingFile = o.str('backing_file');
  let backing: VmdkCreateParams['backing'];
  if (backingFile !== undefined) {
    const parent = ctx.backing;
    if (!parent) throw new VmimgError('INTERNAL', 'vmdk create over a backing file needs its header (needsBackingHeader)', { backingFile });
    if (parent.format !== 'vmdk') {
      throw new VmimgError('BACKING_FORMAT_UNSUPPORTED', `Invalid backing file format: ${parent.format}. Must be vmdk (backing file '${backingFile}')`, {
        backingFile,
        format: parent.format,
      });
    }
    if (parent.vmdkCid === undefined) throw new VmimgError('BACKING_UNPARSABLE', `Failed to read parent CID of '${backingFile}'`, { backingFile });
    checkBackingName(backingFile);
    backing = { fileName: backingFile, parentCid: parent.vmdkCid };
  }

  const size = roundUpBig(ctx.size, BigInt(SECTOR_SIZE));
  if (size === 0n) {
    throw new VmimgError(
      'SIZE_OUT_OF_RANGE',
      'Invalid vmdk size 0: a sparse vmdk of capacity 0 cannot be opened (QEMU reads its embedded descriptor as a descriptor file and rejects it)',
      { value: '0' },
    );
  }
  if (size > MAX_CREATE_BYTES) {
    throw new VmimgError(
      'SIZE_OUT_OF_RANGE',
      `Invalid vmdk size ${ctx.size}: a sparse extent holds at most ${MAX_CREATE_GRAINS} grains of 64 KiB (${MAX_CREATE_BYTES} bytes); image is too large`,
      { value: ctx.size.toString(), max: MAX_CREATE_BYTES.toString() },
    );
  }

  const random = ctx.random(4);
  const cid = new DataView(random.buffer, random.byteOffset, 4).getUint32(0, true);
  const params: VmdkCreateParams = {
    size,
    subformat: subformatText,
    adapterType: adapterText as AdapterType,
    hwVersion: hwVersion ?? '4',
    toolsVersion: o.str('toolsversion') ?? '2147483647',
    zeroedGrain: o.bool('zeroed_grain', false),
    fileName: baseName(ctx.filename),
    cid,
  };
  if (backing) params.backing = backing;
  return params;
}

/**
 * A backing name must survive the round trip through parentFileNameHint="…": QEMU cuts the line
 * to 4095 bytes (the image then fails to open: no closing quote within 4095 bytes), and a '"'
 * in the name would end the value early.
 */
function checkBackingName(name: string): void {
  const bytes = Buffer.byteLength(name, 'utf8');
  const max = PARENT_LINE_BUFFER - 1 - 'parentFileNameHint=""'.length;
  if (bytes > max) {
    throw new VmimgError(
      'PATH_TOO_LONG',
      `Backing file name is ${bytes} bytes long; a vmdk parentFileNameHint holds at most ${max} (QEMU truncates longer ones and cannot open the result; limit ${MAX_PARENT_HINT_BYTES} for the name it reads)`,
      { backingFile: name, length: bytes, max },
    );
  }
  if (name.includes('"')) {
    throw new VmimgError('INVALID_OPTION', `Backing file name '${name}' contains '"', which cannot be written in a vmdk parentFileNameHint`, { backingFile: name });
  }
}
