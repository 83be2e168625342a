/**
 * `vmimg flist pack` / `unpack` against an S3 store on loopback (s3rver behind the SigV4 check):
 * pack → unpack round trip (routes without the secret, the secret from --config on unpack), a
 * second pack uploads nothing, and a server that stops in the middle of a pack gives a clear
 * STORE_UNREACHABLE error, leaves no manifest, and a re-run after the restart uploads exactly the
 * blobs the store does not have yet.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import Database from 'better-sqlite3';
import { vmimg, type CliResult } from '../helpers/cli.js';
import { tempDir } from '../helpers/oracle.js';
import { assertNoSecret, S3TestServer, TEST_ACCESS_KEY, TEST_SECRET_KEY } from './s3-server.js';

const KiB = 1024;

/** A small tree: multi-block files, a duplicate (dedup), an empty file, a subdirectory, a symlink. */
function sourceTree(dir: string, files: number, size: number): Map<string, Buffer> {
  const src = join(dir, 'src');
  mkdirSync(join(src, 'sub'), { recursive: true });
  const content = new Map<string, Buffer>();
  for (let i = 0; i < files; i++) content.set(i % 2 === 0 ? `f${i}.bin` : `sub/f${i}.bin`, randomBytes(size + i));
  content.set('dup.bin', content.get('f0.bin')!);
  content.set('small.txt', Buffer.from('hello flist\n'));
  content.set('empty', Buffer.alloc(0));
  for (const [p, b] of content) writeFileSync(join(src, p), b);
  symlinkSync('../small.txt', join(src, 'sub', 'link'));
  return content;
}

function checkTree(target: string, content: Map<string, Buffer>): void {
  for (const [p, b] of content) assert.ok(readFileSync(join(target, p)).equals(b), `content of ${p}`);
  assert.equal(readlinkSync(join(target, 'sub', 'link')), '../small.txt');
}

function ok(r: CliResult, what: string): void {
  assert.equal(r.status, 0, `${what}: ${r.stderr}`);
  assertNoSecret(r.stdout);
  assertNoSecret(r.stderr);
}

async function listKeys(server: S3TestServer, bucket: string): Promise<Set<string>> {
  const c = server.client();
  const keys = new Set<string>();
  try {
    let token: string | undefined;
    do {
      const out = await c.send(new ListObjectsV2Command({ Bucket: bucket, ...(token ? { ContinuationToken: token } : {}) }));
      for (const o of out.Contents ?? []) keys.add(o.Key!);
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
  } finally {
    c.destroy();
  }
  return keys;
}

test('flist pack to s3, unpack from s3 through the manifest routes (+ --config secret), re-pack uploads nothing', async (t) => {
  const server = await S3TestServer.start();
  t.after(() => server.dispose());
  await server.createBucket('blobs');
  const dir = tempDir(t);
  const content = sourceTree(dir, 3, 600 * KiB);
  const fl = join(dir, 'out.fl');
  const url = server.url('blobs', { prefix: 'store' });

  const r1 = await vmimg(['flist', 'pack', '-m', fl, '-s', url, '--output', 'json', join(dir, 'src')]);
  ok(r1, 'pack');
  const s1 = JSON.parse(r1.stdout) as { uniqueBlobs: number; blobsNew: number; blobsExisting: number };
  // f0 (+dup), f1, f2: 600 KiB+i each = two blocks; small.txt one block.
  assert.equal(s1.uniqueBlobs, 7);
  assert.equal(s1.blobsNew, 7);
  assert.equal(s1.blobsExisting, 0);
  assert.equal(server.putsDone.length, 7);
  assert.ok(server.putsDone.every((k) => /^blobs\/store\/[0-9a-f]{64}$/.test(k)), server.putsDone.join(' '));

  // The route holds the access key but never the secret, anywhere in the file.
  const db = new Database(fl, { readonly: true });
  const routes = db.prepare('SELECT start, "end", url FROM route').all() as Array<{ start: number; end: number; url: string }>;
  db.close();
  assert.deepEqual(routes, [{ start: 0, end: 255, url: `s3://${TEST_ACCESS_KEY}@127.0.0.1:${server.port}/blobs/store?region=us-east-1` }]);
  assertNoSecret(readFileSync(fl).toString('latin1'));

  // Unpack through the routes: the secret comes from the configuration file.
  const conf = join(dir, 'rfs.conf');
  writeFileSync(conf, `S3_ACCESS_KEY=${TEST_ACCESS_KEY}\nS3_SECRET_KEY="${TEST_SECRET_KEY}"\n`);
  const target = join(dir, 'unpacked');
  ok(await vmimg(['flist', 'unpack', '-m', fl, '--config', conf, target]), 'unpack via routes');
  checkTree(target, content);

  // Without the secret (no configuration), the store refuses the request clearly.
  const noSecrets = join(dir, 'empty.conf');
  writeFileSync(noSecrets, '# no S3 settings\n');
  const denied = await vmimg(['flist', 'unpack', '-m', fl, '--config', noSecrets, join(dir, 'denied')]);
  assert.notEqual(denied.status, 0);
  assert.match(denied.stderr, /refused access key 'VMIMGTESTKEY'.*no secret key was given.*\[STORE_AUTH_FAILED\]/);
  assertNoSecret(denied.stderr);

  // With -s, and a second pack that finds every blob already stored.
  ok(await vmimg(['flist', 'unpack', '-m', fl, '-s', url, join(dir, 'unpacked2')]), 'unpack -s');
  checkTree(join(dir, 'unpacked2'), content);
  const putsBefore = server.puts.length;
  const r2 = await vmimg(['flist', 'pack', '-m', join(dir, 'again.fl'), '-s', url, '--output', 'json', join(dir, 'src')]);
  ok(r2, 'pack again');
  const s2 = JSON.parse(r2.stdout) as { blobsNew: number; blobsExisting: number };
  assert.deepEqual([s2.blobsNew, s2.blobsExisting], [0, 7]);
  assert.equal(server.puts.length, putsBefore);
});

test('server stopped mid-pack: clear STORE_UNREACHABLE, no manifest; the re-run uploads only the missing blobs', async (t) => {
  const server = await S3TestServer.start();
  t.after(() => server.dispose());
  await server.createBucket('blobs');
  const dir = tempDir(t);
  // 20 files of 2 blocks: 40 distinct blobs, more than the packer's 8 concurrent uploads, so the
  // stop below always happens with some blobs stored and some not.
  const content = sourceTree(dir, 20, 520 * KiB);
  const fl = join(dir, 'out.fl');
  const url = server.url('blobs');
  server.stopOn = (r) => r.method === 'PUT' && server.putsDone.length >= 3;

  const failed = await vmimg(['flist', 'pack', '-m', fl, '-s', url, join(dir, 'src')]);
  assert.notEqual(failed.status, 0);
  assert.match(failed.stderr, /unreachable.*\[STORE_UNREACHABLE\]/);
  assert.ok(failed.stderr.includes(`127.0.0.1:${server.port}`), failed.stderr);
  assertNoSecret(failed.stderr);
  assert.equal(existsSync(fl), false, 'no manifest after a failed pack');

  await server.stop();
  server.stopOn = undefined;
  await server.restart();
  const stored = await listKeys(server, 'blobs');
  assert.deepEqual([...stored].sort(), [...new Set(server.putsDone.map((k) => k.slice('blobs/'.length)))].sort());
  assert.ok(stored.size >= 3 && stored.size < 41, `stored ${stored.size}`);

  const first = server.puts.length;
  const again = await vmimg(['flist', 'pack', '-m', fl, '-s', url, '--output', 'json', join(dir, 'src')]);
  ok(again, 're-run');
  const s = JSON.parse(again.stdout) as { uniqueBlobs: number; blobsNew: number; blobsExisting: number };
  const rerunPuts = server.puts.slice(first).map((k) => k.slice('blobs/'.length));
  assert.equal(s.uniqueBlobs, 41); // 40 file blocks + small.txt
  assert.equal(s.blobsExisting, stored.size);
  assert.equal(s.blobsNew, 41 - stored.size);
  assert.equal(rerunPuts.length, s.blobsNew);
  assert.deepEqual(rerunPuts.filter((k) => stored.has(k)), [], 'no blob uploaded twice');
  assert.equal((await listKeys(server, 'blobs')).size, 41);

  const target = join(dir, 'unpacked');
  ok(await vmimg(['flist', 'unpack', '-m', fl, '-s', url, target]), 'unpack');
  checkTree(target, content);
});

test('flist pack with the store from --config (no -s), cat, publish through the CLI', async (t) => {
  const server = await S3TestServer.start();
  t.after(() => server.dispose());
  await server.createBucket('blobs');
  await server.createBucket('manifests');
  const dir = tempDir(t);
  const content = sourceTree(dir, 1, 100 * KiB);
  const conf = join(dir, 'rfs.conf');
  writeFileSync(conf, [
    `S3_ENDPOINT=http://127.0.0.1:${server.port}`, 'S3_BUCKET=blobs', 'S3_PREFIX=from-config',
    `S3_ACCESS_KEY=${TEST_ACCESS_KEY}`, `S3_SECRET_KEY='${TEST_SECRET_KEY}'`, '',
  ].join('\n'));

  const fl = join(dir, 'conf.fl');
  ok(await vmimg(['flist', 'pack', '-m', fl, '--config', conf, join(dir, 'src')]), 'pack from config');
  assert.ok(server.putsDone.length > 0 && server.putsDone.every((k) => k.startsWith('blobs/from-config/')), server.putsDone.join(' '));
  assertNoSecret(readFileSync(fl).toString('latin1'));
  const cat = await vmimg(['flist', 'cat', '--config', conf, fl, '/small.txt']);
  ok(cat, 'cat');
  assert.equal(cat.bytes.toString(), 'hello flist\n');

  // publish: to a second bucket and prefix; JSON names the object without the secret.
  const pub = await vmimg(['flist', 'publish', fl, '--to', server.url('manifests', { prefix: 'flists/' }), '--output', 'json']);
  ok(pub, 'publish');
  const r = JSON.parse(pub.stdout) as { url: string; bytes: number };
  assert.equal(r.url, `s3://${TEST_ACCESS_KEY}@127.0.0.1:${server.port}/manifests/flists/conf.fl?region=us-east-1`);
  assert.equal(r.bytes, readFileSync(fl).byteLength);
  assert.ok(server.putsDone.includes('manifests/flists/conf.fl'));
  const notFl = join(dir, 'not.fl');
  writeFileSync(notFl, 'plain text');
  const refused = await vmimg(['flist', 'publish', notFl, '--to', server.url('manifests', { prefix: 'x.fl' })]);
  assert.notEqual(refused.status, 0);
  assert.match(refused.stderr, /\[CORRUPT_MANIFEST\]/);
});

test('flist pack --no-strip-password keeps the secret in the route (asked for); inspect never prints it', async (t) => {
  const server = await S3TestServer.start();
  t.after(() => server.dispose());
  await server.createBucket('blobs');
  const dir = tempDir(t);
  const content = sourceTree(dir, 1, 100 * KiB);
  const kept = join(dir, 'kept.fl');
  ok(await vmimg(['flist', 'pack', '-m', kept, '--no-strip-password', '-s', server.url('blobs'), join(dir, 'src')]), 'pack keep password');
  assert.throws(() => assertNoSecret(readFileSync(kept).toString('latin1')), /secret leaked/);
  const inspect = await vmimg(['flist', 'inspect', '--output', 'json', kept]);
  ok(inspect, 'inspect');
  assert.ok(inspect.stdout.includes(`127.0.0.1:${server.port}/blobs`), inspect.stdout);
  ok(await vmimg(['flist', 'unpack', '-m', kept, join(dir, 'kept-out')]), 'unpack with the kept secret');
  checkTree(join(dir, 'kept-out'), content);

  assertNoSecret(inspect.stdout);
});
