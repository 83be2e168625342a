/**
 * What `qemu-img info` (7.2) shows for a qcow2 image beyond sizes and backing file: the
 * format-specific data of qcow2_get_specific_info (QAPI ImageInfoSpecificQCow2), the dirty flag
 * and the snapshot list; plus vmimg's safety findings (OpenStack format_inspector's qcow2
 * checks, reference §3.2, and what else makes an image's meaning depend on more than its bytes).
 */
import { QDict } from '../../util/qjson.js';
import type { ImageInfoFields } from '../image.js';
import { bitmapFlagNames, type BitmapEntry } from './bitmaps.js';
import {
  AUTOCLEAR_BITMAPS,
  AUTOCLEAR_DATA_FILE_RAW,
  COMPAT_LAZY_REFCOUNTS,
  INCOMPAT_CORRUPT,
  INCOMPAT_DIRTY,
  INCOMPAT_KNOWN,
} from './constants.js';
import { snapshotInfo } from './snapshots.js';
import type { Qcow2State } from './state.js';

/** ImageInfoSpecific {type: qcow2, data}; data members inserted in QAPI order (QDict reorders). */
export function formatSpecific(s: Qcow2State, bitmaps: readonly BitmapEntry[]): QDict {
  const h = s.vh.header;
  const data = new QDict();
  data.put('compat', s.version === 2 ? '0.10' : '1.1');
  if (s.version >= 3) {
    if (s.dataFileName !== undefined) data.put('data-file', s.dataFileName);
    if (s.hasDataFile) data.put('data-file-raw', s.dataFileRaw);
    data.put('extended-l2', s.extendedL2);
    data.put('lazy-refcounts', (h.compatibleFeatures & COMPAT_LAZY_REFCOUNTS) !== 0n);
    data.put('corrupt', (h.incompatibleFeatures & INCOMPAT_CORRUPT) !== 0n);
  }
  data.put('refcount-bits', 2 ** s.refcountOrder);
  if (s.version >= 3 && s.bitmaps && bitmaps.length > 0) {
    data.put(
      'bitmaps',
      bitmaps.map((b) => new QDict().put('name', b.name).put('granularity', 2 ** b.granularityBits).put('flags', bitmapFlagNames(b.flags))),
    );
  }
  data.put('compression-type', s.codec === 'zstd' ? 'zstd' : 'zlib');
  return new QDict().put('type', 'qcow2').put('data', data);
}

export function infoFields(s: Qcow2State, bitmaps: readonly BitmapEntry[]): ImageInfoFields {
  return {
    clusterSize: s.clusterSize,
    dirty: (s.vh.header.incompatibleFeatures & INCOMPAT_DIRTY) !== 0n,
    formatSpecific: formatSpecific(s, bitmaps),
    snapshots: s.snapshots.map(snapshotInfo),
  };
}

/**
 * Format-specific safety findings. The backing file and an external data file in use are
 * reported generically from the image's references; unknown incompatible features never get
 * this far (the image does not open).
 */
export function qcow2SafetyIssues(s: Qcow2State): string[] {
  const h = s.vh.header;
  const issues: string[] = [];
  const unknownCompat = h.compatibleFeatures & ~COMPAT_LAZY_REFCOUNTS;
  if (unknownCompat !== 0n) issues.push(`Unknown QCOW2 compatible features found (0x${unknownCompat.toString(16)})`);
  const unknownAutoclear = h.autoclearFeatures & ~(AUTOCLEAR_BITMAPS | AUTOCLEAR_DATA_FILE_RAW);
  if (unknownAutoclear !== 0n) issues.push(`Unknown QCOW2 autoclear features found (0x${unknownAutoclear.toString(16)})`);
  const unknownIncompat = h.incompatibleFeatures & ~INCOMPAT_KNOWN;
  if (unknownIncompat !== 0n) issues.push(`Unknown QCOW2 features found (0x${unknownIncompat.toString(16)})`);
  if (s.hasDataFile && s.dataFileName === undefined) issues.push('Image has data_file set but names no data file');
  if (!s.hasDataFile && s.dataFileName !== undefined) issues.push(`Image names a data file ('${s.dataFileName}') without the external data file feature`);
  if ((h.incompatibleFeatures & INCOMPAT_CORRUPT) !== 0n) issues.push('Image is marked corrupt');
  return issues;
}
