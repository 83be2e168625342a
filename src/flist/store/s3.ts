/**
 * S3 blob store (docs/flist-s3.md): one object per blob, keyed by the lowercase hex id under an
 * optional prefix, through AWS SDK v3 with path-style addressing so any S3-compatible server
 * (MinIO, Ceph RGW, Garage, s3rver) works. Implements BlobStore (./types.ts):
 *   has = HeadObject, put = PutObject (S3 PUT replaces atomically, so it is idempotent),
 *   get = GetObject read under a size cap.
 *
 * Error codes (stable): BLOB_NOT_FOUND (NoSuchKey / 404), STORE_AUTH_FAILED (InvalidAccessKeyId,
 * SignatureDoesNotMatch, AccessDenied, 401/403), STORE_BUCKET_MISSING (NoSuchBucket; a HEAD 404 is
 * disambiguated once with HeadBucket), STORE_UNREACHABLE (connection refused/reset, DNS, timeouts,
 * after at most `maxAttempts` tries), STORE_ERROR (anything else). Messages and details name the
 * display URL (no secret), the bucket and the key; any text coming back from the server is scrubbed
 * of the secret before it is quoted.
 */
import { GetObjectCommand, HeadBucketCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { VmimgError, type ErrorCode } from '../../util/errors.js';
import { parseS3Url, s3ObjectKey, type S3Location } from './s3-url.js';
import { blobKey, type BlobStore, type StoreOptions } from './types.js';

/** Largest blob `get` accepts: rfs blocks are ≤ 512 KiB of plaintext (≈ 600 KiB encoded); generous. */
export const S3_MAX_BLOB_BYTES = 64 * 1024 * 1024;
export const S3_DEFAULT_TIMEOUT_MS = 30_000;
export const S3_DEFAULT_MAX_ATTEMPTS = 3;

export interface S3StoreOptions extends StoreOptions {
  /** Total tries per request (SDK standard retry mode), 1..10. Default 3. */
  maxAttempts?: number;
  /** Cap on the size of one blob read by `get`. Default S3_MAX_BLOB_BYTES. */
  maxBlobBytes?: number;
}

/** Node/undici error codes that mean "the server could not be reached or went away". */
const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'ESOCKETTIMEDOUT', 'ENOTFOUND',
  'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'EHOSTDOWN', 'ERR_SOCKET_CONNECTION_TIMEOUT',
]);
/** TLS failures (s3s://): the server can't be reached securely. */
const TLS_CODES = new Set([
  'EPROTO', 'ERR_SSL_WRONG_VERSION_NUMBER', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID', 'ERR_TLS_HANDSHAKE_TIMEOUT',
]);
const AUTH_CODES = new Set([
  'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'Forbidden', 'InvalidToken', 'ExpiredToken',
  'TokenRefreshRequired', 'AuthorizationHeaderMalformed', 'RequestTimeTooSkewed', 'InvalidSecurity',
]);
const NOT_FOUND_CODES = new Set(['NoSuchKey', 'NotFound']);

interface SdkErrorLike {
  name?: string;
  message?: string;
  code?: string;
  errno?: string | number;
  Code?: string;
  $metadata?: { httpStatusCode?: number; attempts?: number };
  errors?: unknown[];
}

/** Builds an SDK client for a parsed location: path-style, bounded retries and timeouts. */
export function createS3Client(location: S3Location, options: S3StoreOptions = {}): S3Client {
  const maxAttempts = options.maxAttempts ?? S3_DEFAULT_MAX_ATTEMPTS;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 10) {
    throw new VmimgError('INVALID_OPTION', `maxAttempts must be an integer in 1..10, got ${maxAttempts}`, { maxAttempts });
  }
  const timeoutMs = options.timeoutMs ?? S3_DEFAULT_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new VmimgError('INVALID_OPTION', `timeoutMs must be a positive number, got ${timeoutMs}`, { timeoutMs });
  }
  return new S3Client({
    endpoint: location.endpoint,
    region: location.region,
    forcePathStyle: true,
    maxAttempts,
    retryMode: 'standard',
    // Third-party servers (older MinIO/Ceph, s3rver) reject or ignore the newer default CRC trailers.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // socketTimeout: inactivity limit that fails the request (TimeoutError). The SDK's requestTimeout
    // only logs a warning unless throwOnRequestTimeout is set, and a total deadline would cut large
    // publishes, so inactivity is what bounds a hung server here.
    requestHandler: { connectionTimeout: Math.min(timeoutMs, 10_000), socketTimeout: timeoutMs },
    // No credentials in the URL: send unsigned requests (public buckets) rather than picking up
    // whatever AWS credentials the host environment happens to hold.
    ...(location.credentials
      ? { credentials: { ...location.credentials } }
      : { credentials: { accessKeyId: '', secretAccessKey: '' }, signer: { sign: async (request: unknown) => request } as never }),
  });
}

/** Removes every occurrence of the secret from text about to be quoted. */
function scrub(text: string, location: S3Location): string {
  const secret = location.credentials?.secretAccessKey;
  let out = text;
  if (secret) {
    for (const form of new Set([secret, encodeURIComponent(secret)])) out = out.split(form).join('***');
  }
  return out;
}

function networkCode(e: SdkErrorLike): string | undefined {
  const direct = typeof e.code === 'string' ? e.code : typeof e.errno === 'string' ? e.errno : undefined;
  if (direct && (NETWORK_CODES.has(direct) || TLS_CODES.has(direct))) return direct;
  for (const inner of e.errors ?? []) {
    const c = networkCode(inner as SdkErrorLike);
    if (c) return c;
  }
  return undefined;
}

export interface S3ErrorContext {
  op: 'has' | 'get' | 'put' | 'publish' | 'check bucket';
  key?: string;
}

/** Maps an SDK/transport failure to a VmimgError with a stable code and a secret-free message. */
export function mapS3Error(e: unknown, location: S3Location, ctx: S3ErrorContext): VmimgError {
  if (e instanceof VmimgError) return e;
  const err = (e ?? {}) as SdkErrorLike;
  const status = err.$metadata?.httpStatusCode;
  const awsCode = err.Code ?? err.name;
  const net = networkCode(err);
  const where = `${location.displayUrl}` + (ctx.key !== undefined ? ` (bucket '${location.bucket}', key '${ctx.key}')` : '');
  const serverSaid = scrub(String(err.message ?? ''), location).slice(0, 300);
  const details: Record<string, unknown> = { url: location.displayUrl, bucket: location.bucket, op: ctx.op };
  if (ctx.key !== undefined) details['key'] = ctx.key;
  if (status !== undefined) details['status'] = status;
  if (awsCode && (status !== undefined || (awsCode !== 'Error' && awsCode !== 'AggregateError'))) details['awsCode'] = awsCode;
  if (err.$metadata?.attempts !== undefined) details['attempts'] = err.$metadata.attempts;

  let code: ErrorCode;
  let message: string;
  if (net || awsCode === 'TimeoutError' || awsCode === 'RequestTimeout' || (status === undefined && awsCode === 'AbortError')) {
    code = 'STORE_UNREACHABLE';
    if (net) details['errno'] = net;
    if (net && TLS_CODES.has(net)) details['tls'] = true;
    const tries = err.$metadata?.attempts;
    message = `S3 store ${where} is unreachable during ${ctx.op}: ${net ?? awsCode} (${serverSaid || 'no response'})` +
      (tries !== undefined ? ` after ${tries} attempt${tries === 1 ? '' : 's'}` : '');
  } else if (awsCode === 'NoSuchBucket') {
    code = 'STORE_BUCKET_MISSING';
    message = `S3 bucket '${location.bucket}' does not exist at ${location.displayUrl}`;
  } else if ((awsCode && AUTH_CODES.has(awsCode)) || status === 401 || status === 403) {
    code = 'STORE_AUTH_FAILED';
    const who = location.credentials ? `access key '${location.credentials.accessKeyId}'` : 'anonymous access';
    message = `S3 store ${where} refused ${who} during ${ctx.op}: ${awsCode && awsCode !== 'Unknown' ? awsCode : `HTTP ${status}`}` +
      (serverSaid && serverSaid !== 'UnknownError' ? ` (${serverSaid})` : '') +
      (location.credentials && location.credentials.secretAccessKey === '' ? '; no secret key was given (put it in the URL, or set S3_SECRET_KEY in the environment or the config file)' : '');
  } else if ((awsCode && NOT_FOUND_CODES.has(awsCode)) || status === 404) {
    code = 'BLOB_NOT_FOUND';
    message = ctx.op === 'publish' ? `Object not found at ${where}` : `Blob ${ctx.key ?? '?'} not found in S3 store ${location.displayUrl}`;
  } else {
    code = 'STORE_ERROR';
    message = `S3 store ${where} failed during ${ctx.op}: ${awsCode ?? 'error'}${status !== undefined ? ` (HTTP ${status})` : ''}` +
      (serverSaid ? `: ${serverSaid}` : '');
  }
  return new VmimgError(code, message, details);
}

/** Reads a response body, refusing more than `cap` bytes. */
async function readCapped(body: unknown, cap: number, tooBig: (n: number) => VmimgError): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  const stream = body as Readable & AsyncIterable<Uint8Array>;
  try {
    for await (const chunk of stream) {
      total += chunk.byteLength;
      if (total > cap) throw tooBig(total);
      chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    }
  } finally {
    if (total > cap && typeof stream.destroy === 'function') stream.destroy();
  }
  return Buffer.concat(chunks, total);
}

class S3BlobStore implements BlobStore {
  readonly url: string;
  readonly displayUrl: string;
  readonly readOnly = false;
  private bucketSeen = false;
  /** Requests in flight (including SDK retries), aborted by close() so none outlives the store. */
  private readonly inflight = new Set<AbortController>();
  private bucketCheck: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly location: S3Location,
    private readonly client: S3Client,
    private readonly maxBlobBytes: number,
    keepPassword: boolean,
  ) {
    this.displayUrl = location.displayUrl;
    this.url = keepPassword ? location.fullUrl : location.displayUrl;
  }

  private key(id: Uint8Array): string {
    if (id.byteLength !== 32) {
      throw new VmimgError('INVALID_OPTION', `Blob id must be 32 bytes, got ${id.byteLength}`, { length: id.byteLength });
    }
    return s3ObjectKey(this.location, blobKey(id));
  }

  private async tracked<T>(op: S3ErrorContext['op'], key: string | undefined, fn: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    const ac = new AbortController();
    this.inflight.add(ac);
    try {
      return await fn(ac.signal);
    } catch (e) {
      if (this.closed && !(e instanceof VmimgError)) {
        throw new VmimgError('STORE_ERROR', `S3 store ${this.displayUrl} was closed during ${op}${key !== undefined ? ` of '${key}'` : ''}`, {
          url: this.displayUrl, op, ...(key !== undefined ? { key } : {}),
        });
      }
      throw e;
    } finally {
      this.inflight.delete(ac);
    }
  }

  private live(): void {
    if (this.closed) throw new VmimgError('INTERNAL', `S3 store ${this.displayUrl} used after close`, { url: this.displayUrl });
  }

  /** A HEAD 404 carries no body: tell "no such key" from "no such bucket" once per store (shared by parallel callers). */
  private checkBucket(): Promise<void> {
    if (this.bucketSeen) return Promise.resolve();
    this.bucketCheck ??= this.tracked('check bucket', undefined, (abortSignal) => this.client.send(new HeadBucketCommand({ Bucket: this.location.bucket }), { abortSignal })).then(
      () => {
        this.bucketSeen = true;
      },
      (e: unknown) => {
        this.bucketCheck = undefined; // a later call may try again (the bucket may be created)
        const status = (e as SdkErrorLike).$metadata?.httpStatusCode;
        if (status === 404) throw mapS3Error({ ...(e as object), name: 'NoSuchBucket', Code: 'NoSuchBucket' }, this.location, { op: 'check bucket' });
        throw mapS3Error(e, this.location, { op: 'check bucket' });
      },
    );
    return this.bucketCheck;
  }

  async has(id: Uint8Array): Promise<boolean> {
    this.live();
    const Key = this.key(id);
    try {
      await this.tracked('has', Key, (abortSignal) => this.client.send(new HeadObjectCommand({ Bucket: this.location.bucket, Key }), { abortSignal }));
      this.bucketSeen = true;
      return true;
    } catch (e) {
      if (e instanceof VmimgError) throw e;
      const mapped = mapS3Error(e, this.location, { op: 'has', key: Key });
      if (mapped.code !== 'BLOB_NOT_FOUND') throw mapped;
      await this.checkBucket();
      return false;
    }
  }

  async get(id: Uint8Array): Promise<Buffer> {
    this.live();
    const Key = this.key(id);
    const cap = this.maxBlobBytes;
    const tooBig = (n: number): VmimgError =>
      new VmimgError('BLOB_CORRUPT', `Blob ${Key} in S3 store ${this.displayUrl} is larger than the ${cap}-byte cap (${n} bytes or more)`, {
        url: this.displayUrl, key: Key, size: n, cap,
      });
    try {
      return await this.tracked('get', Key, async (abortSignal) => {
        const out = await this.client.send(new GetObjectCommand({ Bucket: this.location.bucket, Key }), { abortSignal });
        this.bucketSeen = true;
        if (out.ContentLength !== undefined && out.ContentLength > cap) {
          (out.Body as Readable | undefined)?.destroy?.();
          throw tooBig(out.ContentLength);
        }
        if (!out.Body) return Buffer.alloc(0);
        const bytes = await readCapped(out.Body, cap, tooBig);
        if (out.ContentLength !== undefined && bytes.byteLength !== out.ContentLength) {
          throw new VmimgError('STORE_UNREACHABLE', `S3 store ${this.displayUrl} sent ${bytes.byteLength} of ${out.ContentLength} bytes of blob ${Key}`, {
            url: this.displayUrl, key: Key,
          });
        }
        return bytes;
      });
    } catch (e) {
      if (e instanceof VmimgError) throw e;
      throw mapS3Error(e, this.location, { op: 'get', key: Key });
    }
  }

  async put(id: Uint8Array, data: Uint8Array): Promise<void> {
    this.live();
    const Key = this.key(id);
    const Body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    try {
      await this.tracked('put', Key, (abortSignal) => this.client.send(new PutObjectCommand({
        Bucket: this.location.bucket, Key, Body, ContentLength: Body.byteLength, ContentType: 'application/octet-stream',
      }), { abortSignal }));
      this.bucketSeen = true;
    } catch (e) {
      if (e instanceof VmimgError) throw e;
      throw mapS3Error(e, this.location, { op: 'put', key: Key });
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const ac of this.inflight) ac.abort();
    this.client.destroy();
  }
}

/**
 * Opens an S3 store from a URL (see ./s3-url.ts for the forms). Opening does no I/O: a missing
 * bucket or bad credentials surface on the first request with the codes above.
 */
export async function openS3Store(url: string, options: S3StoreOptions): Promise<BlobStore> {
  const location = parseS3Url(url);
  const maxBlobBytes = options.maxBlobBytes ?? S3_MAX_BLOB_BYTES;
  if (!Number.isInteger(maxBlobBytes) || maxBlobBytes < 1) {
    throw new VmimgError('INVALID_OPTION', `maxBlobBytes must be a positive integer, got ${maxBlobBytes}`, { maxBlobBytes });
  }
  return new S3BlobStore(location, createS3Client(location, options), maxBlobBytes, options.keepPassword ?? false);
}
