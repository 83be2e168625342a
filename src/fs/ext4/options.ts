/**
 * Options of the ext4 builder and the mke2fs-style feature list (-O). Features the writer does
 * not produce are refused by name, never silently dropped (docs/ext4.md "Features").
 */
import { VmimgError } from '../../util/errors.js';

export interface Ext4Options {
  /** Volume label, at most 16 bytes (s_volume_name). */
  label?: string;
  /** Filesystem UUID "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"; default derived from the tree. */
  uuid?: string;
  /** Directory hash seed (a UUID); default derived from the tree. */
  hashSeed?: string;
  /** Exact filesystem size in bytes (rounded down to 4 KiB); default automatic. */
  size?: number;
  /** Automatic sizing: share of the filesystem left free, percent (default 10). */
  freePercent?: number;
  /** Inode count wanted (rounded up to fill whole inode-table blocks per group). */
  inodes?: number;
  /** Bytes per inode when `inodes` is not given (mke2fs -i; default 16384). */
  inodeRatio?: number;
  /** Create an internal jbd2 journal (inode 8), like mke2fs -j. */
  journal?: boolean;
  /** Journal size in 4 KiB blocks (default: mke2fs's table by filesystem size). */
  journalBlocks?: number;
  /** mke2fs -O syntax: "feature,^feature,...". */
  features?: string;
  /** Superblock times and the synthesised lost+found mtime, seconds (default SOURCE_DATE_EPOCH, else the newest entry mtime). */
  timestamp?: number;
}

/** The features the writer can switch (all other ext4 features are unsupported). */
export interface FeatureSet {
  metadataCsum: boolean;
  bit64: boolean;
  journal: boolean;
  dirIndex: boolean;
  extAttr: boolean;
  sparseSuper: boolean;
  hugeFile: boolean;
  largeFile: boolean;
  dirNlink: boolean;
  extraIsize: boolean;
}

export const DEFAULT_FEATURES: Readonly<FeatureSet> = {
  metadataCsum: true,
  bit64: true,
  journal: false,
  dirIndex: true,
  extAttr: true,
  sparseSuper: true,
  hugeFile: true,
  largeFile: true,
  dirNlink: true,
  extraIsize: true,
};

const SWITCHES: Record<string, keyof FeatureSet> = {
  metadata_csum: 'metadataCsum',
  '64bit': 'bit64',
  has_journal: 'journal',
  dir_index: 'dirIndex',
  ext_attr: 'extAttr',
  sparse_super: 'sparseSuper',
  huge_file: 'hugeFile',
  large_file: 'largeFile',
  dir_nlink: 'dirNlink',
  extra_isize: 'extraIsize',
};
/** Always on: the writer's layout depends on them. */
const REQUIRED = new Set(['extent', 'extents', 'filetype', 'flex_bg']);

/** Applies an mke2fs -O list to `base`. */
export function parseFeatures(text: string | undefined, base: Readonly<FeatureSet> = DEFAULT_FEATURES): FeatureSet {
  const out: FeatureSet = { ...base };
  if (text === undefined || text === '') return out;
  for (const raw of text.split(',')) {
    const item = raw.trim();
    if (item === '') continue;
    const off = item.startsWith('^') || item.startsWith('-');
    const name = off ? item.slice(1) : item.startsWith('+') ? item.slice(1) : item;
    if (REQUIRED.has(name)) {
      if (off) throw new VmimgError('UNSUPPORTED_OPTION', `ext4 feature '${name}' cannot be turned off: the writer's layout needs it`, { feature: name });
      continue;
    }
    const key = SWITCHES[name];
    if (key === undefined) {
      throw new VmimgError('UNSUPPORTED_OPTION', `ext4 feature '${name}' is not supported by vmimg (supported: ${[...Object.keys(SWITCHES), ...REQUIRED].join(', ')})`, { feature: name });
    }
    out[key] = !off;
  }
  return out;
}

/** Parses "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" into 16 bytes. */
export function parseUuid(text: string, what: string): Uint8Array {
  if (!/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(text)) {
    throw new VmimgError('INVALID_OPTION', `${what} must be a UUID like 01234567-89ab-cdef-0123-456789abcdef, not '${text}'`, { value: text });
  }
  return Uint8Array.from(Buffer.from(text.replace(/-/g, ''), 'hex'));
}

export function formatUuid(bytes: Uint8Array): string {
  const h = Buffer.from(bytes).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Checks that a numeric option is an integer in [min, max]. */
export function checkInt(value: number, what: string, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new VmimgError('INVALID_OPTION', `${what} must be an integer in ${min}..${max}, not ${value}`, { value });
  }
  return value;
}
