/**
 * Publishing a manifest (`vmimg flist publish X.fl --to URL`, docs/flist-s3.md "Publish"): the .fl
 * file itself is uploaded, unchanged, to
 *   s3://ACCESS:SECRET@HOST:PORT/BUCKET/PREFIX/NAME.fl?region=R   (object key = the path after the bucket;
 *                                                                  a path ending in '/' gets the file's name)
 *   dir:///ABS/DIR/NAME.fl or dir:///ABS/DIR/                     (atomic copy: temp file + rename)
 * after checking the file starts with the SQLite magic "SQLite format 3\0".
 * An s3 URL without userinfo takes S3_ACCESS_KEY/S3_SECRET_KEY from the config file/environment.
 * The returned `url` never holds the secret.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { createAtomically } from '../storage/atomic.js';
import { fromSystemError, VmimgError } from '../util/errors.js';
import { createS3Client, mapS3Error, type S3StoreOptions } from './store/s3.js';
import { s3CredentialsFromConfig } from './store/s3-config.js';
import { isS3Url, parseS3Url, redactUrl } from './store/s3-url.js';
import type { StoreOptions } from './store/types.js';

export const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');
/** Largest manifest publish reads into memory. */
export const MAX_PUBLISH_BYTES = 1024 * 1024 * 1024;

export interface PublishResult {
  /** Where the manifest now lives, without any secret. */
  url: string;
  bytes: number;
  /** Lowercase hex SHA-256 of the published bytes. */
  sha256: string;
}

async function readManifest(path: string): Promise<Buffer> {
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new VmimgError('CORRUPT_MANIFEST', `'${path}' is not a regular file`, { path });
    size = st.size;
  } catch (e) {
    throw fromSystemError(e, path, 'open');
  }
  if (size > MAX_PUBLISH_BYTES) {
    throw new VmimgError('CORRUPT_MANIFEST', `Manifest '${path}' is ${size} bytes, more than the ${MAX_PUBLISH_BYTES}-byte publish cap`, { path, size });
  }
  const fh = await open(path, 'r').catch((e: unknown) => {
    throw fromSystemError(e, path, 'open');
  });
  try {
    const buf = Buffer.alloc(size);
    let got = 0;
    while (got < size) {
      const { bytesRead } = await fh.read(buf, got, size - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got !== size) throw new VmimgError('READ_FAILED', `Manifest '${path}' shrank while being read (${got} of ${size} bytes)`, { path });
    if (size < SQLITE_MAGIC.length || !buf.subarray(0, SQLITE_MAGIC.length).equals(SQLITE_MAGIC)) {
      throw new VmimgError('CORRUPT_MANIFEST', `'${path}' is not an flist manifest: it does not start with the SQLite header "SQLite format 3\\0"`, { path });
    }
    return buf;
  } catch (e) {
    throw fromSystemError(e, path, 'read');
  } finally {
    await fh.close();
  }
}

function objectKeyFor(rawKey: string, manifestPath: string, shownUrl: string): string {
  const key = rawKey === '' || rawKey.endsWith('/') ? `${rawKey}${basename(manifestPath)}` : rawKey;
  for (const seg of key.split('/')) {
    if (seg === '' || seg === '.' || seg === '..') {
      throw new VmimgError('INVALID_STORE_URL', `Invalid publish URL '${shownUrl}': object key '${key}' has an empty, '.' or '..' segment`, { url: shownUrl, key });
    }
  }
  return key;
}

async function publishToS3(path: string, bytes: Buffer, toUrl: string, options: S3StoreOptions & { configPath?: string }): Promise<string> {
  const location = parseS3Url(toUrl, { pathIsObjectKey: true });
  if (!location.credentials) {
    const fromConfig = await s3CredentialsFromConfig({ ...(options.configPath !== undefined ? { configPath: options.configPath } : {}) });
    if (fromConfig) location.credentials = fromConfig;
  }
  const key = objectKeyFor(location.prefix, path, location.displayUrl);
  const shown = new URL(location.displayUrl);
  shown.pathname = '/' + [location.bucket, ...key.split('/')].map(encodeURIComponent).join('/');
  if (location.credentials && shown.username === '') shown.username = encodeURIComponent(location.credentials.accessKeyId);
  const displayUrl = shown.toString();
  const target = { ...location, displayUrl, fullUrl: displayUrl };
  const client = createS3Client(target, options);
  try {
    await client.send(new PutObjectCommand({
      Bucket: location.bucket, Key: key, Body: bytes, ContentLength: bytes.byteLength, ContentType: 'application/vnd.sqlite3',
    }));
    const head = await client.send(new HeadObjectCommand({ Bucket: location.bucket, Key: key }));
    if (head.ContentLength !== undefined && head.ContentLength !== bytes.byteLength) {
      throw new VmimgError('STORE_ERROR', `Published manifest at ${displayUrl} has ${head.ContentLength} bytes, expected ${bytes.byteLength}`, {
        url: displayUrl, expected: bytes.byteLength, actual: head.ContentLength,
      });
    }
  } catch (e) {
    throw mapS3Error(e, target, { op: 'publish', key });
  } finally {
    client.destroy();
  }
  return displayUrl;
}

async function publishToDir(path: string, bytes: Buffer, toUrl: string): Promise<string> {
  const rest = toUrl.slice('dir://'.length);
  if (rest === '') throw new VmimgError('INVALID_STORE_URL', `Invalid publish URL '${toUrl}': no path after dir://`, { url: toUrl });
  let target = resolve(decodeURIComponent(rest));
  let isDir = rest.endsWith('/');
  if (!isDir) isDir = await stat(target).then((s) => s.isDirectory(), () => false);
  if (isDir) target = join(target, basename(path));
  try {
    await mkdir(dirname(target), { recursive: true });
  } catch (e) {
    throw fromSystemError(e, dirname(target), 'create');
  }
  await createAtomically(target, async (storage) => storage.write(0, bytes));
  return `dir://${target}`;
}

/**
 * Uploads the manifest at `path` to `toUrl` (s3://, s3s://, s3s+tls:// or dir://) and returns where it
 * went, its size and SHA-256. Fails with CORRUPT_MANIFEST when the file is not SQLite, with the S3
 * store codes (STORE_UNREACHABLE, STORE_AUTH_FAILED, STORE_BUCKET_MISSING, STORE_ERROR) on upload.
 */
export async function publishManifest(
  path: string,
  toUrl: string,
  options: StoreOptions & { configPath?: string } = {},
): Promise<PublishResult> {
  const bytes = await readManifest(path);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  let url: string;
  if (isS3Url(toUrl)) url = await publishToS3(path, bytes, toUrl, options);
  else if (/^dir:\/\//i.test(toUrl)) url = await publishToDir(path, bytes, toUrl);
  else {
    const shown = redactUrl(toUrl);
    throw new VmimgError('INVALID_STORE_URL', `Cannot publish to '${shown}': use s3://, s3s://, s3s+tls:// or dir://`, { url: shown });
  }
  return { url, bytes: bytes.byteLength, sha256 };
}
