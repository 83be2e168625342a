/**
 * apk-tools itself as the judge (optional): set VMIMG_APK_TOOL to an apk 2.x binary (e.g. built
 * from apk-tools v2.14.9 with `make LUA=no`; libapk.so next to it is found). Without it these
 * tests skip with a reason — apk-tools is not packaged for Debian, so CI cannot install it.
 *   1. `apk verify` accepts every .apk the test helper generates (signature, checksums);
 *   2. `apk add --no-scripts` into a copy of the generated minirootfs writes installed-db records
 *      equal to ours, byte for byte;
 *   3. a root made from the minirootfs plus OUR layer passes `apk audit` (nothing modified) and
 *      `apk info` lists our packages;
 *   4. `apk add --simulate` picks the same packages as our resolver on several worlds.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, linkSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { installApkPackages, type ApkInstallRequest, type ApkInstallResult } from '../../src/rootfs/apk/index.js';
import { FetchCache } from '../../src/rootfs/fetch/cache.js';
import type { RawEntry } from '../../src/tree/types.js';
import { tempDir as tempDirOf } from '../helpers/oracle.js';
import { makeApkRepo, type ApkPackageSpec, type ServedApkRepo, MUSL } from '../helpers/apk-repo.js';

function apkTool(t: TestContext): string | undefined {
  const apk = process.env['VMIMG_APK_TOOL'];
  if (apk && existsSync(apk)) return apk;
  t.skip('VMIMG_APK_TOOL is not set to an apk-tools 2.x binary (see the comment at the top of this file)');
  return undefined;
}

function apk(tool: string, args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(tool, args, { encoding: 'utf8', env: { ...process.env, LD_LIBRARY_PATH: dirname(tool) } });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const tempDir = (t: TestContext): string => tempDirOf(t, 'vmimg-apk-tool-');

const BUSYBOX: ApkPackageSpec = {
  name: 'busybox',
  version: '1.36.1-r29',
  depends: ['so:libc.musl-x86_64.so.1'],
  provides: ['/bin/sh', 'cmd:sh=1.36.1-r29'],
  files: [{ path: 'bin/', dir: true }, { path: 'bin/busybox', content: 'busybox', mode: 0o755 }, { path: 'bin/sh', symlink: '/bin/busybox' }],
};
const PACKAGES: ApkPackageSpec[] = [
  {
    name: 'tools',
    version: '2.0-r1',
    depends: ['so:libc.musl-x86_64.so.1', '/bin/sh', 'libtool>=1.1'],
    replaces: ['oldtools'],
    replacesPriority: 5,
    files: [
      { path: 'usr/', dir: true },
      { path: 'usr/bin/', dir: true },
      { path: 'usr/bin/tool', content: 'tool binary', mode: 0o4755 },
      { path: 'usr/bin/tool-alias', hardlink: 'usr/bin/tool', mode: 0o4755 },
      { path: 'var/', dir: true },
      { path: 'var/lib/', dir: true },
      { path: 'var/lib/tools/', dir: true, mode: 0o750, uid: 100, gid: 101 },
      { path: 'var/lib/tools/state', content: 'state', uid: 100, gid: 101, mode: 0o640 },
      { path: 'etc/', dir: true },
      { path: 'etc/tools.conf', content: 'x=1\n' },
      { path: 'etc/tools.d/', dir: true, mode: 0o700 },
    ],
  },
  { name: 'libtool', version: '1.1-r0', provides: ['so:libtool.so.1=1.1'], files: [{ path: 'usr/', dir: true }, { path: 'usr/lib/', dir: true }, { path: 'usr/lib/libtool.so.1', content: 'lt 1.1' }] },
  { name: 'libtool', version: '1.2-r0', provides: ['so:libtool.so.1=1.2'], files: [{ path: 'usr/', dir: true }, { path: 'usr/lib/', dir: true }, { path: 'usr/lib/libtool.so.1', content: 'lt 1.2' }] },
  { name: 'editor-a', version: '1-r0', provides: ['editor'], providerPriority: 10 },
  { name: 'editor-b', version: '2-r0', provides: ['editor'], providerPriority: 20 },
  {
    name: 'svc',
    version: '3.1-r2',
    depends: ['/bin/sh'],
    scripts: { '.pre-install': '#!/bin/sh\naddgroup -S svc\n', '.post-deinstall': '#!/bin/sh\ndelgroup svc\n', '.trigger': '#!/bin/sh\necho "$@"\n' },
    triggers: ['/usr/share/svc/*', '/etc/svc.d'],
    files: [{ path: 'etc/', dir: true }, { path: 'etc/svc.d/', dir: true }],
  },
  { name: 'app', version: '1-r0', depends: ['libtool<1.2', 'editor'] },
  { name: 'app', version: '2-r0', depends: ['libtool>=1.2', 'editor', 'so:libnope.so.1'] },
];

async function setup(t: TestContext): Promise<{ tool: string; r: ServedApkRepo; dir: string; keys: string; repoDir: string } | undefined> {
  const tool = apkTool(t);
  if (!tool) return undefined;
  const dir = tempDir(t);
  const r = await makeApkRepo(join(dir, 'www'), { packages: PACKAGES, minirootfs: { packages: [MUSL, BUSYBOX] } });
  t.after(() => r.close());
  const keys = join(dir, 'keys');
  mkdirSync(keys);
  writeFileSync(join(keys, r.repo.keyName), r.repo.publicPem);
  return { tool, r, dir, keys, repoDir: join(r.dir, 'alpine/v3.20/main') };
}

function records(db: string): Map<string, string> {
  return new Map(db.split('\n\n').filter((x) => x.trim() !== '').map((x) => [/^P:(.*)$/m.exec(x)![1]!, x.trim()]));
}

/** Writes `entries` under `root` as a real filesystem (we run as root in CI machines; owners kept when possible). */
async function materialise(root: string, entries: readonly RawEntry[]): Promise<void> {
  for (const e of entries) {
    const path = join(root, e.path.toString());
    if (e.type === 'dir') mkdirSync(path, { recursive: true });
    else {
      mkdirSync(dirname(path), { recursive: true });
      rmSync(path, { force: true });
      if (e.type === 'file') writeFileSync(path, e.content ? Buffer.from(await e.content.read(0, e.size)) : Buffer.alloc(0));
      else if (e.type === 'symlink') symlinkSync(e.symlinkTarget!.toString(), path);
      else if (e.type === 'hardlink') linkSync(join(root, e.linkTarget!.toString()), path);
      else continue;
    }
    if (e.type !== 'symlink') {
      try {
        chownSync(path, e.uid, e.gid);
      } catch {
        /* not root: apk audit then reports owners; the test asserts only as root */
      }
      chmodSync(path, e.mode);
    }
  }
}

test('apk verify accepts the generated packages; apk add writes the same installed-db records as vmimg', async (t) => {
  const s = await setup(t);
  if (!s) return;
  for (const b of s.r.repo.built) {
    const file = join(s.repoDir, 'x86_64', `${b.spec.name}-${b.spec.version}.apk`);
    const v = apk(s.tool, ['verify', '--keys-dir', s.keys, file]);
    assert.equal(v.status, 0, `${file}: ${v.stdout}${v.stderr}`);
  }
  const root = join(s.dir, 'apk-root');
  mkdirSync(root);
  assert.equal(spawnSync('tar', ['-xzf', s.r.minirootfs!.file, '-C', root]).status, 0);
  writeFileSync(join(root, '../apk-root-base-scripts.tar'), readFileSync(join(root, 'lib/apk/db/scripts.tar')));
  const add = apk(s.tool, ['--root', root, '--arch', 'x86_64', '--keys-dir', s.keys, '--repositories-file', '/dev/null', '--repository', s.repoDir, '--no-scripts', '--no-cache', 'add', 'tools', 'svc']);
  assert.equal(add.status, 0, add.stdout + add.stderr);
  const theirs = records(readFileSync(join(root, 'lib/apk/db/installed'), 'utf8'));

  const ours = await installApkPackages({
    repositories: [{ url: s.r.url }],
    keys: s.r.keys,
    packages: ['tools', 'svc'],
    arch: 'x86_64',
    cache: new FetchCache(join(s.dir, 'cache')),
    baseInstalled: s.r.minirootfs!.installed,
    baseWorld: s.r.minirootfs!.world,
    baseScripts: readFileSync(join(root, '../apk-root-base-scripts.tar')),
    baseTriggers: Buffer.alloc(0),
  });
  t.after(() => ours.close());
  const layerFile = async (p: string): Promise<Buffer> => {
    const e = ours.layer.find((x) => x.path.toString() === p)!;
    return Buffer.from(await e.content!.read(0, e.size));
  };
  // scripts.tar and triggers: the same entries (name, mode, content) and lines as apk's.
  const listing = (tar: string): string[] => spawnSync('tar', ['-tvf', tar], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map((l) => { const f = l.split(/\s+/); return `${f[0]} ${f[2]} ${f[5]}`; });
  writeFileSync(join(s.dir, 'ours-scripts.tar'), await layerFile('lib/apk/db/scripts.tar'));
  assert.deepEqual(listing(join(s.dir, 'ours-scripts.tar')), listing(join(root, 'lib/apk/db/scripts.tar')));
  const svc = s.r.repo.built.find((b) => b.spec.name === 'svc')!;
  assert.ok(listing(join(root, 'lib/apk/db/scripts.tar')).includes(`-rwxr-xr-x ${'#!/bin/sh\necho "$@"\n'.length} svc-3.1-r2.${svc.checksum}.trigger`));
  for (const action of ['pre-install', 'post-deinstall', 'trigger']) {
    const name = `svc-3.1-r2.${svc.checksum}.${action}`;
    assert.equal(spawnSync('tar', ['-xOf', join(s.dir, 'ours-scripts.tar'), name], { encoding: 'utf8' }).stdout, spawnSync('tar', ['-xOf', join(root, 'lib/apk/db/scripts.tar'), name], { encoding: 'utf8' }).stdout, name);
  }
  assert.equal((await layerFile('lib/apk/db/triggers')).toString(), readFileSync(join(root, 'lib/apk/db/triggers'), 'utf8'));
  assert.equal(readFileSync(join(root, 'lib/apk/db/triggers'), 'utf8'), `${svc.checksum} /usr/share/svc/* /etc/svc.d\n`);
  const db = ours.layer.find((e) => e.path.toString() === 'lib/apk/db/installed')!;
  const mine = records(Buffer.from(await db.content!.read(0, db.size)).toString());
  assert.deepEqual([...theirs.keys()].sort(), [...mine.keys()].sort(), 'the same packages');
  for (const p of ours.installed) assert.equal(mine.get(p.name), theirs.get(p.name), `record of ${p.name}`);
  const world = ours.layer.find((e) => e.path.toString() === 'etc/apk/world')!;
  assert.equal(Buffer.from(await world.content!.read(0, world.size)).toString(), readFileSync(join(root, 'etc/apk/world'), 'utf8'));
});

test('a root built from the minirootfs and the vmimg layer passes apk audit; apk info lists the packages', async (t) => {
  const s = await setup(t);
  if (!s) return;
  if (process.getuid?.() !== 0) return void t.skip('needs root to set owners for apk audit');
  const ours = await installApkPackages({ repositories: [{ url: s.r.url }], keys: s.r.keys, packages: ['tools'], arch: 'x86_64', cache: new FetchCache(join(s.dir, 'cache')), baseInstalled: s.r.minirootfs!.installed, baseWorld: s.r.minirootfs!.world });
  t.after(() => ours.close());
  const root = join(s.dir, 'our-root');
  mkdirSync(root);
  assert.equal(spawnSync('tar', ['-xzf', s.r.minirootfs!.file, '-C', root]).status, 0);
  await materialise(root, ours.layer);
  const audit = apk(s.tool, ['--root', root, '--keys-dir', s.keys, '--no-cache', 'audit', '--packages']);
  assert.equal(audit.status, 0, audit.stderr);
  assert.equal(audit.stdout.trim(), '', `apk audit reports: ${audit.stdout}`);
  const info = apk(s.tool, ['--root', root, '--repositories-file', '/dev/null', '--no-cache', 'info']);
  assert.equal(info.status, 0, info.stderr);
  assert.deepEqual(info.stdout.split('\n').filter(Boolean).sort(), ['busybox', 'libtool', 'musl', 'tools']);
});

test('apk add --simulate on the minirootfs and the vmimg resolver pick the same packages, or both refuse', async (t) => {
  const s = await setup(t);
  if (!s) return;
  // Not compared: `app editor-a`, where apk installs app-1 although app-2 (newest) needs a name
  // nothing provides — for `app` alone it refuses, as vmimg does in both cases.
  const worlds = [['tools'], ['app'], ['tools', 'libtool<1.2'], ['libtool<1.2', 'tools'], ['editor'], ['editor-a', 'tools'], ['app', 'libtool>=1.2'], ['nosuch']];
  for (const [i, world] of worlds.entries()) {
    const root = join(s.dir, `sim-${i}`);
    mkdirSync(root);
    assert.equal(spawnSync('tar', ['-xzf', s.r.minirootfs!.file, '-C', root]).status, 0);
    const sim = apk(s.tool, ['--root', root, '--arch', 'x86_64', '--keys-dir', s.keys, '--repositories-file', '/dev/null', '--repository', s.repoDir, '--no-cache', '--simulate', 'add', ...world]);
    const request: ApkInstallRequest = { repositories: [{ url: s.r.url }], keys: s.r.keys, packages: world, arch: 'x86_64', cache: new FetchCache(join(s.dir, 'cache')), baseInstalled: s.r.minirootfs!.installed, baseWorld: s.r.minirootfs!.world };
    if (sim.status !== 0) {
      await assert.rejects(installApkPackages(request), /APK_|cannot|no package|virtual/, `apk refused ${world.join(' ')}: ${sim.stdout}${sim.stderr}`);
      continue;
    }
    const theirs = [...sim.stdout.matchAll(/Installing (\S+) \((\S+)\)/g)].map((m) => `${m[1]}-${m[2]}`).sort();
    const ours: ApkInstallResult = await installApkPackages(request).catch((e: Error) => assert.fail(`apk installs ${theirs.join(', ')} for ${world.join(' ')}; vmimg: ${e.message}`));
    await ours.close();
    assert.deepEqual(ours.installed.map((p) => `${p.name}-${p.version}`).sort(), theirs, world.join(' '));
  }
});
