/**
 * What `qemu-img info` (7.2) shows for a vmdk beyond sizes and backing:
 *
 * - format-specific (vmdk_get_specific_info): create-type, cid, parent-cid and one entry per
 *   extent — filename (the extent file's name as opened: the image's own name for a sparse file,
 *   the descriptor's directory + the recorded name otherwise), format (the extent type; "" for a
 *   sparse file's own extent, which has none), virtual-size (the extent's size), cluster-size
 *   (grain bytes; not for flat extents) and compressed (only when true);
 * - cluster-size and dirty-flag (vmdk_get_info): when every extent has the same kind as the
 *   first (flat, compressed, and the same grain size unless flat), cluster-size is the first
 *   extent's grain size (none for flat) and dirty-flag is false; when they differ, QEMU's
 *   get_info fails and qemu-img shows neither.
 *
 * A sparse extent the policy kept closed (`denied`) has no known grain: it is listed without a
 * cluster-size and makes the image's cluster-size unknown (QEMU, which opens every extent,
 * would show it). Keys are put in QAPI member order; QDict orders them as QEMU prints them.
 */
import { QDict } from '../../util/qjson.js';
import { SECTOR_SIZE } from '../../util/units.js';
import type { ImageInfoFields } from '../image.js';
import type { VmdkExtent } from './extents.js';
import type { VmdkFacts } from './open.js';

interface Kind {
  flat: boolean;
  compressed: boolean;
  /** Grain bytes; undefined when flat or unknown. */
  cluster?: number;
  known: boolean;
}

function kindOf(e: VmdkExtent): Kind {
  if (e.kind === 'flat') return { flat: true, compressed: false, known: true };
  if (e.kind === 'denied') return { flat: false, compressed: false, known: false };
  return { flat: false, compressed: e.sparse.geometry.compressed, cluster: e.sparse.grainBytes, known: true };
}

export function vmdkInfoFields(facts: VmdkFacts, extents: readonly VmdkExtent[]): ImageInfoFields {
  const data = new QDict()
    .put('create-type', facts.createType ?? '')
    .put('cid', facts.cid)
    .put('parent-cid', facts.parentCid)
    .put('extents', extents.map(extentDict));
  const fields: ImageInfoFields = { formatSpecific: new QDict().put('type', 'vmdk').put('data', data) };
  const kinds = extents.map(kindOf);
  const first = kinds[0]!;
  const same = kinds.every((k) => k.flat === first.flat && k.compressed === first.compressed && (first.flat || !k.known || !first.known || k.cluster === first.cluster));
  if (!same) {
    fields.dirty = null;
  } else if (!first.flat && kinds.every((k) => k.known)) {
    fields.clusterSize = first.cluster!;
  }
  return fields;
}

function extentDict(e: VmdkExtent): QDict {
  const d = new QDict().put('filename', e.path).put('format', e.type).put('virtual-size', e.sectors * SECTOR_SIZE);
  if (e.kind === 'sparse') {
    d.put('cluster-size', e.sparse.grainBytes);
    if (e.sparse.geometry.compressed) d.put('compressed', true);
  }
  return d;
}
