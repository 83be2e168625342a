/**
 * The built-in recipes end to end, offline: a generated Alpine mirror (signed index, go, nodejs
 * and python3 packages with their dependencies) and a generated minirootfs carrying the mirror's
 * key in /etc/apk/keys. `vmimg rootfs build-all` builds go.ext4, node.ext4 and python.ext4;
 * e2fsck -fn and debugfs judge them; a second build (lock present) and a third with the mirror
 * gone give the same bytes.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { test, type TestContext } from 'node:test';
import { serve, type Fixture } from '../fetch/server.js';
import { assertFsckClean, debugfs, parseStat, sha256 } from '../fs/ext4/helpers.js';
import { ApkRepo } from '../helpers/apk-repo.js';
import { vmimg } from '../helpers/cli.js';
import { oracle, run, tempDir } from '../helpers/oracle.js';
import { baseTarball } from './fixtures.js';

const execFileAsync = promisify(execFile);
const KEY = 'alpine-devel@example.invalid-test.rsa.pub';

async function mirror(): Promise<{ main: ApkRepo; community: ApkRepo }> {
  const keyPair = (await import('node:crypto')).generateKeyPairSync('rsa', { modulusLength: 2048 });
  const main = new ApkRepo(KEY, keyPair);
  const community = new ApkRepo(KEY, keyPair);
  await main.add({ name: 'musl', version: '1.2.5-r0', provides: ['so:libc.musl-x86_64.so.1=1'], files: [{ path: 'lib/', dir: true }, { path: 'lib/ld-musl-x86_64.so.1', content: 'musl', mode: 0o755 }] });
  await main.add({ name: 'libffi', version: '3.4.6-r0', depends: ['so:libc.musl-x86_64.so.1'], provides: ['so:libffi.so.8=8.1.4'], files: [{ path: 'usr/', dir: true }, { path: 'usr/lib/', dir: true }, { path: 'usr/lib/libffi.so.8', content: 'ffi', mode: 0o755 }] });
  await main.add({
    name: 'python3',
    version: '3.12.7-r0',
    depends: ['so:libc.musl-x86_64.so.1', 'so:libffi.so.8'],
    provides: ['cmd:python3=3.12.7-r0'],
    files: [{ path: 'usr/', dir: true }, { path: 'usr/bin/', dir: true }, { path: 'usr/bin/python3.12', content: '#!python', mode: 0o755 }, { path: 'usr/bin/python3', symlink: 'python3.12' }],
  });
  await main.add({ name: 'nodejs', version: '20.15.1-r0', depends: ['so:libc.musl-x86_64.so.1'], provides: ['cmd:node=20.15.1-r0'], files: [{ path: 'usr/', dir: true }, { path: 'usr/bin/', dir: true }, { path: 'usr/bin/node', content: 'node', mode: 0o755 }] });
  await community.add({
    name: 'go',
    version: '1.22.8-r0',
    depends: ['musl'],
    files: [{ path: 'usr/', dir: true }, { path: 'usr/lib/', dir: true }, { path: 'usr/lib/go/', dir: true }, { path: 'usr/lib/go/bin/', dir: true }, { path: 'usr/lib/go/bin/go', content: 'go tool', mode: 0o755 }, { path: 'usr/bin/', dir: true }, { path: 'usr/bin/go', symlink: '../lib/go/bin/go' }],
  });
  return { main, community };
}

/** The mirror served on loopback under /alpine/v3.20/{main,community}, and DIR/minirootfs.tar.gz trusting its key. */
async function servedMirror(t: TestContext, dir: string): Promise<Fixture> {
  const { main, community } = await mirror();
  const fx = await serve(t);
  for (const [path, body] of await main.files('/alpine/v3.20/main')) fx.routes.set(path, { body });
  for (const [path, body] of await community.files('/alpine/v3.20/community')) fx.routes.set(path, { body });
  const base = await baseTarball([{ name: `etc/apk/keys/${KEY}`, body: main.publicPem }]);
  writeFileSync(join(dir, 'minirootfs.tar.gz'), base.bytes);
  return fx;
}

test('rootfs build-all: go, node and python images from a signed mirror, e2fsck-clean, reproducible, offline from the lock', async (t) => {
  if (!oracle(t, 'e2fsck') || !oracle(t, 'debugfs')) return;
  const dir = tempDir(t);
  const fx = await servedMirror(t, dir);
  const agent = join(dir, 'agent');
  writeFileSync(agent, '#!/bin/sh\nexec sleep 1000\n');
  chmodSync(agent, 0o600);

  const build = (dest: string): Promise<{ status: number; stdout: string; stderr: string }> =>
    vmimg(['rootfs', 'build-all', '--dest', dest, '--agent', agent, '--arch', 'x86_64', '--base', join(dir, 'minirootfs.tar.gz'), '--mirror', `${fx.base}/alpine`, '--cache-dir', join(dir, 'cache'), '--output', 'json']);
  const first = await build(join(dir, 'images'));
  assert.equal(first.status, 0, first.stderr);
  const results = JSON.parse(first.stdout) as Array<{ output: string; recipe: string; sha256: string; packages: string[]; runtime: string }>;
  assert.deepEqual(results.map((r) => r.recipe), ['go', 'node', 'python']);
  assert.deepEqual(results.map((r) => r.runtime), ['/usr/lib/go/bin/go', '/usr/bin/node', '/usr/bin/python3.12']);
  assert.deepEqual(results.map((r) => r.packages), [['musl-1.2.5-r0', 'go-1.22.8-r0'], ['musl-1.2.5-r0', 'nodejs-20.15.1-r0'], ['musl-1.2.5-r0', 'libffi-3.4.6-r0', 'python3-3.12.7-r0']]);
  assert.match(first.stderr, /python: apk: installing python3 from 2 repositories/);

  for (const r of results) {
    assert.equal(r.output, join(dir, 'images', `${r.recipe}.ext4`));
    assertFsckClean(t, r.output);
    const agentStat = parseStat(debugfs(t, r.output, 'stat /usr/local/bin/agent'));
    assert.equal(agentStat.mode & 0o777, 0o755);
    assert.equal(parseStat(debugfs(t, r.output, 'stat /work')).type, 'directory');
    assert.match(debugfs(t, r.output, 'cat /sbin/init'), /\nexec \/usr\/local\/bin\/agent "\$@"\n/);
    assert.equal(debugfs(t, r.output, 'cat /etc/hostname'), `${r.recipe}-vm\n`);
    const db = debugfs(t, r.output, 'cat /lib/apk/db/installed');
    assert.ok(db.startsWith('C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:busybox\n'), 'the base busybox record is kept');
    for (const p of r.packages) {
      const name = p.replace(/-[0-9][^-]*-r[0-9]+$/, '');
      assert.match(db, new RegExp(`\nP:${name}\nV:`), `${p} in /lib/apk/db/installed`);
    }
    const world = debugfs(t, r.output, 'cat /etc/apk/world');
    assert.equal(world, ['busybox', { go: 'go', node: 'nodejs', python: 'python3' }[r.recipe]!].sort().join('\n') + '\n');
    assert.equal(debugfs(t, r.output, 'cat /etc/apk/repositories'), `${fx.base}/alpine/v3.20/main\n${fx.base}/alpine/v3.20/community\n`);
    const lock = JSON.parse(readFileSync(`${r.output}.lock.json`, 'utf8'));
    assert.equal(lock.image.sha256, r.sha256);
    assert.equal(lock.indexes.length, 2);
    assert.ok(lock.packages.every((p: { sha256: string }) => /^[0-9a-f]{64}$/.test(p.sha256)));
  }
  assert.equal(debugfs(t, results[2]!.output, 'cat /usr/bin/python3.12'), '#!python');
  for (const [r, bin] of results.map((r, i) => [r, ['go', 'node', 'python3'][i]!] as const)) {
    const v = await vmimg(['rootfs', 'verify', r.output, '--agent', 'agent', '--runtime', bin]);
    assert.equal(v.status, 0, `${r.recipe}: ${v.stdout}`);
  }
  assert.match(debugfs(t, results[0]!.output, 'stat /usr/bin/go'), /Fast link dest: "\.\.\/lib\/go\/bin\/go"/);

  // Again into the same folder (locks present) and, with the mirror gone, into another: same bytes.
  const again = await build(join(dir, 'images'));
  assert.equal(again.status, 0, again.stderr);
  assert.deepEqual((JSON.parse(again.stdout) as typeof results).map((r) => r.sha256), results.map((r) => r.sha256));
  fx.routes.clear();
  const before = fx.log.length;
  for (const r of results) writeFileSync(join(dir, `${r.recipe}.lock.json`), readFileSync(`${r.output}.lock.json`));
  const offline = await vmimg(['rootfs', 'build', 'python', '-o', join(dir, 'offline', 'python.ext4'), '--lock', join(dir, 'python.lock.json'), '--agent', agent, '--base', join(dir, 'minirootfs.tar.gz'), '--mirror', `${fx.base}/alpine`, '--cache-dir', join(dir, 'cache'), '-q']);
  assert.equal(offline.status, 0, offline.stderr);
  assert.equal(fx.log.length, before, 'no network request with a lock and a warm cache');
  assert.equal(sha256(readFileSync(join(dir, 'offline', 'python.ext4'))), results[2]!.sha256);
});

test('tools/firecracker/Makefile: rootfs-python, verify, download and clean are thin vmimg calls (offline, against the mirror)', async (t) => {
  if (!oracle(t, 'make') || !oracle(t, 'e2fsck')) return;
  const dir = tempDir(t);
  const fx = await servedMirror(t, dir);
  writeFileSync(join(dir, 'agent'), '#!/bin/sh\nexec sleep 1000\n');
  const makefile = fileURLToPath(new URL('../../../tools/firecracker/Makefile', import.meta.url));
  const vars = [
    `VMIMG=${process.execPath} ${fileURLToPath(new URL('../../src/cli/vmimg.cjs', import.meta.url))}`,
    `AGENT=${join(dir, 'agent')}`,
    'ARCH=x86_64',
    `IMAGES=${join(dir, 'images')}`,
    `VMIMG_FLAGS=--base ${join(dir, 'minirootfs.tar.gz')} --mirror ${fx.base}/alpine --cache-dir ${join(dir, 'cache')} -q`,
  ];
  // Asynchronously: the mirror is served by this process.
  const build = await execFileAsync('make', ['-s', '-f', makefile, 'rootfs-python', ...vars], { encoding: 'utf8' });
  assert.match(build.stdout, /python\.ext4: ext4 \(raw\), \d+ bytes, \d+ entries, 3 packages installed, runtime \/usr\/bin\/python3\.12/);
  assertFsckClean(t, join(dir, 'images', 'python.ext4'));
  const verify = await execFileAsync('make', ['-s', '-f', makefile, 'verify', ...vars], { encoding: 'utf8' });
  assert.match(verify.stdout, /ok   runtime \/usr\/bin\/python3: \/usr\/bin\/python3 → \/usr\/bin\/python3\.12\n/);
  assert.match(verify.stdout, /python\.ext4: all checks passed/);
  assert.match(verify.stdout, /go\.ext4: not built \(make rootfs-go\)/);
  const dry = run('make', ['-n', '-f', makefile, 'download', 'FC_VERSION=v1.16.1', 'KERNEL_SHA256=' + 'ab'.repeat(32), ...vars]);
  assert.match(dry.stdout, /fetch firecracker --version v1\.16\.1 --arch x86_64 --dest /);
  assert.match(dry.stdout, /fetch kernel --version 6\.1 --arch x86_64 --dest \S+ --sha256 (ab){32}/);
  const clean = run('make', ['-s', '-f', makefile, 'clean', ...vars]);
  assert.equal(clean.status, 0, clean.stderr);
  assert.equal(existsSync(join(dir, 'images')), false);
});

