/**
 * Rootless apk installation against a generated, signed Alpine-style repository served on
 * loopback (test/helpers/apk-repo.ts): version ordering, constraints, the verification chain
 * (index signature → control SHA1 → data SHA256), the resolver, the installed database, lock
 * pins with no network, and hostile inputs. GNU tar and gzip judge the generated files' layout.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { parseDep } from '../../src/rootfs/apk/deps.js';
import { splitGzipMembers } from '../../src/rootfs/apk/gzip.js';
import { installApkPackages, type ApkInstallRequest, type ApkInstallResult } from '../../src/rootfs/apk/index.js';
import { compareVersions, isValidVersion, operatorMask, versionMatches } from '../../src/rootfs/apk/version.js';
import { FetchCache } from '../../src/rootfs/fetch/cache.js';
import { isVmimgError } from '../../src/util/errors.js';
import { serve, type Fixture } from '../fetch/server.js';
import { ApkRepo, type ApkPackageSpec, MUSL } from '../helpers/apk-repo.js';
import { oracle, run } from '../helpers/oracle.js';

test('version ordering follows apk: numbers, leading zeros, letters, suffixes, revisions', () => {
  const ascending = [
    '0.9', '1.0_alpha', '1.0_alpha2', '1.0_beta', '1.0_pre1', '1.0_rc1', '1.0', '1.0-r1', '1.0_cvs', '1.0_git20240101',
    '1.0_p1', '1.0a', '1.0.0', '1.0.1', '1.01', '1.1', '1.2.9', '1.2.10', '1.10', '2', '10.0',
  ];
  for (let i = 0; i < ascending.length; i++) {
    for (let j = 0; j < ascending.length; j++) {
      const want = i < j ? -1 : i > j ? 1 : 0;
      assert.equal(compareVersions(ascending[i]!, ascending[j]!), want, `${ascending[i]} vs ${ascending[j]}`);
    }
  }
  assert.equal(compareVersions('1.0.05', '1.0.5'), -1, 'a leading zero compares as a string');
  assert.equal(compareVersions('3.12.7-r0', '3.12.7-r1'), -1);
  assert.equal(compareVersions('1.2~abc1-r0', '1.2-r0'), 1, 'a commit hash outranks a bare revision (token order)');
  for (const v of ['1', '1.2.3', '1.2a', '1.2_rc1_p2', '1.2_p1~deadbeef-r3', '20240101']) assert.ok(isValidVersion(v), v);
  for (const v of ['', 'a1', '1..2', '1.2-3', '1.2_foo', '1.2-r', '1.2ab', '_rc1', '1.2-r1_p1']) assert.ok(!isValidVersion(v), v);
  const match = (v: string, op: string, w: string): boolean => versionMatches(v, operatorMask(op)!, w);
  assert.ok(match('3.6.9', '~', '3.6'));
  assert.ok(!match('3.7', '~', '3.6'));
  assert.ok(match('3.12.7-r0', '>=', '3.12'));
  assert.ok(!match('3.11.9', '>=', '3.12'));
  assert.ok(match('1.0', '<', '1.0.1'));
  assert.ok(match('2.0-r1', '=', '2.0-r1'));
});

test('dependency atoms: names, virtuals, operators; bad atoms and tags are refused', () => {
  assert.deepEqual(parseDep('so:libc.musl-x86_64.so.1', 'x'), { name: 'so:libc.musl-x86_64.so.1', conflict: false, text: 'so:libc.musl-x86_64.so.1' });
  const d = parseDep('python3>=3.12', 'x');
  assert.equal(d.name, 'python3');
  assert.equal(d.version, '3.12');
  assert.ok(parseDep('!busybox-extras', 'x').conflict);
  assert.equal(parseDep('cmd:sh=1.36', 'x').name, 'cmd:sh');
  assert.throws(() => parseDep('python3>>3', 'x'), /unknown operator '>>'/);
  assert.throws(() => parseDep('python3>=3..1', 'x'), /bad version/);
  assert.throws(() => parseDep('python3@edge', 'x'), (e: unknown) => isVmimgError(e) && e.code === 'UNSUPPORTED_OPTION');
  assert.throws(() => parseDep('', 'x'), (e: unknown) => isVmimgError(e) && e.code === 'APK_CORRUPT_INDEX');
});

test('gzip members: boundaries of a file concatenated by the gzip tool; generated .apk readable by GNU tar', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmimg-apk-gz-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  if (!oracle(t, 'gzip') || !oracle(t, 'tar')) return;
  writeFileSync(join(dir, 'a'), 'first member\n'.repeat(50));
  writeFileSync(join(dir, 'b'), 'second\n');
  run('sh', ['-c', `gzip -c '${join(dir, 'a')}' > '${join(dir, 'ab.gz')}'; gzip -nc '${join(dir, 'b')}' >> '${join(dir, 'ab.gz')}'`]);
  const file = readFileSync(join(dir, 'ab.gz'));
  const members = splitGzipMembers(file, 'ab.gz', { maxMembers: 4, maxOutput: 1 << 20 });
  assert.deepEqual(members.map((m) => m.data.toString()), ['first member\n'.repeat(50), 'second\n']);
  assert.equal(members[1]!.end, file.length);
  assert.throws(() => splitGzipMembers(file, 'ab.gz', { maxMembers: 1, maxOutput: 1 << 20 }), /more than 1 gzip members/);
  assert.throws(() => splitGzipMembers(file, 'ab.gz', { maxMembers: 4, maxOutput: 100 }), (e: unknown) => isVmimgError(e) && e.code === 'APK_CORRUPT_PACKAGE');
  const flipped = Buffer.from(file);
  flipped[members[0]!.end - 6]! ^= 0xff; // CRC of member 1
  assert.throws(() => splitGzipMembers(flipped, 'x.gz', { maxMembers: 4, maxOutput: 1 << 20 }), /CRC or length mismatch/);

  const repo = new ApkRepo('k.rsa.pub');
  const built = await repo.add({ name: 'hello', version: '1.0-r0', files: [{ path: 'usr/', dir: true }, { path: 'usr/bin/', dir: true }, { path: 'usr/bin/hello', content: 'hi', mode: 0o755 }] });
  writeFileSync(join(dir, 'hello.apk'), built.apk);
  assert.equal(run('gzip', ['-t', join(dir, 'hello.apk')]).status, 0);
  const listing = run('tar', ['-tzf', join(dir, 'hello.apk')]).stdout.split('\n').filter(Boolean);
  assert.deepEqual(listing, ['.SIGN.RSA.k.rsa.pub', '.PKGINFO', 'usr/', 'usr/bin/', 'usr/bin/hello'], 'one tar stream over three gzip members, as apk-v2(5) describes');
});


function python(version: string, extra: Partial<ApkPackageSpec> = {}): ApkPackageSpec {
  return {
    name: 'python3',
    version,
    depends: ['so:libc.musl-x86_64.so.1', 'pyc'],
    provides: [`cmd:python3=${version}`],
    files: [{ path: 'usr/', dir: true }, { path: 'usr/bin/', dir: true }, { path: 'usr/bin/python3.12', content: `python ${version}`, mode: 0o755 }, { path: 'usr/bin/python3', symlink: 'python3.12' }],
    scripts: { '.post-install': '#!/bin/sh\necho hi\n' },
    ...extra,
  };
}

interface Served {
  fx: Fixture;
  repo: ApkRepo;
  url: string;
  cache: FetchCache;
  request(packages: string[], extra?: Partial<ApkInstallRequest>): ApkInstallRequest;
}

async function served(t: TestContext, specs: ApkPackageSpec[], keyName = 'test@example-1.rsa.pub'): Promise<Served> {
  const repo = new ApkRepo(keyName);
  for (const s of specs) await repo.add(s);
  const fx = await serve(t);
  for (const [path, body] of await repo.files('/alpine/v3.20/main')) fx.routes.set(path, { body });
  const dir = mkdtempSync(join(tmpdir(), 'vmimg-apk-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const url = `${fx.base}/alpine/v3.20/main`;
  const cache = new FetchCache(join(dir, 'cache'));
  return {
    fx,
    repo,
    url,
    cache,
    request: (packages, extra = {}) => ({ repositories: [{ url }], keys: repo.keys, packages, arch: 'x86_64', cache, ...extra }),
  };
}

async function fileText(r: ApkInstallResult, path: string): Promise<string> {
  const e = r.layer.find((x) => x.path.toString() === path);
  assert.ok(e?.content, `${path} in the layer`);
  return Buffer.from(await e.content.read(0, e.size)).toString();
}

function rejectsWith(code: string, re: RegExp): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(isVmimgError(e), String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.fullMessage(), re);
    return true;
  };
}

test('install: resolves depends through so: and versioned provides and a prioritised virtual, dependencies first; writes the apk database', async (t) => {
  const s = await served(t, [
    MUSL,
    python('3.12.7-r0'),
    python('3.11.9-r0'),
    { name: 'python3-pyc', version: '3.12.7-r0', provides: ['pyc'], providerPriority: 10 },
    { name: 'python3-pycache-alt', version: '1.0-r0', provides: ['pyc'], providerPriority: 1 },
  ]);
  const base = Buffer.from('C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:busybox\nV:1.36.1-r29\nA:x86_64\np:cmd:sh=1.36.1-r29\nF:bin\nR:busybox\n\n');
  const r = await installApkPackages(s.request(['python3'], { baseInstalled: base, baseWorld: Buffer.from('busybox\nalpine-baselayout\n'), mtimeNs: 1_700_000_000_000_000_000n }));
  t.after(() => r.close());
  assert.deepEqual(r.installed.map((p) => `${p.name}-${p.version}`), ['musl-1.2.5-r0', 'python3-pyc-3.12.7-r0', 'python3-3.12.7-r0']);
  assert.deepEqual(r.scripts, ['python3-3.12.7-r0: .post-install']);
  assert.equal(r.indexes.length, 1);
  assert.equal(r.indexes[0]!.url, s.url);
  const python3 = s.repo.built.find((b) => b.spec.name === 'python3' && b.spec.version === '3.12.7-r0')!;
  assert.equal(r.installed[2]!.sha256, python3.sha256);
  assert.equal(r.installed[2]!.checksum, python3.checksum);
  assert.ok(await s.cache.lookup(python3.sha256), 'the verified .apk is in the cache under its SHA256');

  const paths = r.layer.map((e) => `${e.type} ${e.path.toString()}`);
  for (const p of ['file lib/ld-musl-x86_64.so.1', 'symlink lib/libc.musl-x86_64.so.1', 'file usr/bin/python3.12', 'symlink usr/bin/python3', 'file lib/apk/db/installed', 'file etc/apk/world', 'file etc/apk/repositories', 'file etc/apk/keys/test@example-1.rsa.pub']) {
    assert.ok(paths.includes(p), `${p} in ${paths.join(', ')}`);
  }
  assert.equal(await fileText(r, 'usr/bin/python3.12'), 'python 3.12.7-r0');
  assert.equal(await fileText(r, 'etc/apk/world'), 'alpine-baselayout\nbusybox\npython3\n');
  assert.equal(await fileText(r, 'etc/apk/repositories'), `${s.url}\n`);
  const db = await fileText(r, 'lib/apk/db/installed');
  assert.ok(db.startsWith(base.toString()), 'the base records come first, unchanged');
  const record = db.split('\n\n').find((x) => x.includes('P:python3\n'))!;
  assert.equal(
    record,
    [
      `C:${python3.checksum}`,
      'P:python3',
      'V:3.12.7-r0',
      'A:x86_64',
      `S:${python3.apk.length}`,
      'I:4096',
      'T:python3 test package',
      'U:https://example.invalid/',
      'L:MIT',
      'o:python3',
      't:1700000000',
      'D:so:libc.musl-x86_64.so.1 pyc',
      'p:cmd:python3=3.12.7-r0',
      'F:usr',
      'F:usr/bin',
      'R:python3.12',
      'a:0:0:755',
      `Z:${'Q1' + createHash('sha1').update('python 3.12.7-r0').digest('base64')}`,
      'R:python3',
      'a:0:0:777',
      `Z:${'Q1' + createHash('sha1').update('python3.12').digest('base64')}`,
    ].join('\n'),
  );
  const dbEntry = r.layer.find((e) => e.path.toString() === 'lib/apk/db/installed')!;
  assert.equal(dbEntry.mtimeNs, 1_700_000_000_000_000_000n);

  // Already satisfied by the base: nothing to install. A version constraint picks the older one.
  const none = await installApkPackages(s.request(['cmd:sh'], { baseInstalled: base }));
  assert.deepEqual(none.installed, []);
  await none.close();
  const older = await installApkPackages(s.request(['python3<3.12']));
  assert.deepEqual(older.installed.map((p) => `${p.name}-${p.version}`), ['musl-1.2.5-r0', 'python3-pyc-3.12.7-r0', 'python3-3.11.9-r0']);
  await older.close();
});

test('resolver refusals: unknown package, unsatisfiable version, conflicting choices, conflicts', async (t) => {
  const s = await served(t, [
    MUSL,
    python('3.12.7-r0'),
    { name: 'python3-pyc', version: '3.12.7-r0', provides: ['pyc'], providerPriority: 10 },
    { name: 'needs-new', version: '1-r0', depends: ['python3>=3.13'] },
    { name: 'tool', version: '1-r0', depends: ['python3', 'needs-new'] },
    { name: 'hates-musl', version: '1-r0', depends: ['!musl'] },
    { name: 'virt-a', version: '1-r0', provides: ['editor'] },
    { name: 'virt-b', version: '1-r0', provides: ['editor'] },
  ]);
  await assert.rejects(installApkPackages(s.request(['nosuchpkg'])), rejectsWith('APK_UNKNOWN_PACKAGE', /no package provides 'nosuchpkg'/));
  await assert.rejects(installApkPackages(s.request(['python3>=4'])), rejectsWith('APK_UNSATISFIABLE', /'python3>=4' cannot be satisfied \(available: 3.12.7-r0\)/));
  await assert.rejects(installApkPackages(s.request(['tool'])), rejectsWith('APK_UNSATISFIABLE', /'python3>=3.13' \(required by tool-1-r0 → needs-new-1-r0\)/));
  await assert.rejects(installApkPackages(s.request(['python3', 'hates-musl'])), rejectsWith('APK_UNSATISFIABLE', /'so:libc.musl-x86_64.so.1' \(required by python3-3.12.7-r0\) cannot be satisfied; also required: '!musl' \(required by hates-musl-1-r0\)/));
  await assert.rejects(installApkPackages(s.request(['editor'])), rejectsWith('APK_UNSATISFIABLE', /'editor' is a virtual provided by virt-a, virt-b without a provider priority: list one of them explicitly/), 'two unversioned providers without priority: the user must choose');
  const chosen = await installApkPackages(s.request(['virt-b', 'editor']));
  assert.deepEqual(chosen.installed.map((p) => p.name), ['virt-b'], 'a listed provider satisfies the virtual');
  await chosen.close();
});

test('verification chain: untrusted key, bad signature, unsigned index, checksum and datahash mismatches', async (t) => {
  const s = await served(t, [MUSL, { name: 'plain', version: '1-r0', files: [{ path: 'etc/', dir: true }, { path: 'etc/plain', content: 'x' }] }]);
  await assert.rejects(installApkPackages(s.request(['plain'], { keys: new Map([['other.rsa.pub', s.repo.publicPem]]) })), rejectsWith('APK_UNTRUSTED_KEY', /signed by 'test@example-1.rsa.pub', which is not among the trusted keys \(other.rsa.pub\)/));
  // The same key name, another key: the signature must not verify.
  const impostor = new ApkRepo('test@example-1.rsa.pub');
  await assert.rejects(installApkPackages(s.request(['plain'], { keys: impostor.keys })), rejectsWith('APK_BAD_SIGNATURE', /signature by 'test@example-1.rsa.pub' does not verify/));
  const indexPath = '/alpine/v3.20/main/x86_64/APKINDEX.tar.gz';
  const good = (s.fx.routes.get(indexPath) as { body: Buffer }).body;
  const tampered = Buffer.from(good);
  tampered[tampered.length - 20]! ^= 1;
  s.fx.routes.set(indexPath, { body: tampered });
  await assert.rejects(installApkPackages(s.request(['plain'])), (e: unknown) => isVmimgError(e) && ['APK_BAD_SIGNATURE', 'APK_CORRUPT_INDEX'].includes(e.code));
  s.fx.routes.set(indexPath, { body: gzipSync(Buffer.alloc(1024)) });
  await assert.rejects(installApkPackages(s.request(['plain'])), rejectsWith('APK_UNTRUSTED_KEY', /is not signed/));
  s.fx.routes.set(indexPath, { body: good });

  // An index whose C: does not match the package's control section.
  const plain = s.repo.built.find((b) => b.spec.name === 'plain')!;
  const wrongC = s.repo.indexText().replace(plain.checksum, 'Q1' + Buffer.alloc(20, 7).toString('base64'));
  s.fx.routes.set(indexPath, { body: await s.repo.index(wrongC) });
  await assert.rejects(installApkPackages(s.request(['plain'])), rejectsWith('APK_CORRUPT_PACKAGE', /control checksum Q1\S+ does not match the index/));
  s.fx.routes.set(indexPath, { body: good });

  // The package's data section swapped for another (control and index intact): datahash catches it.
  const apkPath = '/alpine/v3.20/main/x86_64/plain-1-r0.apk';
  const musl = s.repo.built.find((b) => b.spec.name === 'musl')!;
  const controlEnd = plain.apk.indexOf(plain.control) + plain.control.length;
  const muslData = musl.apk.subarray(musl.apk.indexOf(musl.control) + musl.control.length);
  s.fx.routes.set(apkPath, { body: Buffer.concat([plain.apk.subarray(0, controlEnd), muslData]) });
  const sizeFixed = s.repo.indexText().replace(`S:${plain.apk.length}`, `S:${controlEnd + muslData.length}`);
  s.fx.routes.set(indexPath, { body: await s.repo.index(sizeFixed) });
  await assert.rejects(installApkPackages(s.request(['plain'])), rejectsWith('APK_CORRUPT_PACKAGE', /data section SHA256 \w+ does not match .PKGINFO datahash/));
  assert.equal(await s.cache.lookup(createHash('sha256').update(Buffer.concat([plain.apk.subarray(0, controlEnd), muslData])).digest('hex')), undefined, 'a refused package is not cached');
});

test('lock pins: the same versions and bytes again with the server gone; a pin the index lacks is refused', async (t) => {
  const s = await served(t, [MUSL, python('3.12.7-r0'), python('3.11.9-r0'), { name: 'python3-pyc', version: '3.12.7-r0', provides: ['pyc'], providerPriority: 10 }]);
  const first = await installApkPackages(s.request(['python3<3.12']));
  const lock = new Map(first.installed.map((p) => [p.name, { version: p.version, checksum: p.checksum, sha256: p.sha256 }]));
  const indexes = new Map(first.indexes.map((i) => [i.url, i.sha256]));
  const dbBefore = await fileText(first, 'lib/apk/db/installed');
  await first.close();
  s.fx.routes.clear();
  const requests = s.fx.log.length;
  const again = await installApkPackages(s.request(['python3'], { lock, indexes }));
  assert.equal(s.fx.log.length, requests, 'no request at all: index and packages came from the cache');
  assert.deepEqual(again.installed.map((p) => `${p.name}-${p.version}`), ['musl-1.2.5-r0', 'python3-pyc-3.12.7-r0', 'python3-3.11.9-r0'], 'the lock wins over the newest version');
  assert.equal(await fileText(again, 'lib/apk/db/installed'), dbBefore);
  await again.close();
  for (const [path, body] of await s.repo.files('/alpine/v3.20/main')) s.fx.routes.set(path, { body });
  const stale = new Map(lock);
  stale.set('python3', { version: '3.10.0-r0', checksum: 'Q1x', sha256: 'ab'.repeat(32) });
  await assert.rejects(installApkPackages(s.request(['python3'], { lock: stale })), rejectsWith('APK_UNSATISFIABLE', /the lock pins python3 3.10.0-r0/));
});

test('hostile repositories: path traversal in a package, absurd index fields, unverifiable packages', async (t) => {
  const s = await served(t, [
    { name: 'evil', version: '1-r0', files: [{ path: '../../etc/passwd', content: 'root::0:0::/:/bin/sh' }] },
    { name: 'nohash', version: '1-r0', noDatahash: true, files: [{ path: 'etc/x', content: 'x' }] },
  ]);
  await assert.rejects(installApkPackages(s.request(['evil'])), (e: unknown) => isVmimgError(e) && e.code === 'UNSAFE_PATH' && /\.\./.test(e.fullMessage()));
  await assert.rejects(installApkPackages(s.request(['nohash'])), rejectsWith('APK_CORRUPT_PACKAGE', /has no datahash/));
  const indexPath = '/alpine/v3.20/main/x86_64/APKINDEX.tar.gz';
  for (const [text, re] of [
    ['P:a\nV:1-r0\nS:99999999999999999999\n\n', /field S is not a number/],
    ['P:a\nV:not a version\n\n', /invalid version 'not a version'/],
    ['P:a\n', /missing P: or V:/],
    ['garbage line\n', /not 'K:value'/],
    [`P:a\nV:1\nD:${'x'.repeat(70000)}\n\n`, /longer than 65536 bytes/],
  ] as const) {
    s.fx.routes.set(indexPath, { body: await s.repo.index(text === 'P:a\n' ? 'V:1\n\n' : text) });
    await assert.rejects(installApkPackages(s.request(['a'])), rejectsWith('APK_CORRUPT_INDEX', re), text.slice(0, 30));
  }
});
