import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { vmimg } from '../helpers/cli.js';
import { FetchCache } from '../../src/rootfs/fetch/cache.js';
import { fetchFirecracker, FIRECRACKER_DEFAULT_VERSION, FIRECRACKER_PINNED } from '../../src/rootfs/fetch/firecracker.js';
import { addRelease, fakeRelease, serve, sha256, tempDir } from './server.js';

const V = 'v1.2.3';

function args(dir: string, base: string, extra: string[] = []): string[] {
  return ['fetch', 'firecracker', '--version', V, '--arch', 'x86_64', '--dest', join(dir, 'fc'), '--cache-dir', join(dir, 'cache'), '--base-url', base, '--config', join(dir, 'none.json'), ...extra];
}

function noConfig(dir: string): void {
  writeFileSync(join(dir, 'none.json'), '{}');
}

test('fetch firecracker: installs firecracker and jailer (0755) with a sidecar; a second run makes no request', async (t) => {
  const dir = tempDir(t);
  noConfig(dir);
  const fx = await serve(t);
  const rel = await fakeRelease(V, 'x86_64');
  const tgzPath = addRelease(fx, '/dl', V, 'x86_64', rel.tgz);
  const r = await vmimg(args(dir, `${fx.base}/dl`));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /installed/);
  const bin = join(dir, 'fc', 'bin');
  assert.deepEqual(readFileSync(join(bin, 'firecracker')), rel.firecracker);
  assert.deepEqual(readFileSync(join(bin, 'jailer')), rel.jailer);
  assert.equal(statSync(join(bin, 'firecracker')).mode & 0o777, 0o755);
  assert.equal(statSync(join(bin, 'jailer')).mode & 0o777, 0o755);
  assert.deepEqual(readdirSync(bin).sort(), ['firecracker', 'jailer']);
  const side = JSON.parse(readFileSync(join(dir, 'fc', 'firecracker-version.json'), 'utf8'));
  assert.equal(side.version, V);
  assert.equal(side.arch, 'x86_64');
  assert.equal(side.sha256, sha256(rel.tgz));
  assert.equal(fx.count(tgzPath), 1);

  const before = fx.log.length;
  const again = await vmimg(args(dir, `${fx.base}/dl`, ['--output', 'json']));
  assert.equal(again.status, 0, again.stderr);
  assert.equal(JSON.parse(again.stdout).status, 'present');
  assert.equal(fx.log.length, before, 'no request on the second run');

  // A damaged binary is re-installed from the cache: only the small .sha256.txt is fetched.
  writeFileSync(join(bin, 'jailer'), 'tampered');
  const third = await vmimg(args(dir, `${fx.base}/dl`, ['--output', 'json']));
  assert.equal(third.status, 0, third.stderr);
  assert.equal(JSON.parse(third.stdout).downloaded, false);
  assert.deepEqual(readFileSync(join(bin, 'jailer')), rel.jailer);
  assert.equal(fx.count(tgzPath), 1);
});

test('fetch firecracker: a checksum mismatch fails naming both digests and leaves no file behind', async (t) => {
  const dir = tempDir(t);
  noConfig(dir);
  const fx = await serve(t);
  const rel = await fakeRelease(V, 'x86_64');
  const wrong = 'ab'.repeat(32);
  addRelease(fx, '/dl', V, 'x86_64', rel.tgz, wrong);
  const r = await vmimg(args(dir, `${fx.base}/dl`));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /CHECKSUM_MISMATCH/);
  assert.ok(r.stderr.includes(wrong) && r.stderr.includes(sha256(rel.tgz)), r.stderr);
  for (const sub of ['sha256', 'partial', 'locks']) assert.deepEqual(readdirSync(join(dir, 'cache', sub)), [], sub);
  assert.equal(existsSync(join(dir, 'fc')), false);
});

test('fetch firecracker: the default release is pinned; a mirror whose .sha256.txt disagrees is refused before the tarball is fetched', async (t) => {
  const dir = tempDir(t);
  noConfig(dir);
  const fx = await serve(t);
  const version = FIRECRACKER_DEFAULT_VERSION;
  const rel = await fakeRelease(version, 'x86_64');
  const tgzPath = addRelease(fx, '/dl', version, 'x86_64', rel.tgz);
  const r = await vmimg(args(dir, `${fx.base}/dl`, ['--version', version]));
  assert.equal(r.status, 1);
  const pinned = FIRECRACKER_PINNED[version]!.x86_64!;
  assert.match(r.stderr, new RegExp(`says ${sha256(rel.tgz)} but vmimg pins ${pinned}.*\\[CHECKSUM_MISMATCH\\]`));
  assert.equal(fx.count(tgzPath), 0);
  assert.equal(existsSync(join(dir, 'fc')), false);
  for (const arch of ['x86_64', 'aarch64'] as const) assert.match(FIRECRACKER_PINNED[version]![arch] ?? '', /^[0-9a-f]{64}$/, arch);
});

test('fetch firecracker: HTTP 404 and 500 are HTTP_ERRORs naming the status and URL', async (t) => {
  const dir = tempDir(t);
  noConfig(dir);
  const fx = await serve(t);
  const missing = await vmimg(args(dir, `${fx.base}/nothing`));
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /HTTP 404 .*\/nothing\/v1\.2\.3\/firecracker-v1\.2\.3-x86_64\.tgz\.sha256\.txt.*\[HTTP_ERROR\]/);
  const rel = await fakeRelease(V, 'x86_64');
  const tgzPath = addRelease(fx, '/dl', V, 'x86_64', rel.tgz);
  fx.routes.set(tgzPath, { status: 500 });
  const broken = await vmimg(args(dir, `${fx.base}/dl`));
  assert.equal(broken.status, 1);
  assert.match(broken.stderr, /HTTP 500 .*firecracker-v1\.2\.3-x86_64\.tgz'.*\[HTTP_ERROR\]/);
});

test('fetch firecracker: a stalled server is a FETCH_TIMEOUT (headers never sent, or body stops)', async (t) => {
  const dir = tempDir(t);
  noConfig(dir);
  const fx = await serve(t);
  const rel = await fakeRelease(V, 'x86_64');
  const tgzPath = addRelease(fx, '/dl', V, 'x86_64', rel.tgz);
  for (const stall of ['headers', 'body'] as const) {
    fx.routes.set(tgzPath, { stall });
    const r = await vmimg(args(dir, `${fx.base}/dl`, ['--timeout', '0.2']));
    assert.equal(r.status, 1, stall);
    assert.match(r.stderr, /Timed out after 200 ms .*\[FETCH_TIMEOUT\]/, stall);
  }
  assert.deepEqual(readdirSync(join(dir, 'cache', 'sha256')), []);
  assert.deepEqual(readdirSync(join(dir, 'cache', 'locks')), []);
});

test('fetch firecracker: two concurrent fetches download once and both succeed', async (t) => {
  const dir = tempDir(t);
  const fx = await serve(t);
  const rel = await fakeRelease(V, 'aarch64');
  const tgzPath = addRelease(fx, '/dl', V, 'aarch64', rel.tgz, undefined, 50);
  const cache = new FetchCache(join(dir, 'cache'));
  const req = (dest: string) => fetchFirecracker({ version: V, arch: 'aarch64', dest: join(dir, dest), baseUrl: `${fx.base}/dl`, cache, timeoutMs: 5000 });
  const [a, b, c] = await Promise.all([req('a'), req('b'), req('a')]);
  assert.equal(fx.count(tgzPath), 1);
  assert.equal([a, b, c].filter((r) => r.downloaded).length, 1);
  for (const d of ['a', 'b']) assert.deepEqual(readFileSync(join(dir, d, 'bin', 'firecracker')), rel.firecracker);
  assert.deepEqual(readdirSync(join(dir, 'a', 'bin')).sort(), ['firecracker', 'jailer']);
});

test('fetch firecracker: --base-url and the config file choose the mirror (the flag wins); redirects are followed', async (t) => {
  const dir = tempDir(t);
  const fx = await serve(t);
  const rel = await fakeRelease('v9.8.7', 'x86_64');
  addRelease(fx, '/mirror', 'v9.8.7', 'x86_64', rel.tgz);
  writeFileSync(join(dir, 'cfg.json'), JSON.stringify({ cacheDir: join(dir, 'cfgcache'), firecracker: { baseUrl: `${fx.base}/mirror`, version: 'v9.8.7' } }));
  const common = ['--arch', 'x86_64', '--config', join(dir, 'cfg.json')];
  const viaConfig = await vmimg(['fetch', 'firecracker', '--dest', join(dir, 'c'), ...common]);
  assert.equal(viaConfig.status, 0, viaConfig.stderr);
  assert.deepEqual(readFileSync(join(dir, 'c', 'bin', 'firecracker')), rel.firecracker);
  assert.equal(readdirSync(join(dir, 'cfgcache', 'sha256')).length, 1);

  fx.routes.set('/old/v9.8.7/firecracker-v9.8.7-x86_64.tgz.sha256.txt', { redirect: '/mirror/v9.8.7/firecracker-v9.8.7-x86_64.tgz.sha256.txt' });
  fx.routes.set('/old/v9.8.7/firecracker-v9.8.7-x86_64.tgz', { redirect: `${fx.base}/mirror/v9.8.7/firecracker-v9.8.7-x86_64.tgz`, status: 301 });
  const viaFlag = await vmimg(['fetch', 'firecracker', '--dest', join(dir, 'f'), '--base-url', `${fx.base}/old`, '--cache-dir', join(dir, 'other'), ...common]);
  assert.equal(viaFlag.status, 0, viaFlag.stderr);
  assert.equal(fx.count('/old/v9.8.7/firecracker-v9.8.7-x86_64.tgz'), 1);

  fx.routes.set('/loop/v9.8.7/firecracker-v9.8.7-x86_64.tgz.sha256.txt', { redirect: '/loop/v9.8.7/firecracker-v9.8.7-x86_64.tgz.sha256.txt' });
  const loop = await vmimg(['fetch', 'firecracker', '--dest', join(dir, 'l'), '--base-url', `${fx.base}/loop`, ...common]);
  assert.equal(loop.status, 1);
  assert.match(loop.stderr, /Too many redirects.*\[HTTP_ERROR\]/);
});
