/**
 * S3 store URLs (docs/flist-s3.md "URL forms"), as rfs writes them
 * (../shared/reference/rfs-flist.md "Stores and URLs"):
 *
 *   s3://ACCESS:SECRET@HOST[:PORT]/BUCKET[/PREFIX...][?region=R][&prefix=P]   plain http
 *   s3s://… and s3s+tls://…                                                    https
 *
 * The first path segment is the bucket; further segments, or `?prefix=`, form the key prefix
 * (not both). Userinfo is percent-decoded. No userinfo means anonymous (unsigned) requests.
 *
 * Secrets policy: `displayUrl` never holds the secret; `url` (written into manifests) holds it only
 * when keepPassword is asked for. No error built here ever quotes the secret or the whole input URL.
 */
import { VmimgError } from '../../util/errors.js';

export interface S3Location {
  /** 's3' | 's3s' | 's3s+tls' as written. */
  scheme: string;
  tls: boolean;
  /** http(s)://HOST[:PORT] the SDK talks to. */
  endpoint: string;
  bucket: string;
  /** Key prefix without leading/trailing '/', '' for none. */
  prefix: string;
  region: string;
  /** undefined: anonymous requests. */
  credentials: { accessKeyId: string; secretAccessKey: string } | undefined;
  /** The URL with the secret removed (access key id kept, as rfs's strip_password does). */
  displayUrl: string;
  /** The URL with the secret (for keepPassword); equal to displayUrl when there is none. */
  fullUrl: string;
}

export const S3_SCHEMES = ['s3', 's3s', 's3s+tls'] as const;
export const DEFAULT_S3_REGION = 'us-east-1';

const BUCKET = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;
const KNOWN_PARAMS = new Set(['region', 'prefix']);

/** True when `url` starts with one of the S3 schemes. */
export function isS3Url(url: string): boolean {
  const m = /^([a-z0-9+.-]+):\/\//i.exec(url);
  return m !== null && (S3_SCHEMES as readonly string[]).includes(m[1]!.toLowerCase());
}

/**
 * A URL safe to quote in a message when it may be malformed: everything between '://' and the last
 * '@' (userinfo, even with an unencoded '/' in the secret) becomes '***'.
 */
export function redactUrl(text: string): string {
  return text.replace(/^([a-z0-9+.-]*:\/\/)[^]*@/i, '$1***@');
}

function invalid(url: string, why: string): VmimgError {
  const shown = redactUrl(url);
  return new VmimgError('INVALID_STORE_URL', `Invalid S3 store URL '${shown}': ${why}`, { url: shown });
}

function decode(url: string, part: string, what: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw invalid(url, `${what} is not valid percent-encoding`);
  }
}

/** Normalises a key prefix: no leading/trailing '/', no empty, '.' or '..' segments, no control characters. */
export function normalisePrefix(url: string, prefix: string): string {
  const trimmed = prefix.replace(/^\/+|\/+$/g, '');
  if (trimmed === '') return '';
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(trimmed)) throw invalid(url, 'the key prefix contains control characters');
  for (const seg of trimmed.split('/')) {
    if (seg === '' || seg === '.' || seg === '..') throw invalid(url, `the key prefix has an empty, '.' or '..' segment`);
  }
  return trimmed;
}

/**
 * Parses an S3 store URL. `pathIsObjectKey` (publish) keeps everything after the bucket verbatim as
 * `prefix` (the object key) instead of treating it as a blob-key prefix; `?prefix=` is then refused.
 */
export function parseS3Url(url: string, options: { pathIsObjectKey?: boolean } = {}): S3Location {
  if (!isS3Url(url)) throw invalid(url, `the scheme must be one of ${S3_SCHEMES.map((s) => `${s}://`).join(', ')}`);
  const afterAuthority = url.slice(url.indexOf('://') + 3).replace(/^[^]*@/, '');
  if (/\/(?:\.|%2e){1,2}(?=[/?#]|$)/i.test(afterAuthority)) throw invalid(url, "'.' or '..' path segments are not allowed");
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw invalid(url, 'not a URL of the form s3://ACCESS:SECRET@HOST:PORT/BUCKET?region=REGION');
  }
  const scheme = u.protocol.slice(0, -1).toLowerCase();
  const tls = scheme !== 's3';
  if (u.hostname === '') throw invalid(url, 'no host');
  if (u.hash !== '') throw invalid(url, 'a fragment (#…) is not allowed');
  const segments = u.pathname.split('/').slice(1);
  const bucketRaw = segments.shift() ?? '';
  const bucket = decode(url, bucketRaw, 'the bucket');
  if (!BUCKET.test(bucket)) throw invalid(url, bucket === '' ? 'no bucket (the first path segment)' : `bad bucket name '${bucket}'`);
  const pathRest = decode(url, segments.join('/'), 'the path');

  for (const key of u.searchParams.keys()) {
    if (!KNOWN_PARAMS.has(key)) throw invalid(url, `unknown query parameter '${key}' (known: region, prefix)`);
  }
  const region = u.searchParams.get('region') ?? DEFAULT_S3_REGION;
  if (!/^[A-Za-z0-9-]{1,64}$/.test(region)) throw invalid(url, `bad region '${region}'`);
  const queryPrefix = u.searchParams.get('prefix');
  let prefix: string;
  if (options.pathIsObjectKey) {
    if (queryPrefix !== null) throw invalid(url, 'give the object key as the path after the bucket, not ?prefix=');
    prefix = pathRest;
  } else {
    if (queryPrefix !== null && pathRest.replace(/\/+$/, '') !== '') {
      throw invalid(url, 'give the key prefix either as path segments after the bucket or as ?prefix=, not both');
    }
    prefix = normalisePrefix(url, queryPrefix ?? pathRest);
  }

  let credentials: S3Location['credentials'];
  if (u.username !== '' || u.password !== '') {
    const accessKeyId = decode(url, u.username, 'the access key');
    const secretAccessKey = decode(url, u.password, 'the secret key');
    if (accessKeyId === '') throw invalid(url, 'a secret key without an access key');
    credentials = { accessKeyId, secretAccessKey };
  }

  const fullUrl = u.toString();
  u.password = '';
  const displayUrl = u.toString();
  const defaultPort = (tls && u.port === '443') || (!tls && u.port === '80');
  const endpoint = `${tls ? 'https' : 'http'}://${defaultPort ? u.hostname : u.host}`;
  return { scheme, tls, endpoint, bucket, prefix, region, credentials, displayUrl, fullUrl };
}

/** Object key of a blob: `PREFIX/HEX` or `HEX`. */
export function s3ObjectKey(location: Pick<S3Location, 'prefix'>, hex: string): string {
  return location.prefix === '' ? hex : `${location.prefix}/${hex}`;
}
