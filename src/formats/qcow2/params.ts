/**
 * qcow2 creation options: the list qemu-img 7.2 prints (Formatting-line order, help texts) and
 * their semantic checks, in the order qcow2_co_create_opts()/qcow2_co_create() make them:
 * enum values (compat, preallocation, compression_type), then extended_l2 vs compat, cluster
 * size, backing file vs preallocation, lazy refcounts, refcount width, compression vs compat.
 * Every failure is INVALID_OPTION naming the key and the value.
 */
import { VmimgError } from '../../util/errors.js';
import { roundUpBig, SECTOR_SIZE } from '../../util/units.js';
import type { OptionSpec } from '../options.js';
import { preallocationOf, type Preallocation } from '../options.js';
import type { CreateContext } from '../types.js';
import { COMPRESSION_ZLIB, COMPRESSION_ZSTD, DEFAULT_CLUSTER_SIZE, EXTL2_SUBCLUSTERS, MAX_CLUSTER_BITS, MIN_CLUSTER_BITS } from './constants.js';

export const QCOW2_OPTIONS: readonly OptionSpec[] = [
  { name: 'cluster_size', type: 'size', help: 'qcow2 cluster size', defaultText: String(DEFAULT_CLUSTER_SIZE) },
  { name: 'extended_l2', type: 'bool', help: 'Extended L2 tables', defaultText: 'off' },
  { name: 'preallocation', type: 'str', help: 'Preallocation mode (allowed values: off, metadata, falloc, full)' },
  { name: 'compression_type', type: 'str', help: 'Compression method used for image cluster compression', defaultText: 'zlib' },
  { name: 'size', type: 'size', help: 'Virtual disk size' },
  { name: 'compat', type: 'str', help: 'Compatibility level (v2 [0.10] or v3 [1.1])' },
  { name: 'backing_file', type: 'str', help: 'File name of a base image' },
  { name: 'backing_fmt', type: 'str', help: 'Image format of the base image' },
  { name: 'data_file', type: 'str', help: 'File name of an external data file' },
  { name: 'data_file_raw', type: 'bool', help: 'The external data file must stay valid as a raw image' },
  { name: 'lazy_refcounts', type: 'bool', help: 'Postpone refcount updates', defaultText: 'off' },
  { name: 'refcount_bits', type: 'num', help: 'Width of a reference count entry in bits', defaultText: '16' },
];

const NO_ENCRYPTION = 'vmimg does not create encrypted qcow2 images';
const PROTOCOL_OPTION = 'file-protocol options are not supported';

export const QCOW2_UNSUPPORTED: Readonly<Record<string, string>> = {
  encryption: NO_ENCRYPTION,
  'encrypt.format': NO_ENCRYPTION,
  'encrypt.cipher-alg': NO_ENCRYPTION,
  'encrypt.cipher-mode': NO_ENCRYPTION,
  'encrypt.hash-alg': NO_ENCRYPTION,
  'encrypt.iter-time': NO_ENCRYPTION,
  'encrypt.ivgen-alg': NO_ENCRYPTION,
  'encrypt.ivgen-hash-alg': NO_ENCRYPTION,
  'encrypt.key-secret': NO_ENCRYPTION,
  nocow: PROTOCOL_OPTION,
  extent_size_hint: PROTOCOL_OPTION,
};

/** Validated creation parameters. */
export interface CreateParams {
  version: 2 | 3;
  clusterBits: number;
  clusterSize: number;
  extendedL2: boolean;
  preallocation: Preallocation;
  compressionType: number;
  lazyRefcounts: boolean;
  refcountOrder: number;
  /** Virtual size rounded up to 512 bytes (qcow2_co_create_opts rounds silently). */
  size: bigint;
  backingFile?: string;
  backingFormat?: string;
  /**
   * External data file name (spec "External data file"), recorded verbatim in header extension
   * 0x44415441 and created at that path as given (qemu-img: relative to the working directory).
   */
  dataFile?: string;
  /** data_file_raw: the data file stays a valid raw image of the guest (autoclear bit 1). */
  dataFileRaw: boolean;
}

function invalid(key: string, value: string, message: string): VmimgError {
  return new VmimgError('INVALID_OPTION', message, { key, value });
}

/** compat: QEMU maps 0.10/1.1 onto its QAPI values v2/v3 and accepts those too. */
function versionOf(text: string | undefined): 2 | 3 {
  if (text === undefined) return 3;
  if (text === '0.10' || text === 'v2') return 2;
  if (text === '1.1' || text === 'v3') return 3;
  throw invalid('compat', text, `Invalid compatibility level '${text}' (allowed: 0.10, 1.1, v2, v3)`);
}

export function parseCreateParams(ctx: CreateContext): CreateParams {
  const o = ctx.options;
  const compatText = o.str('compat');
  const version = versionOf(compatText);
  const preallocation = preallocationOf(ctx, ['off', 'metadata', 'falloc', 'full']);
  const compressionText = o.str('compression_type') ?? 'zlib';
  if (compressionText !== 'zlib' && compressionText !== 'zstd') {
    throw invalid('compression_type', compressionText, `Invalid compression_type '${compressionText}' (allowed: zlib, zstd)`);
  }

  const extendedL2 = o.bool('extended_l2', false);
  if (extendedL2 && version < 3) {
    throw invalid('extended_l2', 'on', `extended_l2=on needs compat=1.1 (v3); compat is '${compatText}'`);
  }

  const clusterSize = o.big('cluster_size') ?? BigInt(DEFAULT_CLUSTER_SIZE);
  const clusterBits = validClusterBits(clusterSize);
  const minExtended = 2 ** MIN_CLUSTER_BITS * EXTL2_SUBCLUSTERS;
  if (extendedL2 && Number(clusterSize) < minExtended) {
    throw invalid('cluster_size', String(clusterSize), `Extended L2 entries are only supported with cluster sizes of at least ${minExtended} bytes; cluster_size is ${clusterSize}`);
  }

  const backingFile = o.str('backing_file');
  if (backingFile !== undefined && preallocation !== 'off' && !extendedL2) {
    throw invalid('preallocation', preallocation, `preallocation=${preallocation} cannot be combined with a backing file unless extended_l2=on`);
  }

  const lazyRefcounts = o.bool('lazy_refcounts', false);
  if (lazyRefcounts && version < 3) {
    throw invalid('lazy_refcounts', o.get('lazy_refcounts')!.text, `lazy_refcounts=on needs compat=1.1 (v3); compat is '${compatText}'`);
  }

  const refcountBits = o.big('refcount_bits') ?? 16n;
  if (refcountBits > 64n || refcountBits === 0n || (refcountBits & (refcountBits - 1n)) !== 0n) {
    throw invalid('refcount_bits', String(refcountBits), `Refcount width must be a power of two and may not exceed 64 bits, not ${refcountBits}`);
  }
  if (version < 3 && refcountBits !== 16n) {
    throw invalid('refcount_bits', String(refcountBits), `refcount_bits=${refcountBits} needs compat=1.1 (v3); compat=${compatText} images use 16`);
  }

  // qcow2_co_create(): data_file_raw needs a data file and no backing file, and implies (at
  // least) metadata preallocation, so the L2 tables map every cluster 1:1 onto the data file.
  const dataFile = o.str('data_file');
  const dataFileRaw = o.bool('data_file_raw', false);
  let effectivePrealloc = preallocation;
  if (dataFileRaw && dataFile === undefined) throw invalid('data_file_raw', o.get('data_file_raw')!.text, 'data-file-raw requires data-file');
  if (dataFileRaw && backingFile !== undefined) throw invalid('data_file_raw', o.get('data_file_raw')!.text, 'Backing file and data-file-raw cannot be used at the same time');
  if (dataFileRaw && preallocation === 'off') effectivePrealloc = 'metadata';
  if (dataFile !== undefined && version < 3) {
    throw invalid('data_file', dataFile, 'External data files are only supported with compatibility level 1.1 and above (use version=v3 or greater)');
  }
  if (dataFile === '') throw new VmimgError('FILE_NOT_FOUND', "Could not create '': No such file or directory", { key: 'data_file', value: '' });

  if (compressionText !== 'zlib' && version < 3) {
    throw invalid('compression_type', compressionText, `compression_type=${compressionText} needs compat=1.1 (v3); compat is '${compatText}'`);
  }

  const params: CreateParams = {
    version,
    clusterBits,
    clusterSize: Number(clusterSize),
    extendedL2,
    preallocation: effectivePrealloc,
    compressionType: compressionText === 'zstd' ? COMPRESSION_ZSTD : COMPRESSION_ZLIB,
    lazyRefcounts,
    refcountOrder: Math.log2(Number(refcountBits)),
    size: roundUpBig(ctx.size, BigInt(SECTOR_SIZE)),
    dataFileRaw,
  };
  if (dataFile !== undefined) params.dataFile = dataFile;
  if (backingFile !== undefined) params.backingFile = backingFile;
  const backingFormat = o.str('backing_fmt');
  if (backingFormat !== undefined) params.backingFormat = backingFormat;
  return params;
}

/** validate_cluster_size(): a power of two from 512 to 2 MiB. */
function validClusterBits(size: bigint): number {
  for (let bits = MIN_CLUSTER_BITS; bits <= MAX_CLUSTER_BITS; bits++) {
    if (size === 1n << BigInt(bits)) return bits;
  }
  throw invalid('cluster_size', String(size), `Cluster size must be a power of two between 512 and 2048k, not ${size}`);
}
