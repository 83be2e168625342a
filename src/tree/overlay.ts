/**
 * Merging sources in order, as extracting them one over another would: a later entry replaces an
 * earlier one at the same path (a directory over a directory replaces only its metadata; anything
 * else over a directory also removes what lay below it).
 *
 * With whiteouts on, each source is an OCI image layer (image-spec layer.md "Whiteouts"):
 *  - `.wh.NAME` in DIR deletes DIR/NAME and everything below it from the LOWER layers;
 *  - `.wh..wh..opq` in DIR deletes every lower-layer entry below DIR (DIR itself stays);
 *  - whiteouts never hide entries of their own layer, whatever the order inside the layer, and
 *    are not part of the result; other `.wh..wh.*` names (aufs metadata) are dropped.
 */
import { VmimgError } from '../util/errors.js';
import { baseName, childPath, parentPath, pathKey, showPath } from './path.js';
import type { RawEntry } from './types.js';

const WH = Buffer.from('.wh.');
const OPAQUE = Buffer.from('.wh..wh..opq');
const AUFS_META = Buffer.from('.wh..wh.');

/** A merged set of entries keyed by path, with a child index so subtrees drop in O(subtree). */
export class MergedEntries {
  readonly #byPath = new Map<string, RawEntry>();
  readonly #children = new Map<string, Set<string>>();

  get size(): number {
    return this.#byPath.size;
  }

  values(): IterableIterator<RawEntry> {
    return this.#byPath.values();
  }

  get(key: string): RawEntry | undefined {
    return this.#byPath.get(key);
  }

  /** Adds `entry`, replacing an earlier entry at its path (see the file comment). */
  put(entry: RawEntry): void {
    const key = pathKey(entry.path);
    // Anything but a directory also drops what lay below the path (with or without a dir entry).
    if (entry.type !== 'dir') this.removeBelow(key);
    this.#byPath.set(key, entry);
    // Index the path under every ancestor, entries or not, so a subtree can always be found.
    let path = entry.path;
    while (path.length > 0) {
      const parent = parentPath(path);
      const parentKey = pathKey(parent);
      let set = this.#children.get(parentKey);
      if (!set) this.#children.set(parentKey, (set = new Set()));
      const child = pathKey(path);
      if (set.has(child)) break;
      set.add(child);
      path = parent;
    }
  }

  /** Removes the entry at `key` and everything below it. */
  remove(key: string): void {
    this.removeBelow(key);
    if (!this.#byPath.delete(key)) return;
    const parent = pathKey(parentPath(Buffer.from(key, 'latin1')));
    this.#children.get(parent)?.delete(key);
  }

  /** Removes everything below `key` (not `key` itself). */
  removeBelow(key: string): void {
    const stack = [key];
    while (stack.length > 0) {
      const current = stack.pop()!;
      const children = this.#children.get(current);
      if (!children) continue;
      this.#children.delete(current);
      for (const child of children) {
        this.#byPath.delete(child);
        stack.push(child);
      }
      children.clear();
    }
  }
}

type Whiteout = { kind: 'opaque'; dir: Buffer } | { kind: 'remove'; path: Buffer };

/** Classifies an entry's name as a whiteout (OCI layer.md), or undefined for an ordinary entry. */
export function whiteoutOf(entry: RawEntry): Whiteout | 'ignore' | undefined {
  if (entry.path.length === 0) return undefined;
  const name = baseName(entry.path);
  if (!name.subarray(0, WH.length).equals(WH)) return undefined;
  if (name.equals(OPAQUE)) return { kind: 'opaque', dir: parentPath(entry.path) };
  if (name.subarray(0, AUFS_META.length).equals(AUFS_META)) return 'ignore';
  const target = name.subarray(WH.length);
  if (target.length === 0 || target.equals(Buffer.from('.')) || target.equals(Buffer.from('..'))) {
    throw new VmimgError('UNSAFE_PATH', `Whiteout '${showPath(entry.path)}' names no valid entry`, { path: showPath(entry.path) });
  }
  return { kind: 'remove', path: childPath(parentPath(entry.path), target) };
}

/**
 * Merges `layers` (each in source order) into one set of entries. With `whiteouts`, every layer
 * is an OCI layer as described above; without, `.wh.*` names are ordinary entries.
 */
export function mergeLayers(layers: readonly (readonly RawEntry[])[], whiteouts: boolean): MergedEntries {
  const merged = new MergedEntries();
  layers.forEach((layer, index) => {
    const ordinary: RawEntry[] = [];
    const pending: Whiteout[] = [];
    for (const original of layer) {
      // Hard-link identities (dev:ino) are only meaningful inside one source.
      const entry = original.inodeKey === undefined ? original : { ...original, inodeKey: `${index}/${original.inodeKey}` };
      const wh = whiteouts ? whiteoutOf(entry) : undefined;
      if (wh === undefined) ordinary.push(entry);
      else if (wh !== 'ignore') pending.push(wh);
    }
    // Whiteouts act on the lower layers only: apply them before this layer's own entries.
    for (const wh of pending) {
      if (wh.kind === 'opaque') merged.removeBelow(pathKey(wh.dir));
      else merged.remove(pathKey(wh.path));
    }
    for (const entry of ordinary) merged.put(entry);
  });
  return merged;
}
