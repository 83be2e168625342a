/**
 * Publishing a manifest: the .fl bytes land unchanged in a second bucket under a prefix (read back
 * byte-equal through the SDK and with sqlite3 semantics intact), to dir:// atomically, with
 * credentials from the config; non-SQLite files and bad destinations are refused.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { publishManifest } from '../../src/flist/publish.js';
import { isVmimgError } from '../../src/util/errors.js';
import { tempDir } from '../helpers/oracle.js';
import { assertNoSecret, S3TestServer, TEST_ACCESS_KEY, TEST_SECRET_KEY } from './s3-server.js';

/** A small SQLite file shaped like an flist (tag table with a version). */
function manifest(dir: string, name = 'demo.fl'): string {
  const path = join(dir, name);
  const db = new Database(path);
  db.pragma('journal_mode = DELETE');
  db.exec('CREATE TABLE tag (key VARCHAR(10) PRIMARY KEY, value VARCHAR(255)); INSERT INTO tag VALUES (\'version\', \'1\');');
  db.close();
  return path;
}

test('publish to s3: object key is the URL path after the bucket; bytes, size and sha256 match; URL has no secret', async (t) => {
  const server = await S3TestServer.start();
  t.after(() => server.dispose());
  await server.createBucket('blobs');
  await server.createBucket('manifests');
  const dir = tempDir(t);
  const fl = manifest(dir);
  const original = readFileSync(fl);

  const r = await publishManifest(fl, server.url('manifests', { prefix: 'flists/v1/demo.fl' }));
  assert.equal(r.bytes, original.byteLength);
  assert.equal(r.sha256, createHash('sha256').update(original).digest('hex'));
  assert.equal(r.url, `s3://${TEST_ACCESS_KEY}@127.0.0.1:${server.port}/manifests/flists/v1/demo.fl?region=us-east-1`);
  assertNoSecret(r);
  const back = await server.getObject('manifests', 'flists/v1/demo.fl');
  assert.deepEqual(back, original);
  const copy = join(dir, 'back.fl');
  writeFileSync(copy, back);
  const db = new Database(copy, { readonly: true });
  assert.deepEqual(db.prepare('SELECT value FROM tag WHERE key = ?').get('version'), { value: '1' });
  db.close();

  // A path ending in '/' takes the file's name; the blob bucket is untouched.
  const r2 = await publishManifest(fl, server.url('manifests', { prefix: 'latest/' }));
  assert.ok(r2.url.includes('/manifests/latest/demo.fl?'), r2.url);
  assert.deepEqual(await server.getObject('manifests', 'latest/demo.fl'), original);
  assert.ok(!server.puts.some((p) => p.startsWith('blobs/')));
});

test('publish refuses a non-SQLite file and an empty file, uploading nothing', async (t) => {
  const server = await S3TestServer.start();
  t.after(() => server.dispose());
  await server.createBucket('manifests');
  const dir = tempDir(t);
  const notSqlite = join(dir, 'fake.fl');
  writeFileSync(notSqlite, 'SQLite format 2\0 but not really a database');
  const empty = join(dir, 'empty.fl');
  writeFileSync(empty, '');
  for (const p of [notSqlite, empty]) {
    await assert.rejects(publishManifest(p, server.url('manifests', { prefix: 'x.fl' })), (e: unknown) => {
      assert.ok(isVmimgError(e) && e.code === 'CORRUPT_MANIFEST', String(e));
      assert.ok(e.message.includes(p), e.message);
      return true;
    });
  }
  await assert.rejects(publishManifest(join(dir, 'absent.fl'), server.url('manifests')), (e: unknown) => isVmimgError(e) && e.code === 'FILE_NOT_FOUND');
  assert.equal(server.puts.length, 0);
});

test('publish errors: missing bucket, wrong secret, stopped server, bad destinations; never the secret', async (t) => {
  const server = await S3TestServer.start();
  t.after(() => server.dispose());
  await server.createBucket('manifests');
  const fl = manifest(tempDir(t));
  const expect = async (url: string, code: string): Promise<void> => {
    await assert.rejects(publishManifest(fl, url, { timeoutMs: 2000 }), (e: unknown) => {
      assert.ok(isVmimgError(e) && e.code === code, `${code} expected, got ${String(e)}`);
      assertNoSecret(e);
      return true;
    });
  };
  await expect(server.url('nomanifests', { prefix: 'a.fl' }), 'STORE_BUCKET_MISSING');
  await expect(server.url('manifests', { prefix: 'a.fl', secretKey: `${TEST_SECRET_KEY}!` }), 'STORE_AUTH_FAILED');
  await expect(`s3://AK:${encodeURIComponent(TEST_SECRET_KEY)}@127.0.0.1:${server.port}/manifests/a/../b.fl`, 'INVALID_STORE_URL');
  await expect(`s3://AK:${encodeURIComponent(TEST_SECRET_KEY)}@127.0.0.1:${server.port}/manifests/a.fl?prefix=x`, 'INVALID_STORE_URL');
  await expect(`ftp://AK:${encodeURIComponent(TEST_SECRET_KEY)}@h/a.fl`, 'INVALID_STORE_URL');
  await server.stop();
  await expect(server.url('manifests', { prefix: 'a.fl' }), 'STORE_UNREACHABLE');
});

test('publish to dir:// copies atomically (file or directory target) and leaves no temporary files', async (t) => {
  const dir = tempDir(t);
  const fl = manifest(dir);
  const dest = join(dir, 'pub', 'nested');
  const r = await publishManifest(fl, `dir://${dest}/`);
  assert.equal(r.url, `dir://${join(dest, 'demo.fl')}`);
  assert.deepEqual(readFileSync(join(dest, 'demo.fl')), readFileSync(fl));
  const r2 = await publishManifest(fl, `dir://${join(dest, 'renamed.fl')}`);
  assert.equal(r2.url, `dir://${join(dest, 'renamed.fl')}`);
  mkdirSync(join(dir, 'existing'));
  await publishManifest(fl, `dir://${join(dir, 'existing')}`);
  assert.ok(existsSync(join(dir, 'existing', 'demo.fl')));
  assert.deepEqual(readdirSync(dest).sort(), ['demo.fl', 'renamed.fl']);
  // Refused input leaves the previous copy alone.
  const bad = join(dir, 'bad.fl');
  writeFileSync(bad, 'nope');
  await assert.rejects(publishManifest(bad, `dir://${join(dest, 'demo.fl')}`), (e: unknown) => isVmimgError(e) && e.code === 'CORRUPT_MANIFEST');
  assert.deepEqual(readFileSync(join(dest, 'demo.fl')), readFileSync(fl));
});

test('publish takes credentials from the config file when the URL has none', async (t) => {
  const server = await S3TestServer.start();
  t.after(() => server.dispose());
  await server.createBucket('manifests');
  const dir = tempDir(t);
  const fl = manifest(dir);
  const conf = join(dir, 'rfs.conf');
  writeFileSync(conf, `S3_ACCESS_KEY=${TEST_ACCESS_KEY}\nS3_SECRET_KEY='${TEST_SECRET_KEY}'\n`);
  const r = await publishManifest(fl, `s3://127.0.0.1:${server.port}/manifests/conf/demo.fl`, { configPath: conf });
  assert.equal(r.url, `s3://${TEST_ACCESS_KEY}@127.0.0.1:${server.port}/manifests/conf/demo.fl`);
  assert.deepEqual(await server.getObject('manifests', 'conf/demo.fl'), readFileSync(fl));
  // The request was signed with the configured key (the harness checks SigV4).
  assert.ok(server.puts.includes('manifests/conf/demo.fl'));
});
