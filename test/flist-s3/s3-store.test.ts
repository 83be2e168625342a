/**
 * The S3 blob store through the real AWS SDK against s3rver on loopback (with a SigV4 check in
 * front, see s3-server.ts): round trip, idempotent put, prefixes, missing blobs, wrong
 * credentials, missing bucket, a server that goes away and comes back, the size cap, URL forms, and
 * the secret never leaking into any error.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { after, before, test, type TestContext } from 'node:test';
import { blake2b } from 'hash-wasm';
import { mapS3Error, openS3Store } from '../../src/flist/store/s3.js';
import { parseS3Url, redactUrl } from '../../src/flist/store/s3-url.js';
import type { BlobStore } from '../../src/flist/store/types.js';
import { isVmimgError, type VmimgError } from '../../src/util/errors.js';
import { assertNoSecret, S3TestServer, TEST_ACCESS_KEY, TEST_SECRET_KEY } from './s3-server.js';

let server: S3TestServer;
const seenErrors: unknown[] = [];

before(async () => {
  server = await S3TestServer.start();
  await server.createBucket('blobs');
});
after(async () => {
  await server.dispose();
  // Every error any test saw, checked once more as a whole.
  for (const e of seenErrors) assertNoSecret(e);
});

/** A blob as the packer makes them: random "encrypted" bytes under their BLAKE2b-256 id. */
async function blob(size: number): Promise<{ id: Uint8Array; data: Buffer; hex: string }> {
  const data = randomBytes(size);
  const hex = await blake2b(data, 256);
  return { id: Buffer.from(hex, 'hex'), data, hex };
}

async function failure(p: Promise<unknown>): Promise<VmimgError> {
  try {
    await p;
  } catch (e) {
    seenErrors.push(e);
    assert.ok(isVmimgError(e), `expected a VmimgError, got ${String(e)}`);
    assertNoSecret(e);
    return e;
  }
  assert.fail('expected a failure');
}

async function withStore<T>(url: string, fn: (s: BlobStore) => Promise<T>, options = {}): Promise<T> {
  const s = await openS3Store(url, { timeoutMs: 5000, ...options });
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

test('put/has/get round trip; one object per blob keyed by lowercase hex; put is idempotent', async () => {
  const a = await blob(600 * 1024);
  const b = await blob(1);
  await withStore(server.url('blobs'), async (s) => {
    assert.equal(await s.has(a.id), false);
    await s.put(a.id, a.data);
    assert.equal(await s.has(a.id), true);
    assert.deepEqual(await s.get(a.id), a.data);
    const putsBefore = server.puts.length;
    await s.put(a.id, a.data); // again: no error, same content
    assert.equal(server.puts.length, putsBefore + 1);
    assert.deepEqual(await s.get(a.id), a.data);
    await s.put(b.id, b.data);
    assert.deepEqual(await s.get(b.id), b.data);
    assert.equal(await s.has(b.id), true);
  });
  assert.deepEqual(await server.getObject('blobs', a.hex), a.data);
  assert.match(a.hex, /^[0-9a-f]{64}$/);
  assert.ok(server.puts.includes(`blobs/${a.hex}`));
});

test('key prefix from path segments or ?prefix= (same objects)', async () => {
  const a = await blob(1000);
  await withStore(server.url('blobs', { prefix: 'team/store' }), (s) => s.put(a.id, a.data));
  assert.deepEqual(await server.getObject('blobs', `team/store/${a.hex}`), a.data);
  await withStore(`${server.url('blobs')}&prefix=team/store/`, async (s) => {
    assert.equal(await s.has(a.id), true);
    assert.deepEqual(await s.get(a.id), a.data);
  });
  await withStore(server.url('blobs', { prefix: 'other' }), async (s) => assert.equal(await s.has(a.id), false));
});

test('a missing blob is BLOB_NOT_FOUND naming the hex id', async () => {
  const a = await blob(10);
  const e = await withStore(server.url('blobs'), (s) => failure(s.get(a.id)));
  assert.equal(e.code, 'BLOB_NOT_FOUND');
  assert.ok(e.message.includes(a.hex), e.message);
});

test('url and displayUrl never hold the secret unless keepPassword', async () => {
  const url = server.url('blobs');
  await withStore(url, async (s) => {
    assert.equal(s.url, s.displayUrl);
    assert.ok(s.displayUrl.includes(TEST_ACCESS_KEY));
    assertNoSecret(s.url);
    assertNoSecret(s.displayUrl);
    assert.equal(s.readOnly, false);
  });
  await withStore(url, async (s) => {
    assertNoSecret(s.displayUrl);
    assert.equal(parseS3Url(s.url).credentials?.secretAccessKey, TEST_SECRET_KEY);
  }, { keepPassword: true });
});

test('wrong secret (SigV4 mismatch) and unknown access key are STORE_AUTH_FAILED on has/get/put', async () => {
  const a = await blob(100);
  await withStore(server.url('blobs'), (s) => s.put(a.id, a.data));
  const badUrls = [
    server.url('blobs', { secretKey: `${TEST_SECRET_KEY}x` }),
    server.url('blobs', { accessKey: 'NOSUCHKEY', secretKey: TEST_SECRET_KEY }),
  ];
  for (const url of badUrls) {
    await withStore(url, async (s) => {
      for (const op of [() => s.has(a.id), () => s.get(a.id), () => s.put(a.id, a.data)]) {
        const e = await failure(op());
        assert.equal(e.code, 'STORE_AUTH_FAILED', e.message);
        assert.ok(e.message.includes('127.0.0.1'), e.message);
      }
    });
  }
});

test('a missing bucket is STORE_BUCKET_MISSING on has/get/put', async () => {
  const a = await blob(100);
  await withStore(server.url('nosuchbucket'), async (s) => {
    for (const op of [() => s.has(a.id), () => s.get(a.id), () => s.put(a.id, a.data)]) {
      const e = await failure(op());
      assert.equal(e.code, 'STORE_BUCKET_MISSING', e.message);
      assert.ok(e.message.includes("'nosuchbucket'"), e.message);
    }
  });
});

test('server stopped mid-way: STORE_UNREACHABLE; after a restart on the same directory the blobs are still there', async () => {
  const own = await S3TestServer.start();
  try {
    await own.createBucket('blobs');
    const a = await blob(4096);
    const b = await blob(4096);
    const s = await openS3Store(own.url('blobs'), { timeoutMs: 2000, maxAttempts: 2 });
    try {
      await s.put(a.id, a.data);
      await own.stop();
      for (const op of [() => s.put(b.id, b.data), () => s.get(a.id), () => s.has(a.id)]) {
        const e = await failure(op());
        assert.equal(e.code, 'STORE_UNREACHABLE', e.message);
        assert.ok(e.message.includes(`127.0.0.1:${own.port}`), e.message);
      }
      await own.restart();
      assert.equal(await s.has(a.id), true); // a re-run would skip it
      assert.equal(await s.has(b.id), false);
      assert.deepEqual(await s.get(a.id), a.data);
    } finally {
      await s.close();
    }
  } finally {
    await own.dispose();
  }
});

test('the connection dropped in the middle of a request is STORE_UNREACHABLE', async () => {
  const own = await S3TestServer.start();
  try {
    await own.createBucket('blobs');
    const a = await blob(2048);
    own.stopOn = (r) => r.method === 'PUT';
    const e = await withStoreAt(own.url('blobs'), (s) => failure(s.put(a.id, a.data)));
    assert.equal(e.code, 'STORE_UNREACHABLE', e.message);
  } finally {
    await own.dispose();
  }
});

async function withStoreAt<T>(url: string, fn: (s: BlobStore) => Promise<T>): Promise<T> {
  return withStore(url, fn, { timeoutMs: 2000, maxAttempts: 1 });
}

test('get refuses a blob larger than the cap', async () => {
  const a = await blob(5000);
  await withStore(server.url('blobs'), (s) => s.put(a.id, a.data));
  const e = await withStore(server.url('blobs'), (s) => failure(s.get(a.id)), { maxBlobBytes: 4096 });
  assert.equal(e.code, 'BLOB_CORRUPT');
});

test('URL forms: schemes, host/port, bucket, prefix, region, anonymous; bad URLs are INVALID_STORE_URL without the secret', () => {
  const l = parseS3Url('s3://AK:S%2Fx@minio.example:9000/bucket?region=eu-west-1');
  assert.equal(l.endpoint, 'http://minio.example:9000');
  assert.equal(l.bucket, 'bucket');
  assert.equal(l.prefix, '');
  assert.equal(l.region, 'eu-west-1');
  assert.deepEqual(l.credentials, { accessKeyId: 'AK', secretAccessKey: 'S/x' });
  assert.equal(l.displayUrl, 's3://AK@minio.example:9000/bucket?region=eu-west-1');
  assert.equal(parseS3Url('s3s://AK:S@h/b').endpoint, 'https://h');
  assert.equal(parseS3Url('s3s+tls://AK:S@h:443/b').endpoint, 'https://h');
  assert.equal(parseS3Url('s3://h/b/x/y/').prefix, 'x/y');
  assert.equal(parseS3Url('s3://h/b?prefix=/x/y').prefix, 'x/y');
  assert.equal(parseS3Url('s3://h/b').region, 'us-east-1');
  assert.equal(parseS3Url('s3://h/b').credentials, undefined);
  const secret = 'TopSecretValue';
  for (const bad of [
    `s3://AK:${secret}@h`,
    `s3://AK:${secret}@h/b?regoin=x`,
    `s3://AK:${secret}@h/b/x?prefix=y`,
    `s3://AK:${secret}@h/b/../x`,
    `s3://AK:${secret}/with/slash@h:99999/b`,
    `s3://AK:${secret}@h/b#frag`,
    `http://AK:${secret}@h/b`,
  ]) {
    assert.throws(() => parseS3Url(bad), (e: unknown) => {
      assert.ok(isVmimgError(e) && e.code === 'INVALID_STORE_URL', String(e));
      assertNoSecret(e, secret);
      return true;
    });
  }
  assert.equal(redactUrl('s3://a:b/c@h/b'), 's3://***@h/b');
});

test('anonymous requests (no userinfo) reach the server unsigned', async () => {
  const a = await blob(64);
  await withStore(server.url('blobs'), (s) => s.put(a.id, a.data));
  await withStore(`s3://127.0.0.1:${server.port}/blobs`, async (s) => {
    assert.equal(s.displayUrl, `s3://127.0.0.1:${server.port}/blobs`);
    assert.deepEqual(await s.get(a.id), a.data);
  });
});

/** A TCP server on loopback that accepts connections and never answers: its port and open sockets. */
async function silentServer(t: TestContext): Promise<{ port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const silent = createNetServer((s) => void sockets.add(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  t.after(() => {
    for (const s of sockets) s.destroy();
    silent.close();
  });
  return { port: (silent.address() as AddressInfo).port, sockets };
}

test('a server that accepts but never answers: STORE_UNREACHABLE through the request timeout', async (t) => {
  const { port } = await silentServer(t);
  const a = await blob(16);
  const e = await withStore(`s3://AK:${encodeURIComponent(TEST_SECRET_KEY)}@127.0.0.1:${port}/blobs`, (s) => failure(s.has(a.id)), {
    timeoutMs: 300, maxAttempts: 1,
  });
  assert.equal(e.code, 'STORE_UNREACHABLE', e.message);
});

test('many parallel puts and has (as the packer issues them) all land', async () => {
  const blobs = await Promise.all(Array.from({ length: 48 }, (_, i) => blob(1000 + i)));
  await withStore(server.url('blobs', { prefix: 'parallel' }), async (s) => {
    const bucketHeads = (): number => server.requests.filter((r) => r.method === 'HEAD' && /^\/blobs\/?$/.test(r.path)).length;
    const before = bucketHeads();
    assert.deepEqual(await Promise.all(blobs.map((b) => s.has(b.id))), blobs.map(() => false));
    assert.equal(bucketHeads() - before, 1); // one shared bucket check, not one per missing blob
    await Promise.all(blobs.map((b) => s.put(b.id, b.data)));
    assert.deepEqual(await Promise.all(blobs.map((b) => s.has(b.id))), blobs.map(() => true));
    const back = await Promise.all(blobs.map((b) => s.get(b.id)));
    back.forEach((d, i) => assert.deepEqual(d, blobs[i]!.data));
  });
});

test('server text quoted in an error is scrubbed of the secret (raw and percent-encoded)', () => {
  const location = parseS3Url(server.url('blobs'));
  const fake = Object.assign(new Error(`echo ${TEST_SECRET_KEY} and ${encodeURIComponent(TEST_SECRET_KEY)}`), {
    name: 'WeirdError', $metadata: { httpStatusCode: 500 },
  });
  const e = mapS3Error(fake, location, { op: 'put', key: 'k' });
  assert.equal(e.code, 'STORE_ERROR');
  assert.match(e.message, /echo \*\*\* and \*\*\*/);
  assertNoSecret(e);
  assert.equal(mapS3Error(Object.assign(new Error('x'), { name: 'NoSuchBucket', $metadata: { httpStatusCode: 404 } }), location, { op: 'get' }).code, 'STORE_BUCKET_MISSING');
  assert.equal(mapS3Error(Object.assign(new AggregateError([Object.assign(new Error('c'), { code: 'ECONNREFUSED' })], 'agg')), location, { op: 'get' }).code, 'STORE_UNREACHABLE');
});

test('close() aborts requests in flight (no retry outlives the store)', async (t) => {
  const { port, sockets } = await silentServer(t);
  const a = await blob(16);
  const s = await openS3Store(`s3://AK:${encodeURIComponent(TEST_SECRET_KEY)}@127.0.0.1:${port}/blobs`, { timeoutMs: 60_000 });
  const pending = s.put(a.id, a.data);
  while (sockets.size === 0) await new Promise((r) => setTimeout(r, 5));
  await s.close();
  const e = await failure(pending);
  assert.equal(e.code, 'STORE_ERROR', e.message);
  assert.match(e.message, /closed during put/);
});
