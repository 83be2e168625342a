/**
 * `vmimg flist` on the command line: pack a directory and a tarball, inspect/tree/cat, unpack
 * through an HTTP store on loopback with a cache, store failures with their codes, routing by
 * id range, and pack-modules/pack-firmware choosing their source by the documented priority.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { chooseFirmware, chooseModules } from '../../src/flist/sources.js';
import { openRouter } from '../../src/flist/store/index.js';
import { isVmimgError } from '../../src/util/errors.js';
import { vmimg } from '../helpers/cli.js';
import { oracle, run, tempDir } from '../helpers/oracle.js';

function sourceDir(dir: string): string {
  const src = join(dir, 'src');
  mkdirSync(join(src, 'etc'), { recursive: true });
  mkdirSync(join(src, 'usr', 'bin'), { recursive: true });
  writeFileSync(join(src, 'etc', 'hostname'), 'vm\n');
  const big = Buffer.alloc(1_300_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 131) & 0xff;
  writeFileSync(join(src, 'usr', 'bin', 'tool'), big, { mode: 0o755 });
  symlinkSync('tool', join(src, 'usr', 'bin', 'alias'));
  return src;
}

/** A static file server over `root` with programmable failures. */
async function serveDir(t: TestContext, root: string): Promise<{ url: string; mode: { status?: number; stall?: boolean }; hits: string[] }> {
  const mode: { status?: number; stall?: boolean } = {};
  const hits: string[] = [];
  const server = http.createServer((req, res) => {
    hits.push(req.url ?? '');
    if (mode.stall) return; // never answers
    if (mode.status) return void res.writeHead(mode.status).end('nope');
    try {
      const body = readFileSync(join(root, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)));
      res.writeHead(200, { 'content-length': String(body.length) }).end(req.method === 'HEAD' ? undefined : body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/blobs`, mode, hits };
}

test('pack, inspect, tree, cat and unpack through an HTTP store with a cache', async (t) => {
  const dir = tempDir(t, 'vmimg-flist-cli-');
  const src = sourceDir(dir);
  const store = join(dir, 'store');
  const manifest = join(dir, 'x.fl');
  const p = await vmimg(['flist', 'pack', '-m', manifest, '-s', `dir://${store}`, '--tag', 'description=test tree', '--output', 'json', src]);
  assert.equal(p.status, 0, p.stderr);
  const s = JSON.parse(p.stdout);
  assert.deepEqual([s.files, s.directories, s.symlinks, s.bytes, s.blocks], [2, 4, 1, 1_300_003, 4]);
  const i = await vmimg(['flist', 'inspect', '--output', 'json', manifest]);
  const info = JSON.parse(i.stdout);
  assert.deepEqual(info.tags, { description: 'test tree', version: '1' });
  assert.deepEqual(info.routes, [{ start: 0, end: 255, url: `dir://${store}` }]);
  assert.deepEqual(info.entries, { directories: 4, files: 2, symlinks: 1, special: 0 });
  const tree = (await vmimg(['flist', 'tree', manifest])).stdout.split('\n');
  assert.ok(tree.includes(`lrwxrwxrwx ${process.getuid!()}/${process.getgid!()}          4 /usr/bin/alias -> tool`), tree.join('\n'));
  const cat = await vmimg(['flist', 'cat', manifest, '/usr/bin/tool']);
  assert.equal(cat.status, 0, cat.stderr);
  assert.deepEqual(cat.bytes, readFileSync(join(src, 'usr', 'bin', 'tool')));
  const missing = await vmimg(['flist', 'cat', manifest, '/nope']);
  assert.match(missing.stderr, /'\/nope' is not in manifest .*\[FLIST_PATH_NOT_FOUND\]/);

  const web = await serveDir(t, dir.replace(/\/$/, '') + '/..');
  const base = web.url.replace('/blobs', `/${dir.split('/').pop()}/store`);
  const cache = join(dir, 'cache');
  const u = await vmimg(['flist', 'unpack', '-m', manifest, '-s', base, '-c', cache, join(dir, 'out')]);
  assert.equal(u.status, 0, u.stderr);
  assert.deepEqual(readFileSync(join(dir, 'out', 'usr', 'bin', 'tool')), readFileSync(join(src, 'usr', 'bin', 'tool')));
  const cached = readdirSync(cache).flatMap((a) => readdirSync(join(cache, a)).flatMap((b) => readdirSync(join(cache, a, b))));
  assert.equal(cached.length, s.uniqueBlobs, 'every blob cached under <hex0..2>/<hex2..4>/<hex>');
  const before = web.hits.length;
  const again = await vmimg(['flist', 'unpack', '-m', manifest, '-s', base, '-c', cache, join(dir, 'out2')]);
  assert.equal(again.status, 0, again.stderr);
  assert.equal(web.hits.length, before, 'a warm cache needs no request');

  web.mode.status = 500;
  const e500 = await vmimg(['flist', 'unpack', '-m', manifest, '-s', base, join(dir, 'out3')]);
  assert.match(e500.stderr, /answered HTTP 500 .*\[STORE_ERROR\]/);
  web.mode.status = 404;
  const e404 = await vmimg(['flist', 'unpack', '-m', manifest, '-s', base, join(dir, 'out4')]);
  assert.match(e404.stderr, /is not in .*\[BLOB_NOT_FOUND\]/);
  web.mode.status = undefined;
  web.mode.stall = true;
  const router = await openRouter([base], { timeoutMs: 300 });
  await assert.rejects(router.get(Buffer.alloc(32)), (e: unknown) => isVmimgError(e) && e.code === 'STORE_UNREACHABLE');
  await router.close();
  const ro = await openRouter([base]);
  await assert.rejects(ro.put(Buffer.alloc(32), Buffer.from('x')), (e: unknown) => isVmimgError(e) && e.code === 'NO_STORE_FOR_BLOB');
  await ro.close();
  const refused = await vmimg(['flist', 'unpack', '-m', manifest, join(dir, 'out')]);
  assert.match(refused.stderr, /is not empty \[USAGE\]/);
});

test('a tarball packs like its directory; routes split blobs by first byte; unknown schemes are refused', async (t) => {
  if (!oracle(t, 'tar')) return;
  const dir = tempDir(t, 'vmimg-flist-tar-');
  const src = sourceDir(dir);
  assert.equal(run('tar', ['--numeric-owner', '-C', src, '-cf', join(dir, 'src.tar'), '.']).status, 0);
  const low = join(dir, 'low');
  const high = join(dir, 'high');
  const fromDir = await vmimg(['flist', 'pack', '-m', join(dir, 'd.fl'), '-s', `00-7f=dir://${low}`, '-s', `80-ff=dir://${high}`, '--output', 'json', src]);
  const fromTar = await vmimg(['flist', 'pack', '-m', join(dir, 't.fl'), '-s', `00-7f=dir://${low}`, '-s', `80-ff=dir://${high}`, '--output', 'json', join(dir, 'src.tar')]);
  assert.equal(fromDir.status, 0, fromDir.stderr);
  assert.equal(fromTar.status, 0, fromTar.stderr);
  assert.equal(JSON.parse(fromTar.stdout).blobsNew, 0, 'the tarball adds no blob the directory did not');
  const names = (d: string): string[] => readdirSync(d).flatMap((s) => readdirSync(join(d, s)));
  for (const n of names(low)) assert.ok(parseInt(n.slice(0, 2), 16) <= 0x7f, n);
  for (const n of names(high)) assert.ok(parseInt(n.slice(0, 2), 16) >= 0x80, n);
  assert.equal(names(low).length + names(high).length, JSON.parse(fromDir.stdout).uniqueBlobs);
  const u = await vmimg(['flist', 'unpack', '-m', join(dir, 't.fl'), join(dir, 'out')]);
  assert.equal(u.status, 0, u.stderr);
  assert.deepEqual(readFileSync(join(dir, 'out', 'etc', 'hostname'), 'utf8'), 'vm\n');
  const bad = await vmimg(['flist', 'pack', '-m', join(dir, 'z.fl'), '-s', 'zdb://host:9900/ns', src]);
  assert.match(bad.stderr, /unknown store scheme 'zdb' .*\[INVALID_STORE_URL\]/);
  const noStore = await vmimg(['flist', 'pack', '-m', join(dir, 'z.fl'), '--config', join(dir, 'none.conf'), src]);
  assert.equal(noStore.status, 1);
  assert.equal(readdirSync(dir).includes('z.fl'), false, 'no manifest left behind');
});

test('pack-modules and pack-firmware: the documented source priority, names from the tree, never the running kernel', async (t) => {
  const dir = tempDir(t, 'vmimg-flist-mod-');
  const mk = (root: string, ver: string): string => {
    const d = join(root, 'lib', 'modules', ver);
    mkdirSync(join(d, 'kernel', 'drivers'), { recursive: true });
    writeFileSync(join(d, 'modules.dep'), 'kernel/drivers/virtio_blk.ko:\n');
    writeFileSync(join(d, 'kernel', 'drivers', 'virtio_blk.ko'), Buffer.alloc(5000, 1));
    return d;
  };
  const rootfs = join(dir, 'rootfs');
  mk(rootfs, '6.1.0-28-amd64');
  const host = join(dir, 'host');
  mk(host, '5.10.0-1');
  mk(host, '5.10.0-2');
  const explicit = mk(join(dir, 'explicit'), '6.6.1');
  const env = { VMIMG_MODULES_DIR: join(dir, 'envmods') };
  mk(join(dir, 'envmods', '..', 'envroot'), '9.9.9');
  assert.deepEqual(await chooseModules({ modulesDir: explicit, root: rootfs, env, hostLib: join(host, 'lib') }), { dir: explicit, version: '6.6.1', rule: '--modules-dir' });
  assert.deepEqual(await chooseModules({ root: rootfs, env: {}, hostLib: join(host, 'lib') }), { dir: join(rootfs, 'lib', 'modules', '6.1.0-28-amd64'), version: '6.1.0-28-amd64', rule: '--root' });
  await assert.rejects(chooseModules({ env: {}, hostLib: join(host, 'lib') }), /holds modules for 5\.10\.0-1, 5\.10\.0-2; choose one with --kernel-version/);
  assert.equal((await chooseModules({ env: {}, hostLib: join(host, 'lib'), kernelVersion: '5.10.0-2' })).dir, join(host, 'lib', 'modules', '5.10.0-2'));
  mkdirSync(join(dir, 'envmods'));
  symlinkSync(join(dir, 'envroot', 'lib', 'modules', '9.9.9'), join(dir, 'envmods', '9.9.9'));
  assert.equal((await chooseModules({ root: rootfs, env, hostLib: join(host, 'lib') })).rule, '$VMIMG_MODULES_DIR');
  await assert.rejects(chooseModules({ env: {}, hostLib: join(dir, 'nothing') }), (e: unknown) => isVmimgError(e) && e.code === 'FILE_NOT_FOUND');

  const store = join(dir, 'store');
  const pm = await vmimg(['flist', 'pack-modules', '--root', rootfs, '-s', `dir://${store}`, '-o', dir, '--output', 'json']);
  assert.equal(pm.status, 0, pm.stderr);
  assert.equal(JSON.parse(pm.stdout).manifest, join(dir, 'modules-6.1.0-28-amd64.fl'));
  const tree = (await vmimg(['flist', 'tree', join(dir, 'modules-6.1.0-28-amd64.fl')])).stdout;
  assert.match(tree, / \/lib\/modules\/6\.1\.0-28-amd64\/kernel\/drivers\/virtio_blk\.ko\n/);
  const tags = JSON.parse((await vmimg(['flist', 'inspect', '--output', 'json', join(dir, 'modules-6.1.0-28-amd64.fl')])).stdout).tags;
  assert.equal(tags['kernel-version'], '6.1.0-28-amd64');

  mkdirSync(join(rootfs, 'lib', 'firmware', 'intel'), { recursive: true });
  writeFileSync(join(rootfs, 'lib', 'firmware', 'intel', 'ucode.bin'), 'microcode');
  assert.equal((await chooseFirmware({ root: rootfs, env: {}, hostLib: join(host, 'lib') })).rule, '--root');
  const pf = await vmimg(['flist', 'pack-firmware', '--tag', '20241110', '--root', rootfs, '-s', `dir://${store}`, '-o', dir, '--output', 'json']);
  assert.equal(pf.status, 0, pf.stderr);
  assert.match((await vmimg(['flist', 'tree', join(dir, 'firmware-20241110.fl')])).stdout, / \/lib\/firmware\/intel\/ucode\.bin\n/);
  const badTag = await vmimg(['flist', 'pack-firmware', '--tag', '../x', '--root', rootfs, '-s', `dir://${store}`]);
  assert.match(badTag.stderr, /\[INVALID_OPTION\]/);
});
