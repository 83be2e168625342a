/**
 * Reading an internal snapshot in place of the active image, as QEMU's qcow2_snapshot_load_tmp
 * (block/qcow2-snapshot.c, 7.2) does for `qemu-img convert -l` and `measure -l`: find the entry,
 * validate its L1 table like any L1 table (qcow2_validate_table, "Snapshot L1 table"), and read
 * through it. The virtual size stays the image's current one, as in QEMU.
 */
import { VmimgError } from '../../util/errors.js';
import type { SnapshotSelector } from '../image.js';
import { L1E_SIZE, MAX_L1_SIZE_BYTES } from './constants.js';
import type { SnapshotEntry } from './snapshots.js';
import type { Qcow2State } from './state.js';
import { checkTable } from './validate.js';

/** find_snapshot_by_id_and_name: the first entry matching every given field, else undefined. */
function findSnapshot(entries: readonly SnapshotEntry[], id: string | undefined, name: string | undefined): SnapshotEntry | undefined {
  if (id === undefined && name === undefined) return undefined;
  return entries.find((e) => (id === undefined || e.id === id) && (name === undefined || e.name === name));
}

/** The state reading through the selected snapshot's L1 table; "Can't find snapshot" otherwise. */
export function loadSnapshotTables(s: Qcow2State, sel: SnapshotSelector): Qcow2State {
  const entry = sel.idOrName !== undefined ? (findSnapshot(s.snapshots, sel.idOrName, undefined) ?? findSnapshot(s.snapshots, undefined, sel.idOrName)) : findSnapshot(s.snapshots, sel.id, sel.name);
  if (!entry) {
    const wanted = sel.idOrName ?? [sel.id && `id '${sel.id}'`, sel.name && `name '${sel.name}'`].filter(Boolean).join(', ');
    throw new VmimgError('USAGE', "Failed to load snapshot: Can't find snapshot", { snapshot: wanted, file: s.name });
  }
  try {
    checkTable(s.name, 'Snapshot L1 table', entry.l1Offset, entry.l1Size, L1E_SIZE, MAX_L1_SIZE_BYTES, s.clusterSize);
  } catch (e) {
    if (e instanceof VmimgError) throw new VmimgError(e.code, `Failed to load snapshot: ${e.message}`, { ...e.details, snapshot: entry.id }, { cause: e });
    throw e;
  }
  return { ...s, l1Offset: entry.l1Offset, l1Size: entry.l1Size };
}
