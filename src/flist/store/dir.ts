/**
 * `dir://PATH` blob store with rfs's on-disk layout (rfs src/store/dir.rs): blob X at
 * `PATH/<hex(X)[0..2]>/<hex(X)>`; reads fall back to `PATH/<hex(X)>` (an older flat layout).
 * Writes go to a temporary file in the same folder and are renamed into place, so a reader
 * never sees a partial blob and an interrupted pack leaves only complete blobs.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fromSystemError, VmimgError } from '../../util/errors.js';
import { blobKey, type BlobStore } from './types.js';

/** Largest blob accepted on read (a 512 KiB block never grows past this). */
export const MAX_BLOB_BYTES = 64 * 1024 * 1024;

export class DirStore implements BlobStore {
  readonly url: string;
  readonly displayUrl: string;
  readonly readOnly = false;
  readonly root: string;
  /** Fan-out folders made (or found) by this store: each is made once, not once per blob. */
  readonly #made = new Map<string, Promise<unknown>>();

  constructor(root: string) {
    this.root = resolve(root);
    this.url = `dir://${this.root}`;
    this.displayUrl = this.url;
  }

  #paths(id: Uint8Array): [string, string] {
    const hex = blobKey(id);
    return [join(this.root, hex.slice(0, 2), hex), join(this.root, hex)];
  }

  async get(id: Uint8Array): Promise<Buffer> {
    for (const path of this.#paths(id)) {
      try {
        const st = await stat(path);
        if (st.size > MAX_BLOB_BYTES) throw new VmimgError('BLOB_CORRUPT', `blob ${blobKey(id)} in ${this.displayUrl} is ${st.size} bytes, more than ${MAX_BLOB_BYTES}`, { id: blobKey(id) });
        return await readFile(path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw fromSystemError(e, path, 'read');
      }
    }
    throw new VmimgError('BLOB_NOT_FOUND', `blob ${blobKey(id)} is not in ${this.displayUrl}`, { id: blobKey(id), store: this.displayUrl });
  }

  async has(id: Uint8Array): Promise<boolean> {
    for (const path of this.#paths(id)) {
      try {
        await stat(path);
        return true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(e, path, 'read');
      }
    }
    return false;
  }

  async put(id: Uint8Array, data: Uint8Array): Promise<void> {
    const [path] = this.#paths(id);
    const dir = join(path, '..');
    const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      let made = this.#made.get(dir);
      if (!made) this.#made.set(dir, (made = mkdir(dir, { recursive: true })));
      await made.catch((e: unknown) => {
        this.#made.delete(dir); // a later put tries again
        throw e;
      });
      await writeFile(tmp, data);
      await rename(tmp, path);
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw fromSystemError(e, path, 'write');
    }
  }

  async close(): Promise<void> {}
}
