/**
 * Installs from a repository written to disk and served on loopback by makeApkRepo
 * (test/helpers/apk-repo.ts), onto a generated minirootfs: the base's packages are not
 * repeated, abuild-style PAX checksums are ignored for content but agree with our Z: lines,
 * hard links, device nodes, owners and xattrs reach the layer and the installed db, a rebuild
 * from the lock with the server stopped is identical, a refused package leaves the cache as it
 * was, and every gzip member of the generated files passes `gzip -t` and `tar -tzvf`.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { splitGzipMembers } from '../../src/rootfs/apk/gzip.js';
import { installApkPackages, type ApkInstallResult } from '../../src/rootfs/apk/index.js';
import { xattrChecksum } from '../../src/rootfs/apk/installed-db.js';
import { FetchCache } from '../../src/rootfs/fetch/cache.js';
import { readTarFile } from '../../src/tree/tar.js';
import type { RawEntry } from '../../src/tree/types.js';
import { isVmimgError } from '../../src/util/errors.js';
import { makeApkRepo, type ApkPackageSpec, type ServedApkRepo, MUSL } from '../helpers/apk-repo.js';
import { oracle, run, tempDir as tempDirOf } from '../helpers/oracle.js';

const tempDir = (t: TestContext, tag: string): string => tempDirOf(t, `vmimg-apk-${tag}-`);

const BUSYBOX: ApkPackageSpec = {
  name: 'busybox',
  version: '1.36.1-r29',
  depends: ['so:libc.musl-x86_64.so.1'],
  provides: ['cmd:sh=1.36.1-r29', 'cmd:busybox=1.36.1-r29'],
  files: [{ path: 'bin/', dir: true }, { path: 'bin/busybox', content: 'busybox binary', mode: 0o755 }, { path: 'bin/sh', symlink: '/bin/busybox' }],
  scripts: { '.post-install': '#!/bin/busybox sh\n/bin/busybox --install -s\n', '.trigger': '#!/bin/sh\n' },
};
const TOOLS: ApkPackageSpec = {
  name: 'tools',
  version: '2.0-r1',
  depends: ['so:libc.musl-x86_64.so.1', 'cmd:sh', 'libtool>=1.1'],
  replaces: ['oldtools', 'busybox<1.37'],
  replacesPriority: 5,
  files: [
    { path: 'usr/', dir: true },
    { path: 'usr/bin/', dir: true },
    { path: 'usr/bin/tool', content: 'tool binary', mode: 0o4755 },
    { path: 'usr/bin/tool-alias', hardlink: 'usr/bin/tool', mode: 0o4755 },
    { path: 'usr/bin/pinger', content: 'ping', mode: 0o755, xattrs: { 'user.vmimg': 'cap', 'security.test': 'x' } },
    { path: 'var/', dir: true },
    { path: 'var/lib/', dir: true },
    { path: 'var/lib/tools/', dir: true, mode: 0o750, uid: 100, gid: 101 },
    { path: 'var/lib/tools/state', content: 'state', uid: 100, gid: 101, mode: 0o640 },
    { path: 'dev/', dir: true },
    { path: 'dev/tooldev', device: { type: 'char', major: 10, minor: 200 }, mode: 0o660 },
  ],
};
const LIBTOOL = (v: string): ApkPackageSpec => ({ name: 'libtool', version: v, provides: [`so:libtool.so.1=${v}`], files: [{ path: 'usr/', dir: true }, { path: 'usr/lib/', dir: true }, { path: 'usr/lib/libtool.so.1', content: `libtool ${v}` }] });

async function repoWithBase(t: TestContext): Promise<{ r: ServedApkRepo; dir: string; cache: FetchCache }> {
  const dir = tempDir(t, 'repo');
  const r = await makeApkRepo(join(dir, 'www'), { packages: [TOOLS, LIBTOOL('1.1-r0'), LIBTOOL('1.2-r0')], minirootfs: { packages: [MUSL, BUSYBOX] } });
  t.after(() => r.close());
  return { r, dir, cache: new FetchCache(join(dir, 'cache')) };
}

async function bytesOf(e: RawEntry): Promise<string> {
  return e.content ? Buffer.from(await e.content.read(0, e.size)).toString() : '';
}

/** Everything observable about a layer, content included. */
async function describe(result: ApkInstallResult): Promise<string[]> {
  const out: string[] = [];
  for (const e of result.layer) {
    out.push([e.path.toString(), e.type, e.mode.toString(8), e.uid, e.gid, e.mtimeNs, e.size, e.symlinkTarget?.toString() ?? '', e.linkTarget?.toString() ?? '', e.rdev ? `${e.rdev.major}:${e.rdev.minor}` : '', [...e.xattrs].map(([k, v]) => `${k}=${v.toString()}`).join(','), await bytesOf(e)].join('|'));
  }
  return out;
}

test('the generated repository: each gzip member of an .apk and of APKINDEX.tar.gz passes gzip -t and tar -tzvf', async (t) => {
  const { r, dir } = await repoWithBase(t);
  if (!oracle(t, 'gzip') || !oracle(t, 'tar')) return;
  const files = [join(r.dir, 'alpine/v3.20/main/x86_64/APKINDEX.tar.gz'), join(r.dir, 'alpine/v3.20/main/x86_64/tools-2.0-r1.apk')];
  const expected = [
    [[`.SIGN.RSA.${r.repo.keyName}`], ['DESCRIPTION', 'APKINDEX']],
    [[`.SIGN.RSA.${r.repo.keyName}`], ['.PKGINFO'], ['usr/', 'usr/bin/', 'usr/bin/tool', 'usr/bin/tool-alias', 'usr/bin/pinger', 'var/', 'var/lib/', 'var/lib/tools/', 'var/lib/tools/state', 'dev/', 'dev/tooldev']],
  ];
  for (const [i, file] of files.entries()) {
    const members = splitGzipMembers(readFileSync(file), file, { maxMembers: 8, maxOutput: 1 << 24 });
    assert.equal(members.length, expected[i]!.length, file);
    for (const [j, m] of members.entries()) {
      const part = join(dir, `member-${i}-${j}.gz`);
      writeFileSync(part, readFileSync(file).subarray(m.start, m.end));
      assert.equal(run('gzip', ['-t', part]).status, 0, `gzip -t member ${j} of ${file}`);
      const listing = run('tar', ['-tzvf', part]);
      assert.equal(listing.status, 0, `tar -tzvf member ${j}: ${listing.stderr}`);
      const names = listing.stdout.split('\n').filter(Boolean).map((l) => l.split(/\s+/)[5]!);
      assert.deepEqual(names, expected[i]![j], `member ${j} of ${file}`);
    }
  }
  const minirootfs = run('tar', ['-tzf', r.minirootfs!.file]);
  assert.equal(minirootfs.status, 0);
  for (const p of ['lib/apk/db/installed', 'bin/busybox', 'bin/sh', `etc/apk/keys/${r.repo.keyName}`]) assert.ok(minirootfs.stdout.split('\n').includes(p), p);
});

test('install onto a generated minirootfs: base not repeated, links/devices/owners/xattrs kept, installed-db records as apk writes them', async (t) => {
  const { r, cache } = await repoWithBase(t);
  const base = await readTarFile(r.minirootfs!.file);
  t.after(() => base.close());
  const baseFile = async (p: string): Promise<Buffer> => Buffer.from(await bytesOf(base.entries.find((e) => e.path.toString() === p)!));
  const baseInstalled = await baseFile('lib/apk/db/installed');
  assert.deepEqual(baseInstalled, r.minirootfs!.installed);
  const result = await installApkPackages({
    repositories: [{ url: r.url }],
    keys: r.keys,
    packages: ['tools'],
    arch: 'x86_64',
    cache,
    baseInstalled,
    baseWorld: await baseFile('etc/apk/world'),
  });
  t.after(() => result.close());
  assert.deepEqual(result.installed.map((p) => `${p.name}-${p.version}`), ['libtool-1.2-r0', 'tools-2.0-r1'], 'musl and busybox come from the base; highest libtool');
  assert.deepEqual(result.warnings, [], 'no scripts in the new packages');
  const byPath = new Map(result.layer.map((e) => [e.path.toString(), e]));
  assert.equal(byPath.get('usr/bin/tool')!.mode, 0o4755);
  assert.equal(byPath.get('usr/bin/tool-alias')!.type, 'hardlink');
  assert.equal(byPath.get('usr/bin/tool-alias')!.linkTarget!.toString(), 'usr/bin/tool');
  assert.deepEqual(byPath.get('dev/tooldev')!.rdev, { major: 10, minor: 200 });
  assert.equal(byPath.get('var/lib/tools/state')!.uid, 100);
  assert.equal(byPath.get('usr/bin/pinger')!.xattrs.get('user.vmimg')?.toString(), 'cap');
  assert.ok(![...byPath.keys()].some((p) => p.includes('PaxHeader')), 'PAX headers are metadata, not files');

  const world = await bytesOf(byPath.get('etc/apk/world')!);
  assert.equal(world, 'busybox\nmusl\ntools\n');
  const db = await bytesOf(byPath.get('lib/apk/db/installed')!);
  assert.ok(db.startsWith(baseInstalled.toString()));
  const sha1 = (s: string): string => 'Q1' + createHash('sha1').update(s).digest('base64');
  const tools = r.repo.built.find((b) => b.spec.name === 'tools')!;
  const record = db.split('\n\n').find((x) => x.includes('\nP:tools\n'))!;
  const xsum = 'Q1' + createHash('sha1').update(Buffer.from('0000000d73656375726974792e7465737400000001780000000a757365722e766d696d6700000003636170', 'hex')).digest('base64');
  assert.equal(xattrChecksum(byPath.get('usr/bin/pinger')!.xattrs), xsum, 'xattrs hashed sorted by name, each u32be length + bytes');
  assert.equal(
    record,
    [
      `C:${tools.checksum}`, 'P:tools', 'V:2.0-r1', 'A:x86_64', `S:${tools.apk.length}`, 'I:4096', 'T:tools test package', 'U:https://example.invalid/', 'L:MIT', 'o:tools', 't:1700000000',
      'D:so:libc.musl-x86_64.so.1 cmd:sh libtool>=1.1',
      'r:oldtools busybox<1.37',
      'q:5',
      'F:usr', 'F:usr/bin',
      'R:tool', 'a:0:0:4755', `Z:${sha1('tool binary')}`,
      'R:tool-alias', 'a:0:0:4755', `Z:${sha1('tool binary')}`,
      'R:pinger', `a:0:0:755:${xsum}`, `Z:${sha1('ping')}`,
      'F:var', 'F:var/lib', 'F:var/lib/tools', 'M:100:101:750',
      'R:state', 'a:100:101:640', `Z:${sha1('state')}`,
      'F:dev', 'R:tooldev', 'a:0:0:660',
    ].join('\n'),
  );
  // Z: agrees with the PAX APK-TOOLS.checksum.SHA1 abuild wrote (hex → base64).
  assert.equal(`Z:${sha1('tool binary')}`, `Z:Q1${Buffer.from(createHash('sha1').update('tool binary').digest('hex'), 'hex').toString('base64')}`);
});

test('scripts are reported, never run; busybox gets its own hint', async (t) => {
  const dir = tempDir(t, 'scripts');
  const r = await makeApkRepo(join(dir, 'www'), { packages: [MUSL, BUSYBOX] });
  t.after(() => r.close());
  const result = await installApkPackages({ repositories: [{ url: r.url }], keys: r.keys, packages: ['cmd:sh'], arch: 'x86_64', cache: new FetchCache(join(dir, 'cache')) });
  t.after(() => result.close());
  assert.deepEqual(result.installed.map((p) => p.name), ['musl', 'busybox']);
  assert.deepEqual(result.scripts, ['busybox-1.36.1-r29: .post-install', 'busybox-1.36.1-r29: .trigger']);
  assert.equal(result.warnings.length, 1);
  assert.match(result.warnings[0]!, /^busybox-1.36.1-r29: .post-install, .trigger not run .*busybox --install -s/);
  assert.equal(await bytesOf(result.layer.find((e) => e.path.toString() === 'etc/apk/world')!), 'cmd:sh\n');
});

test('rebuild from the lock with the server stopped: no request, identical layer; a refused package changes nothing in the cache', async (t) => {
  const { r, dir, cache } = await repoWithBase(t);
  const req = { repositories: [{ url: r.url }], keys: r.keys, packages: ['tools', 'libtool<1.2'], arch: 'x86_64', cache, baseInstalled: r.minirootfs!.installed, baseWorld: r.minirootfs!.world, mtimeNs: 1_700_000_000_000_000_000n };
  const first = await installApkPackages(req);
  const want = await describe(first);
  await first.close();
  assert.deepEqual(first.installed.map((p) => `${p.name}-${p.version}`), ['libtool-1.1-r0', 'tools-2.0-r1']);
  const lock = new Map(first.installed.map((p) => [p.name, { version: p.version, checksum: p.checksum, sha256: p.sha256 }]));
  const indexes = new Map(first.indexes.map((i) => [i.url, i.sha256]));
  const seen = r.requests.length;
  await r.close();
  const again = await installApkPackages({ ...req, lock, indexes });
  assert.deepEqual(await describe(again), want);
  assert.deepEqual(again.installed, first.installed);
  await again.close();
  assert.equal(r.requests.length, seen);

  // A second server over the same files, with one package's data corrupted (size kept).
  const cacheBefore = readdirSync(join(cache.dir, 'sha256')).sort();
  const r2 = await makeApkRepo(join(dir, 'www2'), { packages: [MUSL, LIBTOOL('1.3-r0')] });
  t.after(() => r2.close());
  const apk = join(r2.dir, 'alpine/v3.20/main/x86_64/libtool-1.3-r0.apk');
  const bytes = readFileSync(apk);
  bytes[bytes.length - 30]! ^= 0x55;
  writeFileSync(apk, bytes);
  await assert.rejects(
    installApkPackages({ repositories: [{ url: r2.url }], keys: r2.keys, packages: ['libtool'], arch: 'x86_64', cache }),
    (e: unknown) => isVmimgError(e) && e.code === 'APK_CORRUPT_PACKAGE' && /libtool-1.3-r0.apk/.test(e.message),
  );
  const cacheAfter = readdirSync(join(cache.dir, 'sha256')).sort();
  // The index of the second repository was verified and cached; nothing else changed, nothing was removed.
  assert.deepEqual(cacheAfter.filter((f) => !cacheBefore.includes(f)).length, 1);
  for (const f of cacheBefore) assert.ok(cacheAfter.includes(f), `${f} still cached`);
});

test('FetchCache.putBytes: atomic, idempotent, replaces a corrupt entry; concurrent puts agree', async (t) => {
  const dir = tempDir(t, 'put');
  const cache = new FetchCache(join(dir, 'cache'));
  const bytes = Buffer.from('verified package bytes');
  const sha = createHash('sha256').update(bytes).digest('hex');
  const results = await Promise.all([cache.putBytes(bytes), cache.putBytes(bytes), cache.putBytes(bytes)]);
  assert.deepEqual(results, [sha, sha, sha]);
  assert.deepEqual(readFileSync(cache.pathFor(sha)), bytes);
  assert.deepEqual(readdirSync(join(dir, 'cache', 'partial')), [], 'no temporary file left');
  writeFileSync(cache.pathFor(sha), 'rotten');
  assert.equal(await cache.putBytes(bytes), sha);
  assert.deepEqual(readFileSync(cache.pathFor(sha)), bytes, 'a corrupt entry is replaced');
});

test('hostile packages and indexes: clean errors, nothing cached', async (t) => {
  const dir = tempDir(t, 'hostile');
  const scripts: Record<string, string> = {};
  for (let i = 0; i < 70; i++) scripts[`.x${i}`] = 'x';
  const r = await makeApkRepo(join(dir, 'www'), {
    packages: [
      { name: 'linker', version: '1-r0', files: [{ path: 'etc/', dir: true }, { path: 'etc/x', hardlink: '../../etc/shadow' }] },
      { name: 'many', version: '1-r0', scripts },
      { name: 'big', version: '1-r0', files: [{ path: 'big', content: Buffer.alloc(4096, 1) }] },
      { name: 'liar', version: '1-r0', files: [{ path: 'x', content: 'x' }] },
    ],
  });
  t.after(() => r.close());
  const cache = new FetchCache(join(dir, 'cache'));
  const req = (packages: string[]) => ({ repositories: [{ url: r.url }], keys: r.keys, packages, arch: 'x86_64', cache });
  const code = (c: string, re: RegExp) => (e: unknown) => isVmimgError(e) && e.code === c && re.test(e.fullMessage());
  await assert.rejects(installApkPackages(req(['linker'])), code('UNSAFE_PATH', /\.\./));
  await assert.rejects(installApkPackages(req(['many'])), code('APK_CORRUPT_PACKAGE', /more than 64 entries/));

  const arch = join(r.dir, 'alpine/v3.20/main/x86_64');
  const indexFile = join(arch, 'APKINDEX.tar.gz');
  const goodIndex = readFileSync(indexFile);
  // The index's S: smaller than the file: the download stops at S: bytes.
  const big = r.repo.built.find((b) => b.spec.name === 'big')!;
  writeFileSync(indexFile, await r.repo.index(r.repo.indexText().replace(`S:${big.apk.length}`, 'S:100')));
  await assert.rejects(installApkPackages(req(['big'])), code('FETCH_FAILED', /larger than 100 bytes/));
  // A truncated .apk (S: honest): refused by size before any parsing.
  writeFileSync(indexFile, goodIndex);
  writeFileSync(join(arch, 'big-1-r0.apk'), big.apk.subarray(0, big.apk.length - 10));
  await assert.rejects(installApkPackages(req(['big'])), code('APK_CORRUPT_PACKAGE', /is \d+ bytes, the index says \d+/));
  // Another package's file under this name, with the index pointing at its control section: .PKGINFO must agree.
  const liar = r.repo.built.find((b) => b.spec.name === 'liar')!;
  writeFileSync(join(arch, 'liar-1-r0.apk'), big.apk);
  writeFileSync(indexFile, await r.repo.index(r.repo.indexText().replace(liar.checksum, big.checksum).replace(`S:${liar.apk.length}`, `S:${big.apk.length}`)));
  await assert.rejects(installApkPackages(req(['liar'])), code('APK_CORRUPT_PACKAGE', /\.PKGINFO names big-1-r0, the index liar-1-r0/));
  // An index of five gzip members, and one with a bad C: field.
  writeFileSync(indexFile, Buffer.concat([goodIndex, goodIndex.subarray(goodIndex.length - 40), goodIndex]));
  await assert.rejects(installApkPackages(req(['big'])), (e: unknown) => isVmimgError(e) && ['APK_CORRUPT_INDEX', 'APK_BAD_SIGNATURE'].includes(e.code));
  writeFileSync(indexFile, Buffer.concat([goodIndex, goodIndex, goodIndex]));
  await assert.rejects(installApkPackages(req(['big'])), code('APK_CORRUPT_INDEX', /more than 4 gzip members/));
  writeFileSync(indexFile, await r.repo.index(r.repo.indexText().replace(big.checksum, 'Q1notbase64!')));
  await assert.rejects(installApkPackages(req(['big'])), code('APK_CORRUPT_INDEX', /field C of big is not Q1/));
  const cached = readdirSync(join(cache.dir, 'sha256'));
  assert.ok(!cached.includes(createHash('sha256').update(big.apk).digest('hex')) && !cached.includes(big.sha256), 'no refused package was cached');
});

test('scripts.tar and triggers: new scripts appended after the base entries; a hostile base tar is refused', async (t) => {
  const dir = tempDir(t, 'scriptsdb');
  const r = await makeApkRepo(join(dir, 'www'), {
    packages: [{ name: 'svc', version: '1-r0', scripts: { '.post-install': 'echo hi\n', '.trigger': 'echo t\n', '.notascript': 'x' }, triggers: ['/usr/lib/svc'] }],
  });
  t.after(() => r.close());
  const { tar: makeTar } = await import('../helpers/apk-repo.js');
  const base = await makeTar([{ header: { name: 'musl-1.2.5-r0.Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=.post-upgrade', size: 3, mode: 0o755 }, body: Buffer.from('x\n\n') }], false);
  const req = { repositories: [{ url: r.url }], keys: r.keys, packages: ['svc'], arch: 'x86_64', cache: new FetchCache(join(dir, 'cache')), baseInstalled: Buffer.from(''), baseScripts: base, baseTriggers: Buffer.from('Q1BBBBBBBBBBBBBBBBBBBBBBBBBBB= /usr/share/x') };
  const result = await installApkPackages(req);
  t.after(() => result.close());
  const file = async (p: string): Promise<Buffer> => {
    const e = result.layer.find((x) => x.path.toString() === p)!;
    return Buffer.from(await e.content!.read(0, e.size));
  };
  const svc = r.repo.built[0]!;
  writeFileSync(join(dir, 'scripts.tar'), await file('lib/apk/db/scripts.tar'));
  if (oracle(t, 'tar')) {
    const names = run('tar', ['-tf', join(dir, 'scripts.tar')]).stdout.split('\n').filter(Boolean);
    assert.deepEqual(names, ['musl-1.2.5-r0.Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=.post-upgrade', `svc-1-r0.${svc.checksum}.post-install`, `svc-1-r0.${svc.checksum}.trigger`]);
    assert.equal(run('tar', ['-xOf', join(dir, 'scripts.tar'), `svc-1-r0.${svc.checksum}.trigger`]).stdout, 'echo t\n');
  }
  assert.equal((await file('lib/apk/db/triggers')).toString(), `Q1BBBBBBBBBBBBBBBBBBBBBBBBBBB= /usr/share/x\n${svc.checksum} /usr/lib/svc\n`);
  // Without the base's scripts.tar (but with a base db): left alone, with a warning.
  const noBase = await installApkPackages({ ...req, baseScripts: undefined, baseTriggers: undefined });
  t.after(() => noBase.close());
  assert.ok(!noBase.layer.some((e) => e.path.toString() === 'lib/apk/db/scripts.tar'));
  assert.equal(noBase.warnings.filter((w) => /scripts.tar of the base was not given|triggers of the base was not given/.test(w)).length, 2);
  const hostile = Buffer.from(base);
  hostile.write('77777777777', 124, 'latin1'); // size field far past the end
  await assert.rejects(installApkPackages({ ...req, baseScripts: hostile }), (e: unknown) => isVmimgError(e) && e.code === 'APK_CORRUPT_PACKAGE' && /runs past the end/.test(e.message));
});

test('two installs at once on one cache: same result, every .apk fetched and cached intact', async (t) => {
  const { r, cache } = await repoWithBase(t);
  const req = { repositories: [{ url: r.url }], keys: r.keys, packages: ['tools'], arch: 'x86_64', cache, baseInstalled: r.minirootfs!.installed, mtimeNs: 1n };
  const [a, b] = await Promise.all([installApkPackages(req), installApkPackages(req)]);
  t.after(() => Promise.all([a.close(), b.close()]));
  assert.deepEqual(await describe(a), await describe(b));
  for (const p of a.installed) assert.ok(await cache.lookup(p.sha256), `${p.name} cached and intact`);
  assert.deepEqual(readdirSync(join(cache.dir, 'partial')), [], 'no temporary file left');
});
