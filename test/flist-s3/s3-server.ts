/**
 * s3rver (npm) on 127.0.0.1, a free port and a temporary directory, for the S3 store tests.
 *
 * Finding (docs/flist-s3.md): s3rver 3.7.1 runs on Node 20 and rejects an unknown access key id
 * (InvalidAccessKeyId, 403) but does NOT verify SigV4 signatures ("Signature version 4 calculation
 * is unimplemented" in its authentication middleware), so a wrong secret would be accepted. This
 * harness therefore puts its own SigV4 check (AWS SigV4 header auth: canonical request, string to
 * sign, HMAC key chain) in front of s3rver's request handler; a mismatch answers 403
 * SignatureDoesNotMatch like S3 does.
 *
 * It also counts requests (object PUTs by key) and can drop the server in the middle of a run
 * (`stopOn`) to simulate a store going away mid-pack; `restart()` listens again on the same port
 * and directory.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent, createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, GetObjectCommand, S3Client } from '@aws-sdk/client-s3';

const require = createRequire(import.meta.url);

interface S3rverApp {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  logger?: { close(): void };
}
type S3rverCtor = new (options: Record<string, unknown>) => S3rverApp;
interface AccountModule {
  DUMMY_ACCOUNT: { createKeyPair(id: string, secret: string): void };
}

export const TEST_ACCESS_KEY = 'VMIMGTESTKEY';
/** Distinctive, with URL-special characters, so tests can grep for it (and its encoded form). */
export const TEST_SECRET_KEY = 'vmimg+Secret/Zq7wX9=ShouldNeverLeak';

export interface RequestInfo {
  method: string;
  path: string;
}

export class S3TestServer {
  readonly directory: string;
  port = 0;
  /** Every request that reached s3rver (after the signature check). */
  readonly requests: RequestInfo[] = [];
  /** Object keys PUT (bucket/key), in order, including repeats. */
  readonly puts: string[] = [];
  /** Object keys whose PUT got a 200 response, in completion order. */
  readonly putsDone: string[] = [];
  /**
   * Called before a request is served; returning true drops that request's connection and stops the
   * server gracefully: requests already being served finish (s3rver writes objects in place, so
   * cutting one would leave a partial object that real S3 never shows), later ones are dropped.
   */
  stopOn: ((info: RequestInfo) => boolean) | undefined;
  private server: Server | undefined;
  private stopping = false;
  private closing: Promise<void> | undefined;
  private readonly app: S3rverApp;
  private readonly ownsDirectory: boolean;

  /** PEM key and certificate: serve https (s3s:// URLs) instead of http. */
  private tls: { key: string; cert: string } | undefined;

  private constructor(directory: string | undefined) {
    this.ownsDirectory = directory === undefined;
    this.directory = directory ?? mkdtempSync(join(tmpdir(), 'vmimg-s3rver-'));
    const S3rver = require('s3rver') as S3rverCtor;
    (require('s3rver/lib/models/account') as AccountModule).DUMMY_ACCOUNT.createKeyPair(TEST_ACCESS_KEY, TEST_SECRET_KEY);
    this.app = new S3rver({ directory: this.directory, silent: true, vhostBuckets: false });
  }

  static async start(options: { directory?: string; tls?: { key: string; cert: string } } = {}): Promise<S3TestServer> {
    const s = new S3TestServer(options.directory);
    s.tls = options.tls;
    await s.listen(0);
    return s;
  }

  get endpoint(): string {
    return `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.server !== undefined;
  }

  /** s3://KEY:SECRET@127.0.0.1:PORT/BUCKET[/prefix] with the secret percent-encoded. */
  url(bucket: string, options: { prefix?: string; accessKey?: string; secretKey?: string; query?: string } = {}): string {
    const ak = encodeURIComponent(options.accessKey ?? TEST_ACCESS_KEY);
    const sk = encodeURIComponent(options.secretKey ?? TEST_SECRET_KEY);
    const prefix = options.prefix ? `/${options.prefix}` : '';
    return `${this.tls ? 's3s' : 's3'}://${ak}:${sk}@127.0.0.1:${this.port}/${bucket}${prefix}?region=us-east-1${options.query ?? ''}`;
  }

  /** An SDK client for setting up and checking (trusts the test certificate when serving https). */
  client(): S3Client {
    return new S3Client({
      endpoint: this.endpoint, region: 'us-east-1', forcePathStyle: true, maxAttempts: 1,
      credentials: { accessKeyId: TEST_ACCESS_KEY, secretAccessKey: TEST_SECRET_KEY },
      ...(this.tls ? { requestHandler: { httpsAgent: new HttpsAgent({ ca: this.tls.cert }) } } : {}),
    });
  }

  /** The stored bytes of `key` in `bucket`, read with a fresh SDK client. */
  async getObject(bucket: string, key: string): Promise<Buffer> {
    const c = this.client();
    try {
      const out = await c.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return Buffer.from(await out.Body!.transformToByteArray());
    } finally {
      c.destroy();
    }
  }

  async createBucket(name: string): Promise<void> {
    const c = this.client();
    try {
      await c.send(new CreateBucketCommand({ Bucket: name }));
    } finally {
      c.destroy();
    }
  }

  private async listen(port: number): Promise<void> {
    const handler = this.app.callback();
    const serve = (req: IncomingMessage, res: ServerResponse): void => {
      const info = { method: req.method ?? '', path: (req.url ?? '').split('?')[0]! };
      if (this.stopping) {
        req.socket.destroy();
        return;
      }
      if (this.stopOn?.(info)) {
        req.socket.destroy();
        void this.stop({ graceful: true });
        return;
      }
      const denied = checkSignature(req);
      if (denied) {
        res.writeHead(403, { 'content-type': 'application/xml' });
        res.end(req.method === 'HEAD' ? undefined : `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${denied}</Code><Message>${denied}</Message></Error>`);
        return;
      }
      this.requests.push(info);
      if (info.method === 'PUT' && info.path.split('/').filter(Boolean).length >= 2) {
        const key = decodeURIComponent(info.path.slice(1));
        this.puts.push(key);
        res.once('finish', () => {
          if (res.statusCode === 200) this.putsDone.push(key);
        });
      }
      handler(req, res);
    };
    const server: Server = this.tls ? createHttpsServer(this.tls, serve) : createServer(serve);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  /**
   * Stops listening. Default: drops every open connection at once. `graceful`: requests being served
   * finish, idle keep-alive connections are closed, new requests are dropped. Idempotent.
   */
  stop(options: { graceful?: boolean } = {}): Promise<void> {
    if (this.closing) return this.closing;
    const s = this.server;
    if (!s) return Promise.resolve();
    this.closing = this.shutDown(s, options.graceful === true).finally(() => {
      this.closing = undefined;
    });
    return this.closing;
  }

  private async shutDown(s: Server, graceful: boolean): Promise<void> {
    this.server = undefined;
    this.stopping = true;
    const closed = new Promise<void>((resolve) => s.close(() => resolve()));
    let sweep: NodeJS.Timeout | undefined;
    if (graceful) {
      s.closeIdleConnections();
      sweep = setInterval(() => s.closeIdleConnections(), 10);
    } else {
      s.closeAllConnections();
    }
    await closed;
    if (sweep) clearInterval(sweep);
    this.stopping = false;
  }

  /** Listens again on the same port, same directory (the blobs persist on disk). */
  async restart(): Promise<void> {
    await this.closing;
    if (this.server) return;
    await this.listen(this.port);
  }

  async dispose(): Promise<void> {
    await this.stop();
    this.app.logger?.close();
    if (this.ownsDirectory) rmSync(this.directory, { recursive: true, force: true });
  }
}

const hmac = (key: Buffer | string, data: string): Buffer => createHmac('sha256', key).update(data, 'utf8').digest();

/**
 * AWS SigV4 header authentication check (AWS "Signature Version 4 signing process": canonical
 * request → string to sign → HMAC chain keyed by "AWS4"+secret over date/region/service). Returns
 * the S3 error code to answer with, or undefined when the request is correctly signed by the test
 * key (or unsigned: s3rver lets anonymous requests through, as the tests expect).
 */
function checkSignature(req: IncomingMessage): string | undefined {
  const auth = req.headers['authorization'];
  if (auth === undefined) return undefined;
  const m = /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request,\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) return 'AuthorizationHeaderMalformed';
  const [, accessKey, date, region, service, signedHeaders, signature] = m as unknown as string[];
  if (accessKey !== TEST_ACCESS_KEY) return 'InvalidAccessKeyId';
  const amzDate = String(req.headers['x-amz-date'] ?? '');
  const payloadHash = String(req.headers['x-amz-content-sha256'] ?? '');
  const [rawPath, rawQuery = ''] = (req.url ?? '/').split('?') as [string, string?];
  const query = rawQuery === '' ? '' : rawQuery.split('&').map((p) => (p.includes('=') ? p : `${p}=`)).sort().join('&');
  const headerLines = signedHeaders!.split(';').map((h) => {
    const v = req.headers[h];
    const value = Array.isArray(v) ? v.join(',') : String(v ?? '');
    return `${h}:${value.trim().replace(/\s+/g, ' ')}\n`;
  });
  const canonical = [req.method, rawPath, query, headerLines.join(''), signedHeaders, payloadHash].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${TEST_SECRET_KEY}`, date!), region!), service!), 'aws4_request');
  const expected = createHmac('sha256', key).update(toSign).digest();
  const given = Buffer.from(signature!, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected) ? undefined : 'SignatureDoesNotMatch';
}

/** Fails when the test secret (raw or percent-encoded) appears anywhere in `value`'s text forms. */
export function assertNoSecret(value: unknown, secret = TEST_SECRET_KEY): void {
  const forms = [secret, encodeURIComponent(secret)];
  const texts: string[] = [];
  if (value instanceof Error) {
    texts.push(value.message, String(value.stack ?? ''));
    const j = (value as { toJSON?: () => unknown }).toJSON?.();
    if (j !== undefined) texts.push(JSON.stringify(j));
    texts.push(JSON.stringify((value as { details?: unknown }).details ?? {}));
    texts.push(JSON.stringify((value as { context?: unknown }).context ?? []));
  } else {
    texts.push(typeof value === 'string' ? value : JSON.stringify(value));
  }
  for (const t of texts) {
    for (const f of forms) {
      if (t.includes(f)) throw new Error(`secret leaked in: ${t.split(f).join('<SECRET>').slice(0, 400)}`);
    }
  }
}
