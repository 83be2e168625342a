/**
 * Several stores by blob-id range, as rfs routes (src/store/router.rs): a store argument may be
 * `aa-bb=URL` (two hex bytes, inclusive), otherwise it covers 00-ff. A blob goes to every
 * writable store whose range holds its first byte; reads try the matching stores in order and
 * report every failure if none has it. The manifest's route table lists these ranges and URLs.
 */
import { VmimgError } from '../../util/errors.js';
import { redactUrl } from './s3-url.js';
import { blobKey, type BlobStore } from './types.js';

export interface RoutedStore {
  start: number;
  end: number;
  store: BlobStore;
}

const RANGE = /^([0-9a-f]{2})-([0-9a-f]{2})=(.+)$/;

/** Splits `aa-bb=URL` into its range and URL (00-ff when there is no range). */
export function parseRouteSpec(spec: string): { start: number; end: number; url: string } {
  const m = RANGE.exec(spec);
  if (!m) return { start: 0, end: 255, url: spec };
  const start = parseInt(m[1]!, 16);
  const end = parseInt(m[2]!, 16);
  if (start > end) throw new VmimgError('INVALID_STORE_URL', `store range ${m[1]}-${m[2]} is empty (start after end) in '${redactUrl(spec)}'`, { spec: redactUrl(spec) });
  return { start, end, url: m[3]! };
}

export class Router {
  readonly routes: readonly RoutedStore[];

  constructor(routes: RoutedStore[]) {
    if (routes.length === 0) throw new VmimgError('USAGE', 'at least one blob store is needed', {});
    this.routes = routes;
  }

  #matching(id: Uint8Array): RoutedStore[] {
    return this.routes.filter((r) => id[0]! >= r.start && id[0]! <= r.end);
  }

  /** Stores `data` in every matching writable store that lacks it; reports what it found. */
  async put(id: Uint8Array, data: Uint8Array): Promise<{ stored: number; present: number }> {
    const targets = this.#matching(id).filter((r) => !r.store.readOnly);
    if (targets.length === 0) {
      throw new VmimgError('NO_STORE_FOR_BLOB', `no writable store covers blob ${blobKey(id)} (first byte ${blobKey(id).slice(0, 2)})`, { id: blobKey(id) });
    }
    let stored = 0;
    let present = 0;
    for (const t of targets) {
      if (await t.store.has(id)) present++;
      else {
        await t.store.put(id, data);
        stored++;
      }
    }
    return { stored, present };
  }

  async get(id: Uint8Array): Promise<Buffer> {
    const candidates = this.#matching(id);
    if (candidates.length === 0) throw new VmimgError('NO_STORE_FOR_BLOB', `no store covers blob ${blobKey(id)} (first byte ${blobKey(id).slice(0, 2)})`, { id: blobKey(id) });
    const errors: VmimgError[] = [];
    for (const c of candidates) {
      try {
        return await c.store.get(id);
      } catch (e) {
        if (!(e instanceof VmimgError)) throw e;
        errors.push(e);
      }
    }
    if (errors.length === 1) throw errors[0]!;
    const code = errors.every((e) => e.code === 'BLOB_NOT_FOUND') ? 'BLOB_NOT_FOUND' : errors.find((e) => e.code !== 'BLOB_NOT_FOUND')!.code;
    throw new VmimgError(code, `blob ${blobKey(id)} could not be read from any store: ${errors.map((e) => e.message).join('; ')}`, { id: blobKey(id) });
  }

  async close(): Promise<void> {
    for (const r of this.routes) await r.store.close().catch(() => undefined);
  }
}
