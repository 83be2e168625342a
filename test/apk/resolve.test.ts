/**
 * The resolver on synthetic indexes (no network): constraint learning with restarts makes the
 * result independent of the order of the world, cycles end, base packages satisfy atoms,
 * provider priority, and refusals name the atom, the chain that asked for it and the
 * constraints it clashed with.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseIndexText, type IndexPackage } from '../../src/rootfs/apk/apkindex.js';
import { parseDeps } from '../../src/rootfs/apk/deps.js';
import { resolvePackages } from '../../src/rootfs/apk/resolve.js';
import { isVmimgError } from '../../src/util/errors.js';

const C = 'C:Q1' + 'A'.repeat(27) + '=';

/** Index text from "name version [D:deps] [p:provides] [k:prio]" lines. */
function index(...lines: string[]): IndexPackage[] {
  const text = lines
    .map((l) => {
      const [name, version, ...rest] = l.split(' ');
      const fields = rest.join(' ').split('|').map((f) => f.trim()).filter(Boolean);
      return [C, `P:${name}`, `V:${version}`, 'A:x86_64', ...fields].join('\n') + '\n';
    })
    .join('\n');
  return parseIndexText(text, 'http://repo.invalid/main', 'test index');
}

function names(pkgs: IndexPackage[]): string[] {
  return pkgs.map((p) => `${p.name}-${p.version}`);
}

function refuses(code: string, re: RegExp): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(isVmimgError(e), String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.message, re);
    return true;
  };
}

const REPO = index(
  'zlib 1.2.13-r0 | p:so:libz.so.1=1.2.13',
  'zlib 1.3.1-r0 | p:so:libz.so.1=1.3.1',
  'app 1.0-r0 | D:so:libz.so.1 zlib',
  'strict 1.0-r0 | D:zlib>=1.3',
  'cyc-a 1-r0 | D:cyc-b',
  'cyc-b 1-r0 | D:cyc-a zlib',
  'sh-a 1-r0 | p:cmd:sh | k:10',
  'sh-b 1-r0 | p:cmd:sh | k:20',
  'busybox 1.36-r0 | p:cmd:sh=1.36',
);

test('world order does not matter: a later world atom restricts an earlier choice (restart)', () => {
  for (const world of [['app', 'zlib<1.3'], ['zlib<1.3', 'app'], ['so:libz.so.1<1.3', 'app'], ['app', 'so:libz.so.1<1.3']]) {
    assert.deepEqual(names(resolvePackages({ world: parseDeps(world.join(' '), 'w'), installed: [], available: REPO })), ['zlib-1.2.13-r0', 'app-1.0-r0'], world.join(' '));
  }
  assert.deepEqual(names(resolvePackages({ world: parseDeps('app', 'w'), installed: [], available: REPO })), ['zlib-1.3.1-r0', 'app-1.0-r0'], 'newest by default');
});

test('refusals name the atom, its chain and the clashing constraint', () => {
  assert.throws(() => resolvePackages({ world: parseDeps('strict zlib<1.3', 'w'), installed: [], available: REPO }), refuses('APK_UNSATISFIABLE', /'zlib>=1.3' \(required by strict-1.0-r0\) cannot be satisfied \(available: 1.2.13-r0, 1.3.1-r0\); also required: 'zlib<1.3'/));
  assert.throws(() => resolvePackages({ world: parseDeps('app nope', 'w'), installed: [], available: REPO }), refuses('APK_UNKNOWN_PACKAGE', /no package provides 'nope'/));
  assert.throws(() => resolvePackages({ world: parseDeps('app !zlib', 'w'), installed: [], available: REPO }), refuses('APK_UNSATISFIABLE', /'so:libz.so.1' \(required by app-1.0-r0\) cannot be satisfied; also required: '!zlib'/));
});

test('cycles end; dependencies come first; providers by priority; the base satisfies atoms', () => {
  assert.deepEqual(names(resolvePackages({ world: parseDeps('cyc-a', 'w'), installed: [], available: REPO })), ['zlib-1.3.1-r0', 'cyc-b-1-r0', 'cyc-a-1-r0']);
  assert.deepEqual(names(resolvePackages({ world: parseDeps('cmd:sh', 'w'), installed: [], available: REPO })), ['busybox-1.36-r0'], 'a versioned provide wins over unversioned ones');
  const noBusybox = REPO.filter((p) => p.name !== 'busybox');
  assert.deepEqual(names(resolvePackages({ world: parseDeps('cmd:sh', 'w'), installed: [], available: noBusybox })), ['sh-b-1-r0'], 'highest provider_priority');
  const installed = [{ name: 'zlib', version: '1.2.13-r0', provides: [{ name: 'so:libz.so.1', version: '1.2.13' }] }];
  assert.deepEqual(names(resolvePackages({ world: parseDeps('app', 'w'), installed, available: REPO })), ['app-1.0-r0'], 'the base zlib is kept');
  assert.throws(
    () => resolvePackages({ world: parseDeps('strict', 'w'), installed, available: REPO }),
    refuses('APK_UNSATISFIABLE', /'zlib>=1.3' \(required by strict-1.0-r0\) needs zlib-1.3.1-r0, but the base has zlib-1.2.13-r0 installed and vmimg does not upgrade base packages/),
  );
  const pins = new Map([['zlib', { version: '1.2.13-r0', checksum: '' }]]);
  assert.deepEqual(names(resolvePackages({ world: parseDeps('app', 'w'), installed: [], available: REPO, pins })), ['zlib-1.2.13-r0', 'app-1.0-r0'], 'a lock pin');
});

test('backtracking: another version of the requirer when its dependencies clash; a conflict picks an older version', () => {
  const repo = index(
    'web 2 | D:tls core',
    'web 3 | D:tls core db>1.5',
    'tls 1 | D:core db<2.0',
    'core 1 | D:db>1.0',
    'db 1.0',
    'db 1.5',
    'db 2.0',
    'old-friend 1 | D:!tls>1',
    'tls 2 | D:core',
  );
  // web-3 needs db>1.5 and (through tls-1) db<2.0: no db fits, so web-2 (apk picks the same).
  const noTls2 = repo.filter((p) => !(p.name === 'tls' && p.version === '2'));
  assert.deepEqual(names(resolvePackages({ world: parseDeps('web', 'w'), installed: [], available: noTls2 })), ['db-1.5', 'core-1', 'tls-1', 'web-2']);
  // old-friend conflicts with tls>1: tls-1 is chosen instead of the newest.
  assert.deepEqual(names(resolvePackages({ world: parseDeps('old-friend tls', 'w'), installed: [], available: repo })).sort(), ['core-1', 'db-1.5', 'old-friend-1', 'tls-1'].sort());
});

test('a later decision is undone first: the provider version that clashes with an earlier requirement is banned', () => {
  const repo = index('base-ui 1 | D:gtk>9000', 'gtk-dev 9000.4 | D:gtk=9000.4 | p:pc:gtk=4', 'gtk-dev 5 | D:gtk=5 | p:pc:gtk=5', 'gtk 9000.4', 'gtk 5');
  assert.deepEqual(names(resolvePackages({ world: parseDeps('base-ui pc:gtk', 'w'), installed: [], available: repo })), ['gtk-9000.4', 'base-ui-1', 'gtk-dev-9000.4']);
});

test('names held by one package: versioned provides are exclusive, a package may not provide its own name or one name twice', () => {
  const repo = index('server-a 1 | p:service=1', 'server-b 1 | p:service=2', 'selfish 1 | p:selfish', 'twice 1 | p:thing=2 | p:thing=3', 'multi 1 | p:one=1 | p:two=1');
  assert.throws(() => resolvePackages({ world: parseDeps('server-a server-b', 'w'), installed: [], available: repo }), refuses('APK_UNSATISFIABLE', /server-b-1 and server-a-1 both provide 'service'/));
  assert.throws(() => resolvePackages({ world: parseDeps('selfish', 'w'), installed: [], available: repo }), refuses('APK_UNSATISFIABLE', /selfish-1 provides 'selfish' more than once \(or its own name\)/));
  assert.throws(() => resolvePackages({ world: parseDeps('twice', 'w'), installed: [], available: repo }), refuses('APK_UNSATISFIABLE', /provides 'thing' more than once/));
  const installed = [{ name: 'server-a', version: '1', provides: [{ name: 'service', version: '1' }] }];
  assert.throws(() => resolvePackages({ world: parseDeps('server-b', 'w'), installed, available: repo }), refuses('APK_UNSATISFIABLE', /both provide 'service'/), 'the base holds the name');
  assert.deepEqual(repo.find((p) => p.name === 'multi')!.provides, [{ name: 'one', version: '1' }, { name: 'two', version: '1' }], 'repeated p: lines accumulate');
  assert.deepEqual(names(resolvePackages({ world: parseDeps('two', 'w'), installed: [], available: repo })), ['multi-1']);
});

test('unversioned virtuals need a provider priority even with one provider; install_if adds packages whose triggers are all present', () => {
  const repo = index('scanner 1 | p:scan-backend', 'app 1 | D:lib', 'lib 1', 'foo 1', 'app-foo 1 | D:app | i:app foo', 'app-bar 1 | i:app bar', 'app-nofoo 1 | i:app !foo');
  assert.throws(() => resolvePackages({ world: parseDeps('scan-backend', 'w'), installed: [], available: repo }), refuses('APK_UNSATISFIABLE', /'scan-backend' is a virtual provided by scanner without a provider priority/));
  assert.deepEqual(names(resolvePackages({ world: parseDeps('foo app', 'w'), installed: [], available: repo })), ['lib-1', 'app-1', 'foo-1', 'app-foo-1']);
  assert.deepEqual(names(resolvePackages({ world: parseDeps('app', 'w'), installed: [], available: repo })), ['lib-1', 'app-1', 'app-nofoo-1']);
  const installed = [{ name: 'foo', version: '1', provides: [] }];
  assert.deepEqual(names(resolvePackages({ world: parseDeps('app', 'w'), installed, available: repo })), ['lib-1', 'app-1', 'app-foo-1'], 'a base package triggers too');
});

test('real-world names: provides like /bin/sh and libstdc++ parse; a package name that could leave the repository path is refused', () => {
  const db = [
    'C:Q1' + 'B'.repeat(27) + '=', 'P:busybox', 'V:1.33.1-r3', 'A:x86_64', 'p:/bin/sh cmd:busybox cmd:sh', 'F:bin', 'R:busybox', 'a:0:0:755', 'Z:Q1' + 'C'.repeat(27) + '=', '',
    'C:Q1' + 'D'.repeat(27) + '=', 'P:libstdc++', 'V:10.3.1_git20210424-r2', 'A:x86_64', 'D:so:libc.musl-x86_64.so.1', 'p:so:libstdc++.so.6=6.0.28', '',
    'C:Q1' + 'E'.repeat(27) + '=', 'P:alpine-baselayout', 'V:3.2.0-r16', 'D:/bin/sh so:libc.musl-x86_64.so.1', 'r:alpine-base', 'F:etc', 'R:fstab', '', '',
  ].join('\n');
  const recs = parseIndexText(db, '', 'installed');
  assert.deepEqual(recs.map((r) => r.name), ['busybox', 'libstdc++', 'alpine-baselayout']);
  assert.deepEqual(recs[0]!.provides, [{ name: '/bin/sh' }, { name: 'cmd:busybox' }, { name: 'cmd:sh' }]);
  assert.equal(recs[2]!.depends[0]!.name, '/bin/sh');
  for (const bad of ['../../evil', 'a/b', '.hidden']) {
    assert.throws(() => parseIndexText(`${C}\nP:${bad}\nV:1\n\n`, 'http://repo.invalid/main', 'idx'), refuses('APK_CORRUPT_INDEX', /field P: invalid package name/), bad);
  }
});

test('index bounds: record count cap, line length cap, bad keys and numbers name the line', () => {
  const rec = (i: number): string => `${C}\nP:p${i}\nV:1\n`;
  const text = Array.from({ length: 11 }, (_, i) => rec(i)).join('\n');
  assert.equal(parseIndexText(text, 'http://r.invalid', 'idx', 11).length, 11);
  assert.throws(() => parseIndexText(text, 'http://r.invalid', 'idx', 10), refuses('APK_CORRUPT_INDEX', /more than 10 packages \(at line 44\)/));
  assert.throws(() => parseIndexText(`${C}\nP:a\nV:1\n9:x\n`, 'http://r.invalid', 'idx'), refuses('APK_CORRUPT_INDEX', /idx line 4 is not 'K:value'/));
  assert.throws(() => parseIndexText(`${C}\nP:a\nV:1\nI:-1\n`, 'http://r.invalid', 'idx'), refuses('APK_CORRUPT_INDEX', /field I is not a number/));
  assert.throws(() => parseIndexText(`${C}\nP:a\nV:1\nD:${'x'.repeat(70_000)}\n`, 'http://r.invalid', 'idx'), refuses('APK_CORRUPT_INDEX', /line 4 is longer than 65536 bytes/));
});
