/**
 * Reading a qcow2 header from untrusted bytes: decode cluster 0 and apply the checks QEMU 7.2's
 * qcow2_do_open() makes before it trusts any table, in its order and with its limits, so an image
 * qemu-img refuses is refused here too. Only cluster 0 is read (at most 2 MiB).
 *
 * Codes: limits QEMU calls "Unsupported"/"too large"/"too big" (version, cluster size, unknown
 * incompatible features, encryption method, table sizes) are UNSUPPORTED_IMAGE; values that are
 * inconsistent or out of place (magic, header length, offsets, L1 smaller than the disk,
 * extensions running past their area, a backing name outside cluster 0) are CORRUPT_IMAGE.
 */
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import {
  COMPRESSION_ZLIB,
  COMPRESSION_ZSTD,
  CRYPT_LUKS,
  EXT_BACKING_FORMAT,
  EXT_CRYPTO_HEADER,
  EXT_END,
  EXT_FEATURE_TABLE,
  INCOMPAT_COMPRESSION,
  INCOMPAT_EXTL2,
  INCOMPAT_KNOWN,
  INT64_MAX,
  INT_MAX,
  L1E_SIZE,
  L2E_SIZE_EXTENDED,
  L2E_SIZE_NORMAL,
  MAX_BACKING_FORMAT,
  MAX_BACKING_NAME,
  MAX_CLUSTER_BITS,
  MAX_L1_SIZE_BYTES,
  MAX_REFTABLE_SIZE_BYTES,
  MAX_SNAPSHOTS,
  MIN_CLUSTER_BITS,
  QCOW2_MAGIC,
  SNAPSHOT_HEADER_SIZE,
  V3_MIN_HEADER_LENGTH,
} from './constants.js';
import { decodeFeatureTable, decodeHeader, HEADER_READ_SIZE, type FeatureName, type HeaderExtension, type Qcow2Header } from './header.js';

export interface ValidatedHeader {
  header: Qcow2Header;
  clusterSize: number;
  /** Virtual size as QEMU exposes it: the stored size rounded down to 512 bytes. */
  virtualSize: bigint;
  /** Bytes per L2 entry (16 with the extended L2 feature). */
  l2EntrySize: number;
  extensions: HeaderExtension[];
  featureNames: FeatureName[];
  backingFormat?: string;
  backingFile?: string;
}

function corrupt(name: string, message: string, details: Record<string, unknown> = {}): VmimgError {
  return new VmimgError('CORRUPT_IMAGE', `qcow2 image '${name}': ${message}`, { file: name, ...details });
}

function unsupported(name: string, message: string, details: Record<string, unknown> = {}): VmimgError {
  return new VmimgError('UNSUPPORTED_IMAGE', `qcow2 image '${name}': ${message}`, { file: name, ...details });
}

/** QCOW2 probe (qcow2_probe): magic QFI\xfb and version ≥ 2. */
export function probeQcow2(head: Uint8Array): number {
  if (head.length < 8) return 0;
  const v = new DataView(head.buffer, head.byteOffset, head.byteLength);
  return v.getUint32(0) === QCOW2_MAGIC && v.getUint32(4) >= 2 ? 100 : 0;
}

/**
 * How the header is validated. `check` is QEMU's BDRV_O_CHECK (qemu-img check): a missing
 * refcount table and a bad snapshot table pointer are then left for the check to report.
 */
export interface ValidateOptions {
  check?: boolean;
}

/** Reads cluster 0 of `storage` and validates it. */
export async function readQcow2Header(storage: Storage, options: ValidateOptions = {}): Promise<ValidatedHeader> {
  const fixed = decodeHeader(await storage.read(0, HEADER_READ_SIZE));
  checkIdentity(storage.name, fixed);
  const cluster0 = await storage.read(0, 2 ** fixed.clusterBits);
  return validateHeader(storage.name, cluster0, options);
}

function checkIdentity(name: string, h: Qcow2Header): void {
  if (h.magic !== QCOW2_MAGIC) throw corrupt(name, 'Image is not in qcow2 format', { magic: h.magic });
  if (h.version < 2 || h.version > 3) throw unsupported(name, `Unsupported qcow2 version ${h.version}`, { version: h.version });
  if (h.clusterBits < MIN_CLUSTER_BITS || h.clusterBits > MAX_CLUSTER_BITS) {
    throw unsupported(name, `Unsupported cluster size: 2^${h.clusterBits}`, { clusterBits: h.clusterBits });
  }
}

/** qcow2_validate_table(): entry count within `maxBytes`, offset cluster-aligned, end ≤ INT64_MAX. */
export function checkTable(name: string, what: string, offset: bigint, entries: number, entrySize: number, maxBytes: number, clusterSize: number): void {
  if (entries > Math.floor(maxBytes / entrySize)) throw unsupported(name, `${what} too large`, { entries });
  if (INT64_MAX - BigInt(entries) * BigInt(entrySize) < offset || offset % BigInt(clusterSize) !== 0n) {
    throw corrupt(name, `${what} offset invalid`, { offset: offset.toString() });
  }
}

/** Validates cluster 0 (the whole cluster, zero-padded past the end of the file). */
export function validateHeader(name: string, cluster0: Uint8Array, options: ValidateOptions = {}): ValidatedHeader {
  const h = decodeHeader(cluster0);
  checkIdentity(name, h);
  const clusterSize = 2 ** h.clusterBits;
  if (cluster0.length < clusterSize) throw new VmimgError('INTERNAL', `qcow2 header check got ${cluster0.length} of ${clusterSize} bytes`);
  if (h.version >= 3 && h.headerLength < V3_MIN_HEADER_LENGTH) throw corrupt(name, 'qcow2 header too short', { headerLength: h.headerLength });
  if (h.headerLength > clusterSize) throw corrupt(name, 'qcow2 header exceeds cluster size', { headerLength: h.headerLength });
  if (h.backingFileOffset > BigInt(clusterSize)) throw corrupt(name, 'Invalid backing file offset', { offset: h.backingFileOffset.toString() });
  const extEnd = h.backingFileOffset !== 0n ? Number(h.backingFileOffset) : clusterSize;

  if (h.compressionType !== COMPRESSION_ZLIB && h.compressionType !== COMPRESSION_ZSTD) {
    throw unsupported(name, `qcow2: unknown compression type: ${h.compressionType}`, { compressionType: h.compressionType });
  }
  const compressionBit = (h.incompatibleFeatures & INCOMPAT_COMPRESSION) !== 0n;
  if (compressionBit !== (h.compressionType !== COMPRESSION_ZLIB)) {
    throw corrupt(name, `qcow2: Compression type incompatible feature bit must ${compressionBit ? 'not ' : ''}be set`);
  }

  const unknown = h.incompatibleFeatures & ~INCOMPAT_KNOWN;
  if (unknown !== 0n) {
    const table = lenientFeatureTable(cluster0, h.headerLength, extEnd);
    throw unsupported(name, `Unsupported qcow2 feature(s): ${describeFeatures(unknown, table)}`, { incompatible: h.incompatibleFeatures.toString(16) });
  }
  if (h.refcountOrder > 6) throw corrupt(name, 'Reference count entry width too large; may not exceed 64 bits', { refcountOrder: h.refcountOrder });

  if (h.refcountTableClusters === 0 && !options.check) throw corrupt(name, 'Image does not contain a reference count table');
  checkTable(name, 'Reference count table', h.refcountTableOffset, h.refcountTableClusters, clusterSize, MAX_REFTABLE_SIZE_BYTES, clusterSize);
  if (!options.check) checkTable(name, 'Snapshot table', h.snapshotsOffset, h.nbSnapshots, SNAPSHOT_HEADER_SIZE, SNAPSHOT_HEADER_SIZE * MAX_SNAPSHOTS, clusterSize);
  checkTable(name, 'Active L1 table', h.l1TableOffset, h.l1Size, L1E_SIZE, MAX_L1_SIZE_BYTES, clusterSize);

  const l2EntrySize = (h.incompatibleFeatures & INCOMPAT_EXTL2) !== 0n ? L2E_SIZE_EXTENDED : L2E_SIZE_NORMAL;
  const perL1Entry = BigInt(clusterSize) * BigInt(clusterSize / l2EntrySize);
  const l1Needed = (h.size + perL1Entry - 1n) / perL1Entry;
  if (l1Needed > BigInt(INT_MAX) || h.size > INT64_MAX) throw unsupported(name, 'Image is too big', { size: h.size.toString() });
  if (BigInt(h.l1Size) < l1Needed) throw corrupt(name, 'L1 table is too small', { l1Size: h.l1Size, needed: l1Needed.toString() });
  if (h.cryptMethod > CRYPT_LUKS) throw unsupported(name, `Unsupported encryption method ${h.cryptMethod}`, { cryptMethod: h.cryptMethod });

  const extensions = readExtensions(name, cluster0, h.headerLength, extEnd);
  const result: ValidatedHeader = {
    header: h,
    clusterSize,
    virtualSize: (h.size / 512n) * 512n,
    l2EntrySize,
    extensions,
    featureNames: [],
  };
  for (const ext of extensions) {
    if (ext.type === EXT_BACKING_FORMAT) result.backingFormat = new TextDecoder().decode(ext.data);
    if (ext.type === EXT_FEATURE_TABLE) result.featureNames = decodeFeatureTable(ext.data);
  }

  if (h.backingFileOffset !== 0n) {
    const offset = Number(h.backingFileOffset);
    if (h.backingFileSize > Math.min(MAX_BACKING_NAME, clusterSize - offset)) {
      const err = h.backingFileSize > clusterSize - offset ? corrupt : unsupported;
      throw err(name, 'Backing file name too long', { backingFileSize: h.backingFileSize });
    }
    result.backingFile = new TextDecoder().decode(cluster0.subarray(offset, offset + h.backingFileSize));
  }
  return result;
}

/**
 * qcow2_read_extensions(): type/length records from the end of the header up to the backing
 * file name (or the end of cluster 0), stopping at the end marker.
 */
function readExtensions(name: string, cluster0: Uint8Array, start: number, end: number): HeaderExtension[] {
  const v = new DataView(cluster0.buffer, cluster0.byteOffset, cluster0.byteLength);
  const out: HeaderExtension[] = [];
  let offset = start;
  while (offset < end) {
    if (offset + 8 > cluster0.length) throw corrupt(name, 'Header extension too large', { offset });
    const type = v.getUint32(offset);
    const length = v.getUint32(offset + 4);
    const dataAt = offset + 8;
    if (dataAt > end || length > end - dataAt) throw corrupt(name, 'Header extension too large', { offset, type, length });
    if (type === EXT_END) break;
    if (type === EXT_BACKING_FORMAT && length >= MAX_BACKING_FORMAT) {
      throw corrupt(name, `ERROR: ext_backing_format: len=${length} too large (>=${MAX_BACKING_FORMAT})`, { length });
    }
    if (type === EXT_CRYPTO_HEADER && length !== 16) throw corrupt(name, 'Invalid encryption header extension length', { length });
    out.push({ type, offset, data: cluster0.slice(dataAt, dataAt + length) });
    offset = dataAt + Math.ceil(length / 8) * 8;
  }
  return out;
}

/** The feature name table, if one can be found; malformed extensions just end the search. */
function lenientFeatureTable(cluster0: Uint8Array, start: number, end: number): FeatureName[] {
  try {
    const ext = readExtensions('', cluster0, start, end).find((e) => e.type === EXT_FEATURE_TABLE);
    return ext ? decodeFeatureTable(ext.data) : [];
  } catch {
    return [];
  }
}

/** report_unsupported_feature(): names from the table for known bits, the rest as a hex mask. */
function describeFeatures(mask: bigint, table: readonly FeatureName[]): string {
  const parts: string[] = [];
  let rest = mask;
  for (const f of table) {
    const bit = 1n << BigInt(f.bit);
    if (f.type === 0 && (rest & bit) !== 0n) {
      parts.push(f.name);
      rest &= ~bit;
    }
  }
  if (rest !== 0n) parts.push(`Unknown incompatible feature: ${rest.toString(16)}`);
  return parts.join(', ');
}
