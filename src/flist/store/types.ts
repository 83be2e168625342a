/**
 * The one interface every flist blob store implements (docs/flist.md): dir://, s3://, http(s)://,
 * and the router that spreads blobs over several of them by the first byte of the blob id, as rfs
 * routes (../shared/reference/rfs-flist.md "Stores and URLs").
 *
 * Contracts:
 * - Ids are 32-byte blob ids (BLAKE2b-256 of the stored, encrypted bytes); stores key by lowercase hex.
 * - `get` resolves to the exact stored bytes or throws BLOB_NOT_FOUND naming the hex id; transport
 *   failures are STORE_UNREACHABLE / STORE_AUTH_FAILED / STORE_BUCKET_MISSING / STORE_ERROR.
 * - `put` is idempotent (storing bytes already present is not an error) and atomic: a reader never
 *   sees a partial blob. A read-only store throws STORE_READ_ONLY. `put` keeps no reference to
 *   `data` once it has settled: pack reuses the buffer for the next blob.
 * - `has` answers without transferring the blob where the backend allows it (HEAD, stat).
 * - No method ever puts credentials into an error message, a log line or `url` (see `displayUrl`).
 */
export interface BlobStore {
  /** The store URL as written into manifests: password stripped unless the user asked to keep it. */
  readonly url: string;
  /** The URL safe to print (never a secret). */
  readonly displayUrl: string;
  readonly readOnly: boolean;
  get(id: Uint8Array): Promise<Buffer>;
  has(id: Uint8Array): Promise<boolean>;
  put(id: Uint8Array, data: Uint8Array): Promise<void>;
  /** Releases connections and handles. Idempotent. */
  close(): Promise<void>;
}

/** Options every store constructor takes. */
export interface StoreOptions {
  /** Keep the password in `url` (rfs --no-strip-password). Default false. */
  keepPassword?: boolean;
  /** Per-request timeout in milliseconds for network stores. */
  timeoutMs?: number;
}

/** Lowercase hex of a blob id, the key every store uses. */
export function blobKey(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('hex');
}
