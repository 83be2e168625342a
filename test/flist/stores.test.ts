/**
 * Blob stores below the CLI: URL parsing and password handling in openStore, the dir store's rfs
 * layout (two-letter folder, flat fallback, atomic put), the HTTP store's status mapping
 * (legacy path, 401/403, 404) and the range router (put to every covering store, reads that
 * aggregate failures).
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { openRouter, openStore } from '../../src/flist/store/index.js';
import { parseRouteSpec } from '../../src/flist/store/router.js';
import { isVmimgError } from '../../src/util/errors.js';
import { tempDir } from '../helpers/oracle.js';

const code = (c: string) => (e: unknown) => isVmimgError(e) && e.code === c;
const noSecret = (c: string) => (e: unknown) => isVmimgError(e) && e.code === c && !e.message.includes('s3cret') && !JSON.stringify(e.details).includes('s3cret');

function id(first: number, fill = 7): Buffer {
  const b = Buffer.alloc(32, fill);
  b[0] = first;
  return b;
}

test('openStore parses URLs, strips passwords unless asked, and never shows them', async () => {
  const h = await openStore('http://user:s3cret@127.0.0.1:9/blobs/');
  assert.equal(h.url, 'http://user@127.0.0.1:9/blobs');
  assert.ok(!h.displayUrl.includes('s3cret'));
  assert.equal(h.readOnly, true);
  const kept = await openStore('https://user:s3cret@example.invalid/b', { keepPassword: true });
  assert.equal(kept.url, 'https://user:s3cret@example.invalid/b');
  assert.ok(!kept.displayUrl.includes('s3cret'));
  await assert.rejects(openStore('zdb://user:s3cret@host:9900/ns'), noSecret('INVALID_STORE_URL'));
  await assert.rejects(openStore('http://user:s3cret@/x'), noSecret('INVALID_STORE_URL'));
  await assert.rejects(openStore('http://user:s3cret@h/x?sig=1'), noSecret('INVALID_STORE_URL'));
  await assert.rejects(openStore('dir://relative/path'), code('INVALID_STORE_URL'));
  await assert.rejects(openStore(''), code('INVALID_STORE_URL'));
  assert.throws(() => parseRouteSpec('80-10=dir:///x'), code('INVALID_STORE_URL'));
  assert.deepEqual(parseRouteSpec('00-7f=dir:///x'), { start: 0, end: 0x7f, url: 'dir:///x' });
  assert.deepEqual(parseRouteSpec('dir:///y'), { start: 0, end: 255, url: 'dir:///y' });
});

test('dir store: rfs layout, flat fallback, atomic idempotent put', async (t) => {
  const dir = tempDir(t, 'vmimg-flist-dir-');
  const s = await openStore(`dir://${dir}`);
  assert.equal(s.url, `dir://${dir}`);
  const a = id(0xab);
  const hex = a.toString('hex');
  assert.equal(await s.has(a), false);
  await assert.rejects(s.get(a), (e: unknown) => isVmimgError(e) && e.code === 'BLOB_NOT_FOUND' && e.message.includes(hex));
  await s.put(a, Buffer.from('one'));
  await s.put(a, Buffer.from('one'));
  assert.deepEqual(readdirSync(join(dir, 'ab')), [hex]);
  assert.equal(readFileSync(join(dir, 'ab', hex), 'utf8'), 'one');
  // Blobs of the older flat layout are still found.
  const b = id(0xcd);
  writeFileSync(join(dir, b.toString('hex')), 'flat');
  assert.equal(await s.has(b), true);
  assert.equal((await s.get(b)).toString(), 'flat');
  // A plain path is a dir store too.
  const plain = await openStore(dir);
  assert.equal((await plain.get(a)).toString(), 'one');
});

async function server(t: TestContext, handler: http.RequestListener): Promise<string> {
  const srv = http.createServer(handler);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.after(async () => {
    srv.closeAllConnections();
    await new Promise((r) => srv.close(r));
  });
  return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
}

test('http store: two-letter then flat path, 404 → BLOB_NOT_FOUND, 401/403 → STORE_AUTH_FAILED, read-only', async (t) => {
  const a = id(0x12);
  const b = id(0x34);
  const seen: string[] = [];
  const base = await server(t, (req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const url = req.url ?? '';
    if (url === `/s/12/${a.toString('hex')}`) return void res.writeHead(200).end('blob-a');
    if (url === `/s/${b.toString('hex')}`) return void res.writeHead(200).end('blob-b');
    if (url.startsWith('/s/ff/')) return void res.writeHead(403).end();
    res.writeHead(404).end();
  });
  const s = await openStore(`${base}/s`);
  assert.equal((await s.get(a)).toString(), 'blob-a');
  assert.equal((await s.get(b)).toString(), 'blob-b');
  assert.deepEqual(seen.slice(-2), [`GET /s/34/${b.toString('hex')}`, `GET /s/${b.toString('hex')}`]);
  assert.equal(await s.has(a), true);
  assert.equal(await s.has(id(0x56)), false);
  await assert.rejects(s.get(id(0x56)), code('BLOB_NOT_FOUND'));
  await assert.rejects(s.get(id(0xff)), code('STORE_AUTH_FAILED'));
  await assert.rejects(s.put(a, Buffer.from('x')), code('STORE_READ_ONLY'));
  const refused = await openStore('http://127.0.0.1:1/s', { timeoutMs: 2000 });
  await assert.rejects(refused.get(a), code('STORE_UNREACHABLE'));
});

test('router: puts go to every covering writable store, reads fall through and aggregate failures', async (t) => {
  const dir = tempDir(t, 'vmimg-flist-router-');
  const x = join(dir, 'x');
  const y = join(dir, 'y');
  const z = join(dir, 'z');
  for (const d of [x, y, z]) mkdirSync(d);
  const router = await openRouter([`00-7f=dir://${x}`, `00-ff=dir://${y}`, `80-ff=dir://${z}`]);
  assert.deepEqual(router.routes.map((r) => [r.start, r.end]), [[0, 0x7f], [0, 0xff], [0x80, 0xff]]);
  const low = id(0x10);
  const high = id(0x90);
  assert.deepEqual(await router.put(low, Buffer.from('L')), { stored: 2, present: 0 });
  assert.deepEqual(await router.put(low, Buffer.from('L')), { stored: 0, present: 2 });
  assert.deepEqual(await router.put(high, Buffer.from('H')), { stored: 2, present: 0 });
  assert.deepEqual(readdirSync(x), ['10']);
  assert.deepEqual(readdirSync(z), ['90']);
  assert.deepEqual(readdirSync(y).sort(), ['10', '90']);
  // The first store lost its copy: the read falls through to the next covering store.
  rmSync(join(x, '10'), { recursive: true });
  assert.equal((await router.get(low)).toString(), 'L');
  await assert.rejects(router.get(id(0x20)), (e: unknown) => isVmimgError(e) && e.code === 'BLOB_NOT_FOUND' && /any store/.test(e.message));
  await router.close();
  const only = await openRouter([`00-0f=dir://${x}`]);
  await assert.rejects(only.put(id(0x20), Buffer.from('?')), code('NO_STORE_FOR_BLOB'));
  await assert.rejects(only.get(id(0x20)), code('NO_STORE_FOR_BLOB'));
});
