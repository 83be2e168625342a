/**
 * The internal snapshot table (spec "Snapshots"): nb_snapshots variable-length entries at
 * snapshots_offset, each 8-byte aligned: a 40-byte fixed part, extra data (vm_state_size_large,
 * disk_size, icount), the ID string and the name. Read with QEMU 7.2's limits
 * (qcow2_do_read_snapshots): at most 1024 bytes of extra data per entry and 64 MiB for the whole
 * table (both EFBIG there, UNSUPPORTED_IMAGE here). The caller has validated the offset
 * (cluster-aligned) and the count (≤ 65536).
 *
 * Reading is sequential through a bounded window, so memory is O(one entry) beyond the results.
 */
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import type { SnapshotInfo } from '../image.js';
import { INT_MAX, SNAPSHOT_HEADER_SIZE } from './constants.js';
import { readAt, view } from './io.js';

/** QCOW_MAX_SNAPSHOT_EXTRA_DATA. */
export const MAX_SNAPSHOT_EXTRA = 1024;
/** QCOW_MAX_SNAPSHOTS_SIZE: 1024 bytes × 65536 snapshots. */
export const MAX_SNAPSHOTS_SIZE = 1024 * 65536;
/** Bytes of the known extra data (vm_state_size_large, disk_size, icount). */
const KNOWN_EXTRA = 24;

export interface SnapshotEntry {
  id: string;
  name: string;
  l1Offset: bigint;
  l1Size: number;
  vmStateSize: number;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: bigint;
  /** -1 (all ones) when the entry has none. */
  icount: bigint;
  extraDataSize: number;
}

export interface SnapshotTable {
  entries: SnapshotEntry[];
  /** Bytes from the table start to the end of the last entry (QEMU's snapshots_size). */
  size: number;
}

const decoder = new TextDecoder();

/** A C string from bytes: up to the first NUL. */
function cString(bytes: Uint8Array): string {
  const nul = bytes.indexOf(0);
  return decoder.decode(nul < 0 ? bytes : bytes.subarray(0, nul));
}

/** Sequential reads through a window of at most WINDOW bytes. */
class Cursor {
  private static readonly WINDOW = 256 * 1024;
  private buf: Uint8Array = new Uint8Array(0);
  private bufAt = 0;

  constructor(private readonly storage: Storage) {}

  async bytes(offset: number, length: number): Promise<Uint8Array> {
    if (offset < this.bufAt || offset + length > this.bufAt + this.buf.length) {
      this.bufAt = offset;
      this.buf = await readAt(this.storage, offset, Math.max(length, Cursor.WINDOW));
    }
    return this.buf.subarray(offset - this.bufAt, offset - this.bufAt + length);
  }
}

/**
 * Reads `count` entries at `offset`. Errors carry QEMU's wording; `name` is the image file name.
 */
export async function readSnapshotTable(storage: Storage, name: string, offset: bigint, count: number): Promise<SnapshotTable> {
  if (count === 0) return { entries: [], size: 0 };
  // Validated by the caller: aligned and offset + count*40 ≤ INT64_MAX. Offsets past 2^53 read as zeros.
  const base = offset <= BigInt(Number.MAX_SAFE_INTEGER - 2 * MAX_SNAPSHOTS_SIZE) ? Number(offset) : undefined;
  const cursor = new Cursor(storage);
  const entries: SnapshotEntry[] = [];
  let pos = 0; // relative to the table start
  let tableLength = 0;
  const at = async (rel: number, length: number): Promise<Uint8Array> => (base === undefined ? new Uint8Array(length) : cursor.bytes(base + rel, length));
  for (let i = 0; i < count; i++) {
    pos = Math.ceil(pos / 8) * 8;
    tableLength = Math.ceil(tableLength / 8) * 8;
    const h = view(await at(pos, SNAPSHOT_HEADER_SIZE));
    pos += SNAPSHOT_HEADER_SIZE;
    const idSize = h.getUint16(12);
    const nameSize = h.getUint16(14);
    const extraSize = h.getUint32(36);
    if (extraSize > MAX_SNAPSHOT_EXTRA) {
      throw new VmimgError('UNSUPPORTED_IMAGE', `qcow2 image '${name}': Too much extra metadata in snapshot table entry ${i}`, { file: name, entry: i, extraDataSize: extraSize });
    }
    const extra = view(await at(pos, Math.min(KNOWN_EXTRA, extraSize)));
    let vmStateSize = h.getUint32(32);
    if (extraSize >= 8) vmStateSize = Number(extra.getBigUint64(0));
    const icount = extraSize >= 24 ? extra.getBigUint64(16) : 0xffffffffffffffffn;
    pos += extraSize;
    const id = cString(await at(pos, idSize));
    pos += idSize;
    const snapName = cString(await at(pos, nameSize));
    pos += nameSize;
    tableLength += SNAPSHOT_HEADER_SIZE + extraSize + idSize + nameSize;
    if (tableLength > MAX_SNAPSHOTS_SIZE || pos > INT_MAX) {
      throw new VmimgError('UNSUPPORTED_IMAGE', `qcow2 image '${name}': Snapshot table is too big`, { file: name, entries: count - i });
    }
    entries.push({
      id,
      name: snapName,
      l1Offset: h.getBigUint64(0),
      l1Size: h.getUint32(8),
      vmStateSize,
      dateSec: h.getUint32(16),
      dateNsec: h.getUint32(20),
      vmClockNsec: h.getBigUint64(24),
      icount,
      extraDataSize: extraSize,
    });
  }
  return { entries, size: pos };
}

/** The snapshot as `qemu-img info` lists it (icount omitted when it is all ones). */
export function snapshotInfo(e: SnapshotEntry): SnapshotInfo {
  const info: SnapshotInfo = { id: e.id, name: e.name, vmStateSize: e.vmStateSize, dateSec: e.dateSec, dateNsec: e.dateNsec, vmClockNsec: e.vmClockNsec };
  if (e.icount !== 0xffffffffffffffffn) info.icount = e.icount;
  return info;
}
