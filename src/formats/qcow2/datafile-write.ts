/**
 * In-place writes to a qcow2 image with an external data file (spec "External data file"; QEMU
 * 7.2 behaviour): the decisions of cow.ts, adjusted.
 *
 * - A cluster that needs host space gets it at its guest offset in the data file (QEMU allocates
 *   host == guest, raw or not); nothing is allocated in the image file for it, and no refcount
 *   changes: data-file clusters are not refcounted, so nothing is ever freed either.
 * - data_file_raw: the data file must stay a valid raw image of the guest, so a zeroing request
 *   zeroes the data file range first (qcow2_subcluster_zeroize), then the entries change as
 *   for any v3 image.
 * - Compressed clusters cannot exist with a data file (QEMU reports corruption).
 */
import type { Storage } from '../../storage/types.js';
import { zeroRange } from '../../storage/zero.js';
import { VmimgError } from '../../util/errors.js';
import type { WriteDecision, ZeroDecision } from './cow.js';
import type { ClusterType } from './l2.js';
import type { Qcow2State } from './state.js';

/** A write decision for a data-file image: new host space is the guest cluster itself. */
export function onDataFile<T extends WriteDecision | ZeroDecision>(s: Qcow2State, d: T, type: ClusterType, guest: number): T {
  if (!s.hasDataFile) return d;
  if (type === 'compressed') {
    throw new VmimgError('CORRUPT_IMAGE', `qcow2 image '${s.name}' is corrupt: Compressed cluster entry found in image with external data file (guest offset ${guest})`, { file: s.name });
  }
  const out = { ...d, free: undefined };
  if ('inPlace' in out && !out.inPlace) {
    out.inPlace = true;
    out.host = guest;
  }
  return out;
}

/** data_file_raw: makes [offset, offset+length) of the data file read zeros (hole, or zero bytes). */
export async function zeroRawDataFile(s: Qcow2State, data: Storage | undefined, offset: number, length: number): Promise<void> {
  if (s.dataFileRaw && data) await zeroRange(data, offset, length);
}
