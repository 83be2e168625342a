/**
 * Opening a qcow2 image from untrusted bytes: the header checks of validate.ts (QEMU 7.2
 * qcow2_do_open, in its order), then what qcow2_do_open checks after them — header extensions
 * (bitmaps, crypto header, external data file), the data-file feature bits, the backing file
 * name, the snapshot table and the bitmap directory — and vmimg's own refusals: encrypted
 * images and virtual sizes beyond 2^53 bytes (UNSUPPORTED_IMAGE).
 *
 * Nothing here opens another file: the data file and the backing file are only named.
 */
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import { parseBitmapsExtension, readBitmapDirectory, type BitmapEntry } from './bitmaps.js';
import {
  AUTOCLEAR_DATA_FILE_RAW,
  COMPRESSION_ZSTD,
  CRYPT_NONE,
  EXT_BITMAPS,
  EXT_CRYPTO_HEADER,
  EXT_DATA_FILE,
  EXTL2_SUBCLUSTERS,
  INCOMPAT_DATA_FILE,
  MAX_SNAPSHOTS,
  SNAPSHOT_HEADER_SIZE,
} from './constants.js';
import { readSnapshotTable, type SnapshotTable } from './snapshots.js';
import type { Qcow2State } from './state.js';
import { checkTable, readQcow2Header } from './validate.js';

export interface OpenedQcow2 {
  state: Qcow2State;
  /** The bitmap directory (empty without the bitmaps extension). */
  bitmaps: BitmapEntry[];
}

function fail(code: 'CORRUPT_IMAGE' | 'UNSUPPORTED_IMAGE', name: string, message: string, details: Record<string, unknown> = {}): VmimgError {
  return new VmimgError(code, `qcow2 image '${name}': ${message}`, { file: name, ...details });
}

/**
 * Reads and checks everything `info`, `map` and `check` rely on. `name` is the image's file name.
 * With `check` (qemu-img check's BDRV_O_CHECK) a broken snapshot table does not fail the open:
 * it is kept in `snapshotError` for the check to report, as qcow2_check_read_snapshot_table does.
 */
export async function openQcow2State(storage: Storage, name: string, options: { check: boolean }): Promise<OpenedQcow2> {
  const vh = await readQcow2Header(storage, { check: options.check });
  const h = vh.header;
  if (h.cryptMethod !== CRYPT_NONE) {
    throw fail('UNSUPPORTED_IMAGE', name, `encrypted images are not supported (crypt_method ${h.cryptMethod})`, { cryptMethod: h.cryptMethod });
  }
  if (vh.virtualSize > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw fail('UNSUPPORTED_IMAGE', name, `virtual size ${vh.virtualSize} is beyond what vmimg can address (2^53 bytes)`, { size: vh.virtualSize.toString() });
  }

  const hasDataFile = (h.incompatibleFeatures & INCOMPAT_DATA_FILE) !== 0n;
  let dataFileName: string | undefined;
  let bitmapsExt;
  for (const ext of vh.extensions) {
    if (ext.type === EXT_CRYPTO_HEADER) {
      throw fail('CORRUPT_IMAGE', name, 'CRYPTO header extension only expected with LUKS encryption method');
    }
    if (ext.type === EXT_BITMAPS) bitmapsExt = parseBitmapsExtension(name, h, ext.data);
    if (ext.type === EXT_DATA_FILE) {
      const nul = ext.data.indexOf(0);
      dataFileName = new TextDecoder().decode(nul < 0 ? ext.data : ext.data.subarray(0, nul));
    }
  }
  const dataFileRaw = (h.autoclearFeatures & AUTOCLEAR_DATA_FILE_RAW) !== 0n;
  if (!hasDataFile && dataFileRaw) throw fail('CORRUPT_IMAGE', name, 'data-file-raw requires a data file');

  const clusterBits = h.clusterBits;
  const clusterSize = vh.clusterSize;
  const extendedL2 = vh.l2EntrySize === 16;
  const virtualSize = Number(vh.virtualSize);
  let snapshots: SnapshotTable = { entries: [], size: 0 };
  let snapshotError: VmimgError | undefined;
  try {
    if (options.check) checkTable(name, 'snapshot table', h.snapshotsOffset, h.nbSnapshots, SNAPSHOT_HEADER_SIZE, SNAPSHOT_HEADER_SIZE * MAX_SNAPSHOTS, clusterSize);
    snapshots = await readSnapshotTable(storage, name, h.snapshotsOffset, h.nbSnapshots);
  } catch (e) {
    if (!options.check || !(e instanceof VmimgError)) throw e;
    snapshotError = e;
  }
  const state: Qcow2State = {
    name,
    storage,
    vh,
    version: h.version,
    clusterBits,
    clusterSize,
    extendedL2,
    l2EntrySize: vh.l2EntrySize,
    l2Entries: clusterSize / vh.l2EntrySize,
    subclusters: extendedL2 ? EXTL2_SUBCLUSTERS : 1,
    subclusterSize: extendedL2 ? clusterSize / EXTL2_SUBCLUSTERS : clusterSize,
    refcountOrder: h.refcountOrder,
    virtualSize,
    l1Offset: h.l1TableOffset,
    l1Size: h.l1Size,
    reftableOffset: h.refcountTableOffset,
    reftableEntries: (h.refcountTableClusters * clusterSize) / 8,
    hasDataFile,
    dataFileName,
    dataFileRaw,
    codec: h.compressionType === COMPRESSION_ZSTD ? 'zstd' : 'qcow2-deflate',
    snapshots: snapshots.entries,
    snapshotsSize: snapshots.size,
    bitmaps: bitmapsExt,
    snapshotError,
  };
  const bitmaps = bitmapsExt ? await readBitmapDirectory(storage, name, bitmapsExt, clusterSize, virtualSize) : [];
  return { state, bitmaps };
}
