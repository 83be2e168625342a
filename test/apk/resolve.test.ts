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
  assert.throws(() => resolvePackages({ world: parseDeps('app !zlib', 'w'), installed: [], available: REPO }), refuses('APK_UNSATISFIABLE', /conflicts with 'zlib', which zlib-1.3.1-r0 satisfies/));
});

test('cycles end; dependencies come first; providers by priority; the base satisfies atoms', () => {
  assert.deepEqual(names(resolvePackages({ world: parseDeps('cyc-a', 'w'), installed: [], available: REPO })), ['zlib-1.3.1-r0', 'cyc-b-1-r0', 'cyc-a-1-r0']);
  assert.deepEqual(names(resolvePackages({ world: parseDeps('cmd:sh', 'w'), installed: [], available: REPO })), ['busybox-1.36-r0'], 'a versioned provide wins over unversioned ones');
  const noBusybox = REPO.filter((p) => p.name !== 'busybox');
  assert.deepEqual(names(resolvePackages({ world: parseDeps('cmd:sh', 'w'), installed: [], available: noBusybox })), ['sh-b-1-r0'], 'highest provider_priority');
  const installed = [{ name: 'zlib', version: '1.2.13-r0', provides: [{ name: 'so:libz.so.1', version: '1.2.13' }] }];
  assert.deepEqual(names(resolvePackages({ world: parseDeps('app', 'w'), installed, available: REPO })), ['app-1.0-r0'], 'the base zlib is kept');
  const pins = new Map([['zlib', { version: '1.2.13-r0', checksum: '' }]]);
  assert.deepEqual(names(resolvePackages({ world: parseDeps('app', 'w'), installed: [], available: REPO, pins })), ['zlib-1.2.13-r0', 'app-1.0-r0'], 'a lock pin');
});
