/**
 * Mapping guest ranges of a qcow2 image to extents (QEMU 7.2 qcow2_get_host_offset +
 * count_contiguous_subclusters + qcow2_co_block_status, spec "Cluster mapping" and "Extended L2
 * Entries"). Each guest cluster is looked up through the L1 table and its L2 table; with extended
 * L2 each 1/32 subcluster has its own state. Adjacent results of the same kind whose host bytes
 * are contiguous are merged.
 *
 * Work per call is proportional to the clusters in the range (one L1 entry per L2 table span,
 * one L2 slice read per SLICE_BYTES of entries, all cached with bounded memory). The errors are
 * QEMU's corruption reports (it marks the image corrupt; we raise CORRUPT_IMAGE).
 */
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import { pushExtent as push } from '../extents.js';
import type { Extent } from '../image.js';
import { altHex, clusterType, compressedRef, entryOffset, NO_BITMAP, readBitmap, readWord, subclusterRun, type SubclusterType, type Word } from './l2.js';
import type { Qcow2State, TableReader } from './state.js';

export interface MapSource {
  s: Qcow2State;
  tables: TableReader;
  /** The storage holding guest data clusters: the image itself or its (lazily opened) data file. */
  dataStorage(): Promise<Storage>;
  /** Whether QEMU would look below the format for holes (metadata preallocation detected). */
  recurse(): Promise<boolean>;
}

function corrupt(s: Qcow2State, message: string): VmimgError {
  return new VmimgError('CORRUPT_IMAGE', `qcow2 image '${s.name}' is corrupt: ${message}`, { file: s.name });
}

/** Maps [start, start+length) (within the virtual size). */
export async function mapRange(src: MapSource, start: number, length: number): Promise<Extent[]> {
  const s = src.s;
  const cs = s.clusterSize;
  const span = cs * s.l2Entries;
  const out: Extent[] = [];
  const end = start + length;
  let pos = start;
  let storage: Storage | undefined;
  while (pos < end) {
    const l1Index = Math.floor(pos / span);
    if (l1Index >= s.l1Size) {
      push(out, { kind: 'unallocated', start: pos, length: end - pos });
      break;
    }
    const spanStart = l1Index * span;
    const spanEnd = Math.min(end, spanStart + span);
    const page = await src.tables.l1Page(l1Index);
    const l2Offset = entryOffset(readWord(page.view, (l1Index - page.first) * 8));
    if (l2Offset === 0) {
      // Skip the run of empty L1 entries in this page at once.
      let last = l1Index + 1;
      while (last < page.end && last * span < end && entryOffset(readWord(page.view, (last - page.first) * 8)) === 0) last++;
      const runEnd = Math.min(end, last * span);
      push(out, { kind: 'unallocated', start: pos, length: runEnd - pos });
      pos = runEnd;
      continue;
    }
    if (l2Offset % cs !== 0) throw corrupt(s, `L2 table offset ${altHex(l2Offset)} unaligned (L1 index: ${altHex(l1Index)})`);
    while (pos < spanEnd) {
      const slice = await src.tables.l2Slice(l2Offset, Math.floor((pos - spanStart) / cs));
      for (let i = Math.floor((pos - spanStart) / cs); i < slice.end && pos < spanEnd; i++) {
        const at = (i - slice.first) * s.l2EntrySize;
        const entry = readWord(slice.view, at);
        const bitmap = s.extendedL2 ? readBitmap(slice.view, at + 8) : NO_BITMAP;
        const type = clusterType(entry, s.extendedL2, s.hasDataFile);
        const cStart = spanStart + i * cs;
        const cEnd = Math.min(cStart + cs, spanEnd);
        let sc = Math.floor((pos - cStart) / s.subclusterSize);
        while (pos < cEnd) {
          const run = subclusterRun(type, bitmap, s.extendedL2, sc, s.subclusters);
          const runEnd = Math.min(cEnd, cStart + (sc + run.count) * s.subclusterSize);
          const w = { pos, length: runEnd - pos, cStart, l2Offset, l2Index: i };
          // The data storage is awaited once per call, not once per cluster (a data file opens lazily).
          if (!emit(src, out, run.type, entry, w, storage)) emit(src, out, run.type, entry, w, (storage = await src.dataStorage()));
          pos = runEnd;
          sc += run.count;
        }
      }
    }
  }
  return src.recurse().then((yes) => (yes ? lookBelow(out) : out));
}

interface Where {
  pos: number;
  length: number;
  cStart: number;
  l2Offset: number;
  l2Index: number;
}

/**
 * Appends the extent for one run of a cluster. False (nothing appended) when it is host data and
 * `storage` (src.dataStorage()) is not known yet: the caller awaits it and calls again, so the
 * corruption checks still come before opening a data file.
 */
function emit(src: MapSource, out: Extent[], type: SubclusterType, entry: Word, w: Where, storage: Storage | undefined): boolean {
  const s = src.s;
  // Only built for an error message: this runs once per cluster.
  const at = (): string => `(L2 offset: ${altHex(w.l2Offset)}, L2 index: ${altHex(w.l2Index)})`;
  if (s.version < 3 && (type === 'zero-plain' || type === 'zero-alloc')) throw corrupt(s, `Zero cluster entry found in pre-v3 image ${at()}`);
  switch (type) {
    case 'invalid':
      throw corrupt(s, `Invalid cluster entry found  ${at()}`);
    case 'unallocated-plain':
      push(out, { kind: 'unallocated', start: w.pos, length: w.length });
      return true;
    case 'zero-plain':
      push(out, { kind: 'zero', start: w.pos, length: w.length });
      return true;
    case 'compressed': {
      if (s.hasDataFile) throw corrupt(s, `Compressed cluster entry found in image with external data file ${at()}`);
      const ref = compressedRef(entry, s.clusterBits);
      if (!Number.isSafeInteger(ref.offset + ref.length)) throw corrupt(s, `compressed cluster offset ${altHex(ref.offset)} is beyond what vmimg can address ${at()}`);
      push(out, {
        kind: 'compressed',
        start: w.pos,
        length: w.length,
        storage: s.storage,
        offset: ref.offset,
        compressedLength: ref.length,
        codec: s.codec,
        unitStart: w.cStart,
        unitLength: s.clusterSize,
      });
      return true;
    }
    default: {
      const cluster = entryOffset(entry);
      if (cluster % s.clusterSize !== 0) throw corrupt(s, `Cluster allocation offset ${altHex(cluster)} unaligned ${at()}`);
      const offset = cluster + (w.pos - w.cStart);
      if (!Number.isSafeInteger(offset + w.length)) throw corrupt(s, `cluster offset ${altHex(cluster)} is beyond what vmimg can address ${at()}`);
      if (!storage) return false;
      if (type === 'normal') push(out, { kind: 'data', start: w.pos, length: w.length, storage, offset });
      else if (type === 'zero-alloc') push(out, { kind: 'zero', start: w.pos, length: w.length, storage, offset });
      else push(out, { kind: 'unallocated', start: w.pos, length: w.length, storage, offset });
      return true;
    }
  }
}

/**
 * BDRV_BLOCK_RECURSE: with metadata preallocation QEMU asks the file below whether the host
 * bytes of a data range are a hole (or past its end); such ranges read as zeros and `map`
 * reports them as data and zero.
 */
async function lookBelow(extents: Extent[]): Promise<Extent[]> {
  const out: Extent[] = [];
  for (const e of extents) {
    if (e.kind !== 'data' || !e.storage.blockStatus) {
      push(out, e);
      continue;
    }
    for (let done = 0; done < e.length; ) {
      const st = await e.storage.blockStatus(e.offset + done, e.length - done);
      const n = Math.min(Math.max(1, st.length), e.length - done);
      const piece = { start: e.start + done, length: n, storage: e.storage, offset: e.offset + done };
      push(out, st.data ? { kind: 'data', ...piece } : { kind: 'zero', ...piece, data: true });
      done += n;
    }
  }
  return out;
}
