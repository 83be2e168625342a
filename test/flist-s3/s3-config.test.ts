/**
 * rfs.conf-style S3 configuration: file syntax (comments, quotes, export, inline comments), the
 * environment overriding the file per key, the default path, and a configured URL that really
 * opens the store on s3rver.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openS3Store } from '../../src/flist/store/s3.js';
import { mergeS3Config, parseS3ConfigText, s3UrlFromConfig, s3UrlFromS3Config } from '../../src/flist/store/s3-config.js';
import { parseS3Url } from '../../src/flist/store/s3-url.js';
import { isVmimgError } from '../../src/util/errors.js';
import { tempDir } from '../helpers/oracle.js';
import { assertNoSecret, S3TestServer, TEST_ACCESS_KEY, TEST_SECRET_KEY } from './s3-server.js';

test('rfs.conf syntax: comments, blank lines, export, quotes, escapes, inline comments, unknown keys', () => {
  const text = [
    '# rfs store settings',
    '',
    'S3_ENDPOINT=http://127.0.0.1:9000   # local minio',
    'export S3_REGION = "eu-central-1"',
    "S3_BUCKET='flist-blobs'",
    'S3_PREFIX="a/b # not a comment"',
    'S3_ACCESS_KEY=AK',
    'S3_SECRET_KEY="s#e\\"c\\\\r/e+t"',
    'OTHER_SETTING=whatever',
    '; ini-style comment',
  ].join('\r\n');
  assert.deepEqual(parseS3ConfigText(text), {
    S3_ENDPOINT: 'http://127.0.0.1:9000',
    S3_REGION: 'eu-central-1',
    S3_BUCKET: 'flist-blobs',
    S3_PREFIX: 'a/b # not a comment',
    S3_ACCESS_KEY: 'AK',
    S3_SECRET_KEY: 's#e"c\\r/e+t',
  });
  for (const [bad, re] of [
    ['S3_BUCKET', /:1: expected KEY=VALUE/],
    ['S3_SECRET_KEY="xyzzySECRET', /:1: unterminated double quote in the value of S3_SECRET_KEY/],
    ["X='a' b", /unexpected text after the quoted value of X/],
    ['1BAD=x', /bad key name/],
  ] as const) {
    assert.throws(() => parseS3ConfigText(`# c\n${bad}`.replace('# c\n', ''), 'my.conf'), (e: unknown) => {
      assert.ok(isVmimgError(e) && e.code === 'INVALID_OPTION' && re.test(e.message), String(e));
      assert.ok(e.message.startsWith('my.conf:'), e.message);
      assertNoSecret(e, 'xyzzySECRET');
      return true;
    });
  }
});

test('URL from a config: endpoint schemes, encoded credentials, prefix, default region; missing keys are named', () => {
  const url = s3UrlFromS3Config({
    S3_ENDPOINT: 'https://s3.example.org:8443/', S3_BUCKET: 'b1x', S3_PREFIX: '/p/q/', S3_ACCESS_KEY: 'A K', S3_SECRET_KEY: TEST_SECRET_KEY,
  }, 'test');
  const l = parseS3Url(url);
  assert.equal(l.scheme, 's3s');
  assert.equal(l.endpoint, 'https://s3.example.org:8443');
  assert.equal(l.bucket, 'b1x');
  assert.equal(l.prefix, 'p/q');
  assert.equal(l.region, 'us-east-1');
  assert.deepEqual(l.credentials, { accessKeyId: 'A K', secretAccessKey: TEST_SECRET_KEY });
  assert.equal(parseS3Url(s3UrlFromS3Config({ S3_ENDPOINT: 'minio:9000', S3_BUCKET: 'bbb' }, 't')).endpoint, 'http://minio:9000');
  assert.equal(parseS3Url(s3UrlFromS3Config({ S3_ENDPOINT: 'minio:9000', S3_BUCKET: 'bbb' }, 't')).credentials, undefined);
  for (const [cfg, re] of [
    [{ S3_BUCKET: 'bbb', S3_SECRET_KEY: TEST_SECRET_KEY }, /lacks S3_ENDPOINT/],
    [{ S3_ENDPOINT: 'h:1', S3_SECRET_KEY: TEST_SECRET_KEY }, /lacks S3_BUCKET/],
    [{ S3_ENDPOINT: 'h:1/path', S3_BUCKET: 'bbb', S3_SECRET_KEY: TEST_SECRET_KEY }, /S3_ENDPOINT .* must be/],
    [{ S3_ENDPOINT: 'h:1', S3_BUCKET: 'bbb', S3_SECRET_KEY: TEST_SECRET_KEY }, /S3_SECRET_KEY but no S3_ACCESS_KEY/],
  ] as const) {
    assert.throws(() => s3UrlFromS3Config(cfg, 'cfg'), (e: unknown) => {
      assert.ok(isVmimgError(e) && re.test(e.message), String(e));
      assertNoSecret(e);
      return true;
    });
  }
});

test('environment overrides the file per key; empty variables do not', () => {
  const merged = mergeS3Config(
    { S3_ENDPOINT: 'file:1', S3_BUCKET: 'filebucket', S3_REGION: 'file-region' },
    { S3_BUCKET: 'envbucket', S3_REGION: '', S3_ACCESS_KEY: 'AK', PATH: '/bin' },
  );
  assert.deepEqual(merged, { S3_ENDPOINT: 'file:1', S3_BUCKET: 'envbucket', S3_REGION: 'file-region', S3_ACCESS_KEY: 'AK' });
});

test('s3UrlFromConfig: default path under the working directory, explicit path, env only, nothing configured', async (t) => {
  const dir = tempDir(t);
  const cwd = process.cwd();
  t.after(() => process.chdir(cwd));
  process.chdir(dir);
  assert.equal(await s3UrlFromConfig({ env: {} }), undefined);
  await assert.rejects(s3UrlFromConfig({ configPath: 'nope.conf', env: {} }), (e: unknown) => isVmimgError(e) && e.code === 'FILE_NOT_FOUND');
  mkdirSync(join(dir, 'config'));
  writeFileSync(join(dir, 'config', 'rfs.conf'), 'S3_ENDPOINT=127.0.0.1:1\nS3_BUCKET=defbucket\nS3_ACCESS_KEY=AK\nS3_SECRET_KEY=sk\n');
  assert.equal(await s3UrlFromConfig({ env: {} }), 's3://AK:sk@127.0.0.1:1/defbucket?region=us-east-1');
  writeFileSync(join(dir, 'other.conf'), 'S3_ENDPOINT=https://h\nS3_BUCKET=otherbucket\n');
  assert.equal(await s3UrlFromConfig({ configPath: 'other.conf', env: { S3_PREFIX: 'pre/fix', S3_REGION: 'r1' } }), 's3s://h/otherbucket/pre/fix?region=r1');
  assert.equal(await s3UrlFromConfig({ configPath: join(dir, 'missing-dir-is-ok-only-by-default'), env: {} }).catch((e: unknown) => (isVmimgError(e) ? e.code : 'other')), 'FILE_NOT_FOUND');
  assert.equal(await s3UrlFromConfig({ configPath: join(dir, 'other.conf'), env: { S3_BUCKET: 'envbucket' } }), 's3s://h/envbucket?region=us-east-1');
});

test('a configured URL opens a working store on s3rver; the store never shows the secret', async (t) => {
  const server = await S3TestServer.start();
  t.after(() => server.dispose());
  await server.createBucket('confbucket');
  const dir = tempDir(t);
  const conf = join(dir, 'rfs.conf');
  writeFileSync(conf, `S3_ENDPOINT=http://127.0.0.1:${server.port}\nS3_BUCKET=confbucket\nS3_PREFIX=blobs\nS3_ACCESS_KEY=${TEST_ACCESS_KEY}\n`);
  const url = await s3UrlFromConfig({ configPath: conf, env: { S3_SECRET_KEY: TEST_SECRET_KEY } });
  assert.ok(url);
  const store = await openS3Store(url, {});
  t.after(() => store.close());
  const id = new Uint8Array(32).fill(0xab);
  await store.put(id, Buffer.from('configured'));
  assert.equal((await store.get(id)).toString(), 'configured');
  assert.ok(server.puts.includes(`confbucket/blobs/${'ab'.repeat(32)}`));
  assertNoSecret(store.url);
  assertNoSecret(store.displayUrl);
});
