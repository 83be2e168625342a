/**
 * Opening blob stores from URLs (docs/flist.md "Stores"): `dir:///abs/path` or a plain path,
 * `http(s)://BASE` (read-only), `s3://`, `s3s://`, `s3s+tls://` (src/flist/store/s3.ts), each
 * optionally prefixed with an rfs range `aa-bb=`. Unknown schemes are INVALID_STORE_URL.
 */
import { resolve } from 'node:path';
import { VmimgError } from '../../util/errors.js';
import { DirStore } from './dir.js';
import { HttpStore } from './http.js';
import { parseRouteSpec, Router } from './router.js';
import { redactUrl } from './s3-url.js';
import type { BlobStore, StoreOptions } from './types.js';

export async function openStore(url: string, options: StoreOptions = {}): Promise<BlobStore> {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    if (url === '' || url.includes('\0')) throw new VmimgError('INVALID_STORE_URL', `invalid store '${redactUrl(url)}'`, { url: redactUrl(url) });
    return new DirStore(resolve(url));
  }
  switch (scheme) {
    case 'dir': {
      const path = decodeURIComponent(url.slice('dir://'.length));
      if (!path.startsWith('/')) throw new VmimgError('INVALID_STORE_URL', `dir store URL '${url}' must hold an absolute path (dir:///abs/path)`, { url });
      return new DirStore(path);
    }
    case 'http':
    case 'https': {
      let parsed: URL;
      try {
        parsed = new URL(url);
      } catch {
        throw new VmimgError('INVALID_STORE_URL', `invalid HTTP store URL '${redactUrl(url)}'`, { url: redactUrl(url) });
      }
      // Blobs are addressed as BASE/<hex[0..2]>/<hex>: a query or fragment would end up before them.
      if (parsed.search !== '' || parsed.hash !== '' || parsed.hostname === '') {
        throw new VmimgError('INVALID_STORE_URL', `HTTP store URL '${redactUrl(url)}' must be scheme://host[:port]/path without query or fragment`, { url: redactUrl(url) });
      }
      return new HttpStore(url, options);
    }
    case 's3':
    case 's3s':
    case 's3s+tls': {
      const { openS3Store } = await import('./s3.js');
      return openS3Store(url, options);
    }
    default:
      throw new VmimgError('INVALID_STORE_URL', `unknown store scheme '${scheme}' in '${redactUrl(url)}' (dir, http, https, s3, s3s, s3s+tls)`, { url: redactUrl(url) });
  }
}

/** A Router over store arguments (`[aa-bb=]URL` each). */
export async function openRouter(specs: readonly string[], options: StoreOptions = {}): Promise<Router> {
  const routes = [];
  try {
    for (const spec of specs) {
      const { start, end, url } = parseRouteSpec(spec);
      routes.push({ start, end, store: await openStore(url, options) });
    }
    return new Router(routes);
  } catch (e) {
    for (const r of routes) await r.store.close().catch(() => undefined);
    throw e;
  }
}
