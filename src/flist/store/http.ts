/**
 * Read-only `http(s)://BASE` blob store (rfs src/store/http.rs): blob X at `BASE/<hex[0..2]>/<hex>`,
 * falling back to `BASE/<hex>` on 404. Statuses map to stable codes: 404 on both → BLOB_NOT_FOUND,
 * 401/403 → STORE_AUTH_FAILED, other non-200 → STORE_ERROR, connection failures and timeouts →
 * STORE_UNREACHABLE. Bodies are read under a size cap. Credentials in the URL never appear in
 * messages (displayUrl).
 */
import { VmimgError } from '../../util/errors.js';
import { redactUrl } from './s3-url.js';
import { MAX_BLOB_BYTES } from './dir.js';
import { blobKey, type BlobStore, type StoreOptions } from './types.js';

const DEFAULT_TIMEOUT_MS = 30_000;

export class HttpStore implements BlobStore {
  readonly url: string;
  readonly displayUrl: string;
  readonly readOnly = true;
  readonly #base: string;
  readonly #timeoutMs: number;

  constructor(url: string, options: StoreOptions = {}) {
    this.#base = url.replace(/\/+$/, '');
    this.displayUrl = redactUrl(this.#base);
    this.url = options.keepPassword ? this.#base : stripPassword(this.#base);
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  async #request(method: 'GET' | 'HEAD', id: Uint8Array): Promise<Response | undefined> {
    const hex = blobKey(id);
    for (const url of [`${this.#base}/${hex.slice(0, 2)}/${hex}`, `${this.#base}/${hex}`]) {
      let res: Response;
      try {
        res = await fetch(url, { method, signal: AbortSignal.timeout(this.#timeoutMs), redirect: 'follow' });
      } catch (e) {
        const cause = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).name;
        throw new VmimgError('STORE_UNREACHABLE', `blob store ${this.displayUrl} is unreachable (${cause})`, { store: this.displayUrl, op: method });
      }
      if (res.status === 404) {
        await res.body?.cancel();
        continue;
      }
      if (res.status === 401 || res.status === 403) {
        await res.body?.cancel();
        throw new VmimgError('STORE_AUTH_FAILED', `blob store ${this.displayUrl} refused access (HTTP ${res.status})`, { store: this.displayUrl, status: res.status });
      }
      if (res.status !== 200) {
        await res.body?.cancel();
        throw new VmimgError('STORE_ERROR', `blob store ${this.displayUrl} answered HTTP ${res.status} for blob ${hex}`, { store: this.displayUrl, status: res.status, id: hex });
      }
      return res;
    }
    return undefined;
  }

  async get(id: Uint8Array): Promise<Buffer> {
    const res = await this.#request('GET', id);
    if (!res) throw new VmimgError('BLOB_NOT_FOUND', `blob ${blobKey(id)} is not in ${this.displayUrl}`, { id: blobKey(id), store: this.displayUrl });
    const chunks: Buffer[] = [];
    let total = 0;
    try {
      for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) {
        total += c.length;
        if (total > MAX_BLOB_BYTES) throw new VmimgError('BLOB_CORRUPT', `blob ${blobKey(id)} from ${this.displayUrl} is larger than ${MAX_BLOB_BYTES} bytes`, { id: blobKey(id) });
        chunks.push(Buffer.from(c));
      }
    } catch (e) {
      if (e instanceof VmimgError) throw e;
      throw new VmimgError('STORE_UNREACHABLE', `blob store ${this.displayUrl} broke off blob ${blobKey(id)} (${(e as Error).name})`, { store: this.displayUrl, id: blobKey(id) });
    }
    return Buffer.concat(chunks);
  }

  async has(id: Uint8Array): Promise<boolean> {
    return (await this.#request('HEAD', id)) !== undefined;
  }

  async put(id: Uint8Array): Promise<void> {
    throw new VmimgError('STORE_READ_ONLY', `blob store ${this.displayUrl} is read-only (HTTP); cannot store blob ${blobKey(id)}`, { store: this.displayUrl });
  }

  async close(): Promise<void> {}
}

/** The URL without the password part of its userinfo (rfs strips it from manifests by default). */
export function stripPassword(url: string): string {
  return url.replace(/^([a-z0-9+.-]*:\/\/)([^:@/]*):[^@/]*@/i, '$1$2@');
}
