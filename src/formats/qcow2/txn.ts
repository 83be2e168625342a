/**
 * One crash-safe update of a set of guest clusters (each at most once), in the stages the Image
 * write contract promises (src/formats/image.ts):
 *
 *   0. read: entries, and the copy-on-write fill of every region (before anything is written);
 *   A. allocate (refcounts raised, refcount blocks written), then write data and the contents of
 *      new L2 tables — nothing refers to them yet;            [barrier]
 *   B. update entries of existing L2 tables, and the L1 entries of new ones;     [barrier]
 *   C. decrement the refcounts of what lost a reference (old data clusters, compressed
 *      clusters, L2 tables copied away from a snapshot).
 *
 * L2 tables reached through an L1 entry without OFLAG_COPIED are shared with an internal
 * snapshot: they are copied to a new cluster first (QEMU's l2_allocate), the L1 entry is
 * switched, and the old table loses the active L1's reference. An empty L1 entry gets a new
 * zeroed table. Cached L1 pages and L2 slices are patched as entries are written.
 */
import { VmimgError } from '../../util/errors.js';
import type { Allocator } from './alloc.js';
import { L1E_SIZE } from './constants.js';
import { checkEntry, encodeEntry, makeEntry, planWrite, planZeroCluster, planZeroSubclusters, type HostRange, type L2Entry } from './cow.js';
import { onDataFile } from './datafile-write.js';
import type { Storage } from '../../storage/types.js';
import { readAt } from './io.js';
import { entryOffset, isCopied, NO_BITMAP, readBitmap, readWord } from './l2.js';
import type { Qcow2State, TableReader } from './state.js';

/** What happens to one guest cluster (`guest` is its first byte). */
export type Piece =
  /** Bytes `data` at offset `a` within the cluster. */
  | { kind: 'data'; guest: number; a: number; data: Uint8Array }
  /**
   * The whole cluster reads zeros (v3 only). `keepUnallocated`: the image has no backing file,
   * so a cluster without any allocation already reads zeros and is left alone (no L2 table is
   * allocated for it; QEMU would set the zero flag).
   */
  | { kind: 'zero'; guest: number; mayUnmap: boolean; keepUnallocated: boolean }
  /** Subclusters `mask` read zeros (extended L2, cluster not compressed). */
  | { kind: 'zero-mask'; guest: number; mask: number };

export interface TxnHost {
  s: Qcow2State;
  tables: TableReader;
  alloc: Allocator;
  /** What the guest reads now at [offset, offset+length) (zeros past the virtual size). */
  readGuest(offset: number, length: number): Promise<Uint8Array>;
  barrier(): Promise<void>;
  /** The external data file, where guest data lives when the image has one (datafile-write.ts). */
  data?: Storage;
}

interface Span {
  l1Index: number;
  /** The L2 table entries are read from and (unless `content`) written to; 0 = none. */
  l2Offset: number;
  /** A new table (empty L1 entry, or a copy of a shared one), written whole in stage A. */
  content?: Uint8Array;
  newOffset: number;
  /** The shared table a copy replaces. */
  replaced?: number;
  updates: Map<number, Uint8Array>;
}

interface Planned {
  span: Span;
  index: number;
  /** Bytes to write at host + at (data pieces). */
  bytes?: Uint8Array;
  at: number;
  host: number;
  needsCluster: boolean;
  entry?: (host: number) => L2Entry;
  fixedEntry?: L2Entry;
  free?: HostRange;
}

function corrupt(s: Qcow2State, message: string): VmimgError {
  return new VmimgError('CORRUPT_IMAGE', `qcow2 image '${s.name}' is corrupt: ${message}`, { file: s.name });
}

async function openSpan(h: TxnHost, l1Index: number): Promise<Span> {
  const s = h.s;
  if (l1Index >= s.l1Size) throw corrupt(s, `L1 table too small for guest cluster (index ${l1Index})`);
  const w = await h.tables.l1Entry(l1Index);
  const l2Offset = entryOffset(w);
  const span: Span = { l1Index, l2Offset, newOffset: 0, updates: new Map() };
  if (l2Offset % s.clusterSize !== 0) throw corrupt(s, `L2 table offset ${l2Offset} unaligned (L1 index: ${l1Index})`);
  if (l2Offset === 0) span.content = new Uint8Array(s.clusterSize);
  else if (!isCopied(w)) {
    span.content = await readAt(s.storage, l2Offset, s.clusterSize);
    span.replaced = l2Offset;
  }
  return span;
}

async function readEntry(h: TxnHost, span: Span, index: number): Promise<L2Entry> {
  const s = h.s;
  if (span.content) {
    const v = new DataView(span.content.buffer, span.content.byteOffset);
    const at = index * s.l2EntrySize;
    return { entry: readWord(v, at), bitmap: s.extendedL2 ? readBitmap(v, at + 8) : NO_BITMAP };
  }
  const slice = await h.tables.l2Slice(span.l2Offset, index);
  const at = (index - slice.first) * s.l2EntrySize;
  return { entry: readWord(slice.view, at), bitmap: s.extendedL2 ? readBitmap(slice.view, at + 8) : NO_BITMAP };
}

/** Runs one update; `pieces` name each guest cluster at most once. */
export async function runTxn(h: TxnHost, pieces: readonly Piece[]): Promise<void> {
  const s = h.s;
  const cs = s.clusterSize;
  const spans = new Map<number, Span>();
  const planned: Planned[] = [];

  // Stage 0: read and decide.
  for (const p of pieces) {
    const cluster = p.guest / cs;
    const l1Index = Math.floor(cluster / s.l2Entries);
    const index = cluster % s.l2Entries;
    let span = spans.get(l1Index);
    if (!span) spans.set(l1Index, (span = await openSpan(h, l1Index)));
    const old = await readEntry(h, span, index);
    const type = checkEntry(s, old, `(L1 index: ${l1Index}, L2 index: ${index})`);
    if (p.kind === 'data') {
      const b = p.a + p.data.length;
      const d = onDataFile(s, planWrite(s, old, type, p.a, b), type, p.guest);
      let bytes = p.data;
      if (d.ra < p.a || d.rb > b) {
        bytes = new Uint8Array(d.rb - d.ra);
        if (d.ra < p.a) bytes.set(await h.readGuest(p.guest + d.ra, p.a - d.ra), 0);
        bytes.set(p.data, p.a - d.ra);
        if (d.rb > b) bytes.set(await h.readGuest(p.guest + b, d.rb - b), b - d.ra);
      }
      planned.push({ span, index, bytes, at: d.ra, host: d.host, needsCluster: !d.inPlace, entry: d.entry, free: d.free });
    } else if (p.kind === 'zero') {
      if (p.keepUnallocated && type === 'unallocated') continue;
      const d = onDataFile(s, planZeroCluster(s, old, type, p.mayUnmap), type, p.guest);
      planned.push({ span, index, at: 0, host: 0, needsCluster: false, fixedEntry: d.entry, free: d.free });
    } else {
      if (type === 'compressed') throw new VmimgError('INTERNAL', 'subcluster zeroing of a compressed cluster');
      planned.push({ span, index, at: 0, host: 0, needsCluster: false, fixedEntry: planZeroSubclusters(old, p.mask) });
    }
  }

  // Stage A: allocate, then data and new tables.
  const used = planned.filter((q) => q.entry || q.fixedEntry);
  for (const span of spans.values()) {
    if (span.content && used.some((q) => q.span === span)) span.newOffset = await h.alloc.alloc(1);
  }
  for (const q of planned) if (q.needsCluster) q.host = await h.alloc.alloc(1);
  for (const q of used) {
    const e = q.fixedEntry ?? q.entry!(q.host);
    const bytes = encodeEntry(s, e);
    if (q.span.content) q.span.content.set(bytes, q.index * s.l2EntrySize);
    else q.span.updates.set(q.index, bytes);
  }
  await h.alloc.writeDirty();
  await writeData(h, planned);
  if ((await s.storage.size()) < h.alloc.fileEnd) await s.storage.truncate(h.alloc.fileEnd);
  const fresh = [...spans.values()].filter((sp) => sp.newOffset !== 0);
  for (const sp of fresh) await s.storage.write(sp.newOffset, sp.content!);
  const metadata = fresh.length > 0 || [...spans.values()].some((sp) => sp.updates.size > 0);
  if (!metadata) return;
  await h.barrier();

  // Stage B: existing L2 entries, then L1 entries of new tables.
  for (const sp of spans.values()) {
    if (sp.newOffset !== 0 || sp.updates.size === 0) continue;
    for (const [first, bytes] of runs(sp.updates, s.l2EntrySize)) {
      await s.storage.write(sp.l2Offset + first * s.l2EntrySize, bytes);
      h.tables.patchL2(sp.l2Offset, first, bytes);
    }
  }
  for (const sp of fresh) {
    h.tables.patchL2(sp.newOffset, 0, sp.content!);
    const w = makeEntry(sp.newOffset, true);
    const bytes = new Uint8Array(L1E_SIZE);
    new DataView(bytes.buffer).setUint32(0, w.hi);
    new DataView(bytes.buffer).setUint32(4, w.lo);
    await s.storage.write(Number(s.l1Offset) + sp.l1Index * L1E_SIZE, bytes);
    h.tables.patchL1(s.l1Offset, sp.l1Index, bytes);
  }

  // Stage C: drop the references that are gone.
  const frees: HostRange[] = [];
  for (const sp of fresh) if (sp.replaced) frees.push({ offset: sp.replaced, length: cs });
  for (const q of used) if (q.free) frees.push(q.free);
  if (frees.length === 0) return;
  await h.barrier();
  for (const f of frees) await h.alloc.free(f.offset, f.length);
  await h.alloc.writeDirty();
}

/** Data writes, merged where host bytes are contiguous. */
async function writeData(h: TxnHost, planned: Planned[]): Promise<void> {
  let run: { offset: number; parts: Uint8Array[]; length: number } | undefined;
  const flush = async (): Promise<void> => {
    if (!run) return;
    const storage = h.data ?? h.s.storage;
    if (run.parts.length === 1) await storage.write(run.offset, run.parts[0]!);
    else if (storage.writev) await storage.writev(run.offset, run.parts);
    else await storage.write(run.offset, concat(run.parts, run.length));
    run = undefined;
  };
  for (const q of planned) {
    if (!q.bytes || q.bytes.length === 0) continue;
    const offset = q.host + q.at;
    if (run && run.offset + run.length === offset && run.length < 16 * 1024 * 1024) {
      run.parts.push(q.bytes);
      run.length += q.bytes.length;
    } else {
      await flush();
      run = { offset, parts: [q.bytes], length: q.bytes.length };
    }
  }
  await flush();
}

function concat(parts: Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Runs of consecutive entry indices, each as one byte string. */
function runs(updates: Map<number, Uint8Array>, entrySize: number): [number, Uint8Array][] {
  const keys = [...updates.keys()].sort((x, y) => x - y);
  const out: [number, Uint8Array][] = [];
  for (let i = 0; i < keys.length; ) {
    let j = i + 1;
    while (j < keys.length && keys[j] === keys[j - 1]! + 1) j++;
    out.push([keys[i]!, concat(keys.slice(i, j).map((k) => updates.get(k)!), (j - i) * entrySize)]);
    i = j;
  }
  return out;
}
