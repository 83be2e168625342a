import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FetchCache } from '../../src/rootfs/fetch/cache.js';
import { withLock } from '../../src/rootfs/fetch/lock.js';
import { isVmimgError } from '../../src/util/errors.js';
import { serve, sha256, tempDir } from './server.js';

test('cache: an interrupted download resumes with Range; a server ignoring Range restarts from zero', async (t) => {
  const dir = tempDir(t);
  const fx = await serve(t);
  const body = Buffer.from(Array.from({ length: 100000 }, (_, i) => i % 251));
  const digest = sha256(body);
  for (const ranges of [true, false]) {
    const cache = new FetchCache(join(dir, String(ranges)));
    mkdirSync(join(cache.dir, 'partial'), { recursive: true });
    writeFileSync(join(cache.dir, 'partial', `${digest}.part`), body.subarray(0, 40000));
    fx.routes.set('/blob', { body, ranges });
    const r = await cache.ensure({ url: `${fx.base}/blob`, sha256: digest, timeoutMs: 5000 });
    assert.equal(r.downloaded, true);
    assert.deepEqual(readFileSync(r.path), body);
    assert.equal(fx.log.at(-1)!.range, 'bytes=40000-');
    assert.deepEqual(readdirSync(join(cache.dir, 'partial')), []);
  }
});

test('cache: a corrupt cached file is deleted and fetched again', async (t) => {
  const dir = tempDir(t);
  const fx = await serve(t);
  const body = Buffer.from('content');
  fx.routes.set('/c', { body });
  const cache = new FetchCache(dir);
  mkdirSync(join(dir, 'sha256'), { recursive: true });
  writeFileSync(cache.pathFor(sha256(body)), 'rotten');
  const r = await cache.ensure({ url: `${fx.base}/c`, sha256: sha256(body) });
  assert.equal(r.downloaded, true);
  assert.deepEqual(readFileSync(r.path), body);
});

test('lock: a lock left by a dead pid on this host is broken; a live one times out with LOCK_TIMEOUT', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'x.lock');
  writeFileSync(path, JSON.stringify({ pid: 2 ** 22 + 12345, host: hostname(), nonce: 'dead', created: 'then' }));
  assert.equal(await withLock(path, async () => 'ran'), 'ran');
  assert.deepEqual(readdirSync(dir), []);

  writeFileSync(path, JSON.stringify({ pid: process.pid, host: hostname(), nonce: 'live', created: 'now' }));
  await assert.rejects(withLock(path, async () => 'never', { timeoutMs: 100 }), (e) => isVmimgError(e) && e.code === 'LOCK_TIMEOUT' && e.message.includes(`pid ${process.pid}`));
  writeFileSync(path, JSON.stringify({ pid: 2 ** 22 + 12345, host: 'another-host', nonce: 'remote', created: 'now' }));
  await assert.rejects(withLock(path, async () => 'never', { timeoutMs: 100 }), (e) => isVmimgError(e) && e.code === 'LOCK_TIMEOUT');
});

test('lock: holders in one process run one at a time', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'y.lock');
  let inside = 0;
  let max = 0;
  await Promise.all(
    Array.from({ length: 4 }, () =>
      withLock(path, async () => {
        max = Math.max(max, ++inside);
        await new Promise((r) => setImmediate(r));
        inside--;
      }),
    ),
  );
  assert.equal(max, 1);
});
