/**
 * HTTP(S) GET on node:http/https with the guarantees the fetch cache relies on:
 * - redirects (301, 302, 303, 307, 308) are followed up to `maxRedirects` (default 5), only to
 *   http: or https: URLs;
 * - any final status other than 200 (or 206 when a Range was asked for) is an HTTP_ERROR naming
 *   the URL and the status;
 * - `timeoutMs` bounds connecting, waiting for headers, and every silence between body chunks
 *   (a stalled server is a FETCH_TIMEOUT, never a hang); it is not a bound on total time;
 * - network failures (DNS, refused, reset) are FETCH_FAILED.
 * The body is handed to the caller as an IncomingMessage whose idle timeout stays armed.
 */
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { VmimgError } from '../../util/errors.js';

export interface HttpOptions {
  /** Idle timeout in ms (default: VMIMG_FETCH_TIMEOUT_MS, else 30000). */
  timeoutMs?: number;
  maxRedirects?: number;
  /** First byte wanted: sends `Range: bytes=N-` and accepts 206 (or 200 = whole body). */
  rangeStart?: number;
}

export interface HttpResponse {
  res: IncomingMessage;
  /** The URL that answered, after redirects. */
  url: string;
  /** Content length of this response's body, when the server said. */
  length: number | undefined;
  /** True when the server honoured rangeStart (206 with a matching Content-Range). */
  partial: boolean;
}

export function defaultTimeoutMs(): number {
  const env = Number(process.env['VMIMG_FETCH_TIMEOUT_MS']);
  return Number.isFinite(env) && env > 0 ? env : 30000;
}

/** Redacts user:password from a URL for messages. */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.username || u.password) {
      u.username = '';
      u.password = '';
    }
    return u.toString();
  } catch {
    return url;
  }
}

function parseUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new VmimgError('INVALID_OPTION', `Not a valid URL: '${url}'`, { url });
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new VmimgError('INVALID_OPTION', `Unsupported URL scheme '${u.protocol}' in '${displayUrl(url)}' (http: or https: only)`, { url: displayUrl(url) });
  }
  return u;
}

function timeoutError(url: string, ms: number, phase: string): VmimgError {
  return new VmimgError('FETCH_TIMEOUT', `Timed out after ${ms} ms ${phase} '${displayUrl(url)}'`, { url: displayUrl(url), timeoutMs: ms });
}

function requestOnce(url: URL, timeoutMs: number, rangeStart: number | undefined): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const mod = url.protocol === 'https:' ? https : http;
    const headers: Record<string, string> = { 'user-agent': 'vmimg', 'accept-encoding': 'identity' };
    if (rangeStart !== undefined && rangeStart > 0) headers['range'] = `bytes=${rangeStart}-`;
    const req = mod.get(url, { headers });
    req.setTimeout(timeoutMs, () => req.destroy(timeoutError(url.toString(), timeoutMs, 'waiting for')));
    req.on('error', (e) => {
      if (e instanceof VmimgError) reject(e);
      else reject(new VmimgError('FETCH_FAILED', `Could not fetch '${displayUrl(url.toString())}': ${e.message}`, { url: displayUrl(url.toString()), errno: (e as NodeJS.ErrnoException).code }, { cause: e }));
    });
    req.on('response', (res) => {
      // The socket's idle timer stays armed while the body streams: a stall mid-body errors the
      // response. The listener goes when the response closes (keep-alive sockets are reused).
      const socket = res.socket;
      const onIdle = (): void => void res.destroy(timeoutError(url.toString(), timeoutMs, 'receiving'));
      socket.setTimeout(timeoutMs);
      socket.on('timeout', onIdle);
      res.once('close', () => socket.off('timeout', onIdle));
      resolve(res);
    });
  });
}

/** GETs `url`, following redirects; resolves once a 200/206 response's headers arrived. */
export async function httpGet(url: string, options: HttpOptions = {}): Promise<HttpResponse> {
  const timeoutMs = options.timeoutMs ?? defaultTimeoutMs();
  const maxRedirects = options.maxRedirects ?? 5;
  let current = parseUrl(url);
  for (let hop = 0; ; hop++) {
    const res = await requestOnce(current, timeoutMs, options.rangeStart);
    const status = res.statusCode ?? 0;
    if ([301, 302, 303, 307, 308].includes(status)) {
      res.resume();
      const location = res.headers.location;
      if (!location) throw new VmimgError('HTTP_ERROR', `HTTP ${status} without a Location header from '${displayUrl(current.toString())}'`, { url: displayUrl(current.toString()), status });
      if (hop >= maxRedirects) throw new VmimgError('HTTP_ERROR', `Too many redirects (more than ${maxRedirects}) fetching '${displayUrl(url)}'`, { url: displayUrl(url), maxRedirects });
      current = parseUrl(new URL(location, current).toString());
      continue;
    }
    if (status !== 200 && status !== 206) {
      res.resume();
      throw new VmimgError('HTTP_ERROR', `HTTP ${status} ${res.statusMessage ?? ''}`.trimEnd() + ` fetching '${displayUrl(current.toString())}'`, { url: displayUrl(current.toString()), status });
    }
    const lengthHeader = res.headers['content-length'];
    const length = lengthHeader !== undefined && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
    let partial = false;
    if (status === 206) {
      const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(res.headers['content-range'] ?? '');
      if (!m || Number(m[1]) !== (options.rangeStart ?? 0)) {
        res.destroy();
        throw new VmimgError('HTTP_ERROR', `HTTP 206 with an unexpected Content-Range '${res.headers['content-range'] ?? ''}' from '${displayUrl(current.toString())}'`, { url: displayUrl(current.toString()), status });
      }
      partial = true;
    }
    return { res, url: current.toString(), length, partial };
  }
}

/** GETs a small document (at most `maxBytes`) into memory. */
export async function httpGetBytes(url: string, maxBytes: number, options: HttpOptions = {}): Promise<Buffer> {
  const { res } = await httpGet(url, { ...options, rangeStart: undefined });
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > maxBytes) {
      res.destroy();
      throw new VmimgError('FETCH_FAILED', `'${displayUrl(url)}' is larger than ${maxBytes} bytes`, { url: displayUrl(url), maxBytes });
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
