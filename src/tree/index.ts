/**
 * Building a Tree from inputs: each input is a directory or a tar/tar.gz/tar.zst file; several
 * inputs are overlaid in order (later wins). The public entry point of src/tree.
 */
import { stat } from 'node:fs/promises';
import { fromSystemError } from '../util/errors.js';
import { readDirectory } from './dir.js';
import { normaliseEntries, type NormaliseOptions } from './normalise.js';
import { mergeLayers } from './overlay.js';
import type { TarSourceOptions } from './tar.js';
import type { RawEntry, Tree } from './types.js';

export type { ContentSource, EntryType, RawEntry, Tree, TreeEntry } from './types.js';
export { readDirectory } from './dir.js';

export interface LoadTreeOptions extends NormaliseOptions, TarSourceOptions {
  /**
   * Treat inputs as OCI layers and honour `.wh.` whiteouts (overlay.ts). Default: on when there
   * is more than one input; a single input keeps `.wh.*` names as ordinary entries.
   */
  whiteouts?: boolean;
}

/** A Tree over already-read layers (each in source order); `close` releases their resources. */
export function treeFromLayers(layers: readonly (readonly RawEntry[])[], options: LoadTreeOptions = {}, close: () => Promise<void> = async () => undefined): Tree {
  const merged = mergeLayers(layers, options.whiteouts ?? layers.length > 1);
  const entries = normaliseEntries(merged, options);
  let closed = false;
  return {
    entries,
    async close() {
      if (closed) return;
      closed = true;
      await close();
    },
  };
}

/**
 * Reads each input (directory or archive, told apart by stat) and overlays them in order.
 * The caller must close() the Tree once its content has been consumed (it may hold a spool).
 */
export async function loadTree(inputs: readonly string[], options: LoadTreeOptions = {}): Promise<Tree> {
  const closers: Array<() => Promise<void>> = [];
  const closeAll = async (): Promise<void> => {
    for (const c of closers.splice(0)) await c().catch(() => undefined);
  };
  try {
    const layers: RawEntry[][] = [];
    for (const input of inputs) {
      let isDir: boolean;
      try {
        isDir = (await stat(input)).isDirectory();
      } catch (e) {
        throw fromSystemError(e, input, 'open');
      }
      if (isDir) {
        layers.push(await readDirectory(input));
      } else {
        // The tar reader (and tar-stream) loads only when an archive is given.
        const { readTarFile } = await import('./tar.js');
        const tar = await readTarFile(input, options);
        closers.push(tar.close);
        layers.push(tar.entries);
      }
    }
    return treeFromLayers(layers, options, closeAll);
  } catch (e) {
    await closeAll();
    throw e;
  }
}
