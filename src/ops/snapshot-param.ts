/**
 * qemu-img's `-l SNAPSHOT_PARAM` (convert, measure): either `snapshot.id=ID[,snapshot.name=NAME]`
 * (QEMU's internal_snapshot_opts; both must match) or a plain ID_OR_NAME (matched by id first,
 * then by name). Bad option syntax is qemu-img's "Failed in parsing snapshot param".
 */
import type { SnapshotSelector } from '../formats/image.js';
import { splitOptionString } from '../formats/options.js';
import { VmimgError } from '../util/errors.js';

const PREFIX = 'snapshot.';

export function parseSnapshotParam(text: string): SnapshotSelector {
  if (!text.startsWith(PREFIX)) return { idOrName: text };
  const sel: SnapshotSelector = {};
  try {
    for (const [key, value] of splitOptionString(text)) {
      if (key === 'snapshot.id') sel.id = value;
      else if (key === 'snapshot.name') sel.name = value;
      else throw new Error(`Invalid parameter '${key}'`);
    }
  } catch (e) {
    throw new VmimgError('USAGE', `Failed in parsing snapshot param '${text}'`, { value: text }, { cause: e });
  }
  return sel;
}
