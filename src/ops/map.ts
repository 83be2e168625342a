/**
 * `map`: where each guest range of an image chain comes from, as qemu-img 7.2's img_map reports
 * it (get_block_status + the merging loop): the layer depth that answers, whether the range is
 * allocated (present), reads as zeros, holds data, and the host offset when there is one.
 */
import type { ImageChain } from '../chain/open.js';
import type { Extent, Image } from '../formats/image.js';

export interface MapEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
  offset?: number;
  /** The file holding the bytes at `offset`. */
  filename?: string;
}

/**
 * Work per driver call: the chain is walked in windows of guest bytes, the first FIRST_WINDOW
 * long and each next one twice the last, up to MAX_WINDOW, so a long walk makes few calls while
 * a streaming consumer (`split`) gets its first entries after a small query.
 */
const FIRST_WINDOW = 1 << 24;
const MAX_WINDOW = 1 << 28;

export interface MapChainOptions {
  /**
   * Yield what is merged so far at the end of every window (entries then end at window
   * boundaries, FIRST_WINDOW-aligned from `start`) instead of merging across windows: convert and
   * compare start on the first window while the rest is mapped. Unset, entries are merged as
   * qemu-img map reports them.
   */
  split?: boolean;
}

/** Yields merged map entries for [start, start+length) of the chain's top image. */
export async function* mapChain(chain: ImageChain, start: number, length: number, o: MapChainOptions = {}): AsyncGenerator<MapEntry> {
  let pending: MapEntry | undefined;
  const end = start + length;
  let window = FIRST_WINDOW;
  for (let pos = start; pos < end; window = Math.min(MAX_WINDOW, window * 2)) {
    const n = Math.min(window, end - pos);
    for (const e of await resolve(chain.layers, 0, pos, n)) {
      if (pending && mergeable(pending, e)) {
        pending.length += e.length;
        continue;
      }
      if (pending) yield pending;
      pending = { ...e };
    }
    if (o.split && pending) {
      yield pending;
      pending = undefined;
    }
    pos += n;
  }
  if (pending) yield pending;
}

function mergeable(a: MapEntry, b: MapEntry): boolean {
  if (a.depth !== b.depth || a.present !== b.present || a.zero !== b.zero || a.data !== b.data) return false;
  if ((a.offset === undefined) !== (b.offset === undefined)) return false;
  return a.offset === undefined || (a.offset + a.length === b.offset && a.filename === b.filename);
}

async function resolve(layers: readonly Image[], depth: number, start: number, length: number): Promise<MapEntry[]> {
  const layer = layers[depth]!;
  if (layer.qemuReportsAllData) return [{ start, length, depth, present: true, zero: false, data: true }];
  const out: MapEntry[] = [];
  for (const e of await layer.map(start, length)) out.push(...(await entriesFor(layers, depth, layer, e)));
  return out;
}

async function entriesFor(layers: readonly Image[], depth: number, layer: Image, e: Extent): Promise<MapEntry[]> {
  const base = { start: e.start, length: e.length, depth };
  const fileOf = (storage: Image['storage']): string => (storage === layer.storage ? layer.filename : storage.name);
  switch (e.kind) {
    case 'data':
      return [{ ...base, present: true, zero: false, data: true, offset: e.offset, filename: fileOf(e.storage) }];
    case 'compressed':
      return [{ ...base, present: true, zero: false, data: true }];
    case 'zero':
      return [e.storage && e.offset !== undefined ? { ...base, present: true, zero: true, data: e.data ?? false, offset: e.offset, filename: fileOf(e.storage) } : { ...base, present: true, zero: true, data: e.data ?? false }];
    case 'unallocated': {
      const below = layers[depth + 1];
      // Unallocated with no backing, or past the backing image's end, reads as zeros at this depth
      // (with the host offset the layer reserved for it, if any).
      const hostAt = (skip: number): { offset?: number; filename?: string } =>
        e.storage && e.offset !== undefined ? { offset: e.offset + skip, filename: fileOf(e.storage) } : {};
      if (!below || e.start >= below.virtualSize) return [{ ...base, present: false, zero: true, data: false, ...hostAt(0) }];
      const inBacking = Math.min(e.length, below.virtualSize - e.start);
      const out = await resolve(layers, depth + 1, e.start, inBacking);
      if (inBacking < e.length) out.push({ start: e.start + inBacking, length: e.length - inBacking, depth, present: false, zero: true, data: false, ...hostAt(inBacking) });
      return out;
    }
  }
}

/** img_map's (zero-initialised) current entry, dumped even when nothing was mapped. */
export const EMPTY_MAP_ENTRY: MapEntry = { start: 0, length: 0, depth: 0, present: false, zero: false, data: false };

/** One entry of qemu-img map --output=json, without the separator that follows it. */
export function mapJsonEntry(e: MapEntry): string {
  return (
    `{ "start": ${e.start}, "length": ${e.length}, "depth": ${e.depth}, "present": ${e.present}, "zero": ${e.zero}, "data": ${e.data}` +
    (e.offset !== undefined ? `, "offset": ${e.offset}` : '') +
    '}'
  );
}

/** qemu-img map --output=json. */
export function mapJson(entries: MapEntry[]): string {
  const list = entries.length > 0 ? entries : [EMPTY_MAP_ENTRY];
  return '[' + list.map(mapJsonEntry).join(',\n') + ']\n';
}

const hex16 = (n: number): string => (n === 0 ? '0' : '0x' + n.toString(16)).padEnd(16);

/** qemu-img map (human): the data ranges with their host offsets. */
export function mapHumanLine(e: MapEntry): string | undefined {
  if (!e.data || e.zero) return undefined;
  return `${hex16(e.start)}${hex16(e.length)}${hex16(e.offset ?? 0)}${e.filename ?? ''}\n`;
}

export const MAP_HUMAN_HEADER = 'Offset          Length          Mapped to       File\n';
