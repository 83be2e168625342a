/**
 * Recipe builds judged by e2fsck -fn and debugfs: the base download through the fetch cache,
 * the recipe layer (agent, init, directories, files, hostname), determinism, lock files, the
 * container output through qemu-img, and clean refusals that leave nothing behind.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { FetchCache } from '../../src/rootfs/fetch/cache.js';
import { buildRootfs } from '../../src/rootfs/recipe/build.js';
import { loadRecipe } from '../../src/rootfs/recipe/load.js';
import { validateRecipe } from '../../src/rootfs/recipe/schema.js';
import { isVmimgError } from '../../src/util/errors.js';
import { vmimg } from '../helpers/cli.js';
import { oracle, qemuImg, run, tempDir } from '../helpers/oracle.js';
import { serve } from '../fetch/server.js';
import { assertFsckClean, debugfs, parseStat, sha256 } from '../fs/ext4/helpers.js';
import { baseTarball } from './fixtures.js';

const OPTS = { baseDir: '/r', defaultName: 'r', hostArch: 'x86_64' as const };

function agentFile(dir: string): string {
  const p = join(dir, 'agent');
  writeFileSync(p, '#!/bin/sh\necho agent running\n');
  chmodSync(p, 0o644); // the image gets 0755 whatever the host mode
  return p;
}

test('recipe validation names the offending field and value', () => {
  const cases: Array<[unknown, RegExp]> = [
    [[], /a recipe must be a map/],
    [{ bogus: 1 }, /'bogus': unknown field/],
    [{ arch: 'mips' }, /'arch'.*"mips"/],
    [{ base: { url: 'https://x/y.tgz', sha256: 'abc' } }, /'base.sha256': must match/],
    [{ base: { url: 'ftp://x', sha256: 'a'.repeat(64) } }, /'base.url'/],
    [{ directories: ['work'] }, /'directories\[0\]': must be an absolute path.*"work"/],
    [{ directories: ['/a/../etc'] }, /'directories\[0\]': must not contain '.' or '..'/],
    [{ files: [{ path: '/x' }] }, /'files\[0\]': needs exactly one of source/],
    [{ files: [{ path: '/x', content: 'a', mode: '999' }] }, /'files\[0\].mode'/],
    [{ packages: ['python3'] }, /'apk.repositories': packages are listed/],
    [{ apk: { repositories: ['main'] } }, /'apk.branch': is needed/],
    [{ init: 'generated' }, /'init': 'generated' init execs the agent/],
    [{ init: 'keep', agent: { name: 'a/b', source: '/x' } }, /'agent.name'/],
    [{ init: 'keep', size: 'lots' }, /size/i],
    [{ init: 'keep', free: 95 }, /'free'/],
    [{ init: 'keep', output: { format: 'iso' } }, /'output.format'/],
    [{ init: 'keep', ext4: { label: 'x'.repeat(17) } }, /'ext4.label'/],
    [{ init: 'keep', hostname: 'bad host' }, /'hostname'/],
  ];
  for (const [doc, re] of cases) {
    assert.throws(
      () => validateRecipe(doc, OPTS),
      (e: unknown) => isVmimgError(e) && e.code === 'INVALID_RECIPE' && re.test(e.message),
      `${JSON.stringify(doc)} should fail with ${re}`,
    );
  }
  const ok = validateRecipe({ init: 'keep', apk: { branch: 'v3.20', repositories: ['main', 'https://m/alpine/v3.20/community/'] }, packages: ['python3'], files: [{ path: '/etc//x/', content: 'y', mode: '0600' }] }, OPTS);
  assert.deepEqual(ok.apk.repositories, ['https://dl-cdn.alpinelinux.org/alpine/v3.20/main', 'https://m/alpine/v3.20/community']);
  assert.equal(ok.files[0]!.path, '/etc/x');
  assert.equal(ok.files[0]!.mode, 0o600);
  assert.equal(ok.freePercent, 20);
});

test('YAML and JSON recipes give the same recipe; unknown names are RECIPE_NOT_FOUND', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'a.yaml'), 'name: a\ninit: keep\ndirectories: [/work]\nfiles:\n  - { path: /etc/x, content: "hi\\n", mode: "0640", uid: 7 }\n');
  writeFileSync(join(dir, 'a.json'), JSON.stringify({ name: 'a', init: 'keep', directories: ['/work'], files: [{ path: '/etc/x', content: 'hi\n', mode: '0640', uid: 7 }] }));
  const y = await loadRecipe(join(dir, 'a.yaml'), { arch: 'x86_64' });
  const j = await loadRecipe(join(dir, 'a.json'), { arch: 'x86_64' });
  assert.deepEqual(y, j);
  await assert.rejects(loadRecipe(join(dir, 'nope.yaml'), { arch: 'x86_64' }), (e: unknown) => isVmimgError(e) && e.code === 'RECIPE_NOT_FOUND' && e.message.includes('nope.yaml'));
  writeFileSync(join(dir, 'bad.yaml'), 'name: [unclosed\n');
  await assert.rejects(loadRecipe(join(dir, 'bad.yaml'), { arch: 'x86_64' }), (e: unknown) => isVmimgError(e) && e.code === 'INVALID_RECIPE' && e.message.includes('not valid YAML'));
  const r = await vmimg(['rootfs', 'build', 'python', '--cache-dir', join(dir, 'cache')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no agent binary.*--agent PATH.*\[INVALID_RECIPE\]/);
  assert.equal(existsSync(join(dir, 'cache')), false, 'nothing fetched before the recipe is known to be complete');
});

test('a recipe over a downloaded base builds an e2fsck-clean image with agent, init, /work; twice identical; lock; offline rebuild', async (t) => {
  const e2fsck = oracle(t, 'e2fsck');
  if (!e2fsck) return;
  const dir = tempDir(t);
  const base = await baseTarball();
  const fx = await serve(t);
  fx.routes.set('/alpine/base.tar.gz', { body: base.bytes });
  const agent = agentFile(dir);
  writeFileSync(join(dir, 'motd'), 'welcome\n');
  const recipePath = join(dir, 'vm.yaml');
  writeFileSync(
    recipePath,
    [
      'name: vm',
      `base: { url: "${fx.base}/alpine/base.tar.gz", sha256: "${base.sha256}" }`,
      'directories: [/work, { path: /data, mode: "0700", uid: 1000, gid: 1000 }]',
      'files:',
      '  - { source: ./motd, path: /etc/motd, mode: "0644" }',
      '  - { content: "key=value\\n", path: /etc/agent.conf, mode: "0600", uid: 1000 }',
      'agent: { source: ./agent, name: myagent }',
      'hostname: vm1',
      'resolv: ["nameserver 192.0.2.1"]',
      'runtime: myagent',
    ].join('\n') + '\n',
  );
  const cache = new FetchCache(join(dir, 'cache'));
  const recipe = await loadRecipe(recipePath, { arch: 'x86_64' });
  const out1 = join(dir, 'img', 'vm.ext4');
  const r1 = await buildRootfs({ recipe, output: out1, cache });
  assert.equal(fx.count('/alpine/base.tar.gz'), 1);
  assert.equal(r1.runtime, '/usr/local/bin/myagent');
  assertFsckClean(t, out1);

  const agentStat = parseStat(debugfs(t, out1, 'stat /usr/local/bin/myagent'));
  assert.equal(agentStat.mode & 0o7777, 0o755);
  assert.equal(agentStat.type, 'regular');
  assert.equal(debugfs(t, out1, 'cat /usr/local/bin/myagent'), readFileSync(agent, 'utf8'));
  const init = debugfs(t, out1, 'cat /sbin/init');
  assert.match(init, /^#!\/bin\/sh\n/);
  assert.match(init, /\nexec \/usr\/local\/bin\/myagent "\$@"\n$/);
  assert.equal(parseStat(debugfs(t, out1, 'stat /sbin/init')).mode & 0o777, 0o755, 'the base symlink /sbin/init was replaced by the script');
  const data = parseStat(debugfs(t, out1, 'stat /data'));
  assert.deepEqual([data.type, data.mode & 0o7777, data.uid, data.gid], ['directory', 0o700, 1000, 1000]);
  assert.equal(parseStat(debugfs(t, out1, 'stat /work')).type, 'directory');
  assert.equal(parseStat(debugfs(t, out1, 'stat /tmp')).mode & 0o7777, 0o1777);
  assert.equal(debugfs(t, out1, 'cat /etc/hostname'), 'vm1\n');
  assert.equal(debugfs(t, out1, 'cat /etc/resolv.conf'), 'nameserver 192.0.2.1\n');
  assert.equal(debugfs(t, out1, 'cat /etc/motd'), 'welcome\n');
  const conf = parseStat(debugfs(t, out1, 'stat /etc/agent.conf'));
  assert.deepEqual([conf.mode & 0o7777, conf.uid], [0o600, 1000]);
  assert.equal(debugfs(t, out1, 'cat /etc/os-release'), 'ID=alpine\nVERSION_ID=3.20.3\n', 'base content kept');
  assert.match(debugfs(t, out1, 'stat /bin/sh'), /Fast link dest: "\/bin\/busybox"/);

  const lock = JSON.parse(readFileSync(`${out1}.lock.json`, 'utf8'));
  assert.deepEqual(lock.base, { url: `${fx.base}/alpine/base.tar.gz`, sha256: base.sha256 });
  assert.equal(lock.image.sha256, sha256(readFileSync(out1)));
  assert.equal(lock.image.size, readFileSync(out1).length);

  // Again, with the server gone: the base comes from the cache; the image is byte-identical.
  fx.routes.clear();
  const out2 = join(dir, 'img2', 'vm.ext4');
  await buildRootfs({ recipe: await loadRecipe(recipePath, { arch: 'x86_64' }), output: out2, cache });
  assert.equal(fx.count('/alpine/base.tar.gz'), 1, 'no second download');
  assert.equal(sha256(readFileSync(out2)), sha256(readFileSync(out1)));
});

test('init: symlink points /sbin/init at the agent; qcow2 output equals the raw build under qemu-img', async (t) => {
  if (!oracle(t, 'e2fsck') || !oracle(t, 'qemu-img')) return;
  const dir = tempDir(t);
  agentFile(dir);
  const base = await baseTarball();
  writeFileSync(join(dir, 'base.tar.gz'), base.bytes);
  const recipePath = join(dir, 'r.json');
  writeFileSync(recipePath, JSON.stringify({ base: './base.tar.gz', agent: './agent', init: 'symlink', directories: ['/work'], epoch: 1_600_000_000, ext4: { label: 'rootfs', journal: true } }));
  const cache = new FetchCache(join(dir, 'cache'));
  const raw = join(dir, 'r.ext4');
  await buildRootfs({ recipe: await loadRecipe(recipePath, { arch: 'x86_64' }), output: raw, cache });
  assertFsckClean(t, raw);
  assert.match(debugfs(t, raw, 'stat /sbin/init'), /Fast link dest: "\/usr\/local\/bin\/agent"/);
  assert.match(debugfs(t, raw, 'stat /etc/os-release'), /mtime: 0x5f5e1000/, 'mtimes clamped to the recipe epoch (1600000000)');
  assert.match(run('/sbin/dumpe2fs', ['-h', raw]).stdout, /Filesystem volume name:\s+rootfs[\s\S]*has_journal/);

  const qcow = join(dir, 'r.qcow2');
  await buildRootfs({ recipe: await loadRecipe(recipePath, { arch: 'x86_64', format: 'qcow2' }), output: qcow, cache });
  assert.equal(qemuImg(['check', qcow]).status, 0);
  const cmp = qemuImg(['compare', '-f', 'raw', '-F', 'qcow2', raw, qcow]);
  assert.equal(cmp.status, 0, cmp.stdout + cmp.stderr);
  const lock = JSON.parse(readFileSync(`${qcow}.lock.json`, 'utf8'));
  assert.equal(lock.image.format, 'qcow2');
});

test('failures leave no image and no lock: missing runtime, bad base digest, missing agent file', async (t) => {
  const dir = tempDir(t);
  const base = await baseTarball();
  const fx = await serve(t);
  fx.routes.set('/b.tgz', { body: base.bytes });
  agentFile(dir);
  const cache = new FetchCache(join(dir, 'cache'));
  const write = (name: string, doc: object): string => {
    const p = join(dir, name);
    writeFileSync(p, JSON.stringify(doc));
    return p;
  };
  const attempts: Array<[string, object, string, RegExp]> = [
    ['runtime.json', { base: { url: `${fx.base}/b.tgz`, sha256: base.sha256 }, agent: './agent', runtime: '/usr/bin/python3' }, 'INVALID_RECIPE', /runtime '\/usr\/bin\/python3' is not in the built tree/],
    ['digest.json', { base: { url: `${fx.base}/b.tgz`, sha256: 'ab'.repeat(32) }, agent: './agent' }, 'CHECKSUM_MISMATCH', /abab/],
    ['agent.json', { base: { url: `${fx.base}/b.tgz`, sha256: base.sha256 }, agent: './no-such-agent' }, 'FILE_NOT_FOUND', /no-such-agent/],
  ];
  for (const [name, doc, code, re] of attempts) {
    const out = join(dir, 'out', `${name}.ext4`);
    await assert.rejects(
      buildRootfs({ recipe: await loadRecipe(write(name, doc), { arch: 'x86_64' }), output: out, cache }),
      (e: unknown) => isVmimgError(e) && e.code === code && re.test(e.fullMessage()),
      name,
    );
    const left = existsSync(join(dir, 'out')) ? readdirSync(join(dir, 'out')) : [];
    assert.deepEqual(left, [], `${name}: nothing left behind`);
  }
});

test('vmimg rootfs build prints a JSON summary; a lock made for another base is refused until --update', async (t) => {
  if (!oracle(t, 'e2fsck')) return;
  const dir = tempDir(t);
  agentFile(dir);
  const base = await baseTarball();
  const fx = await serve(t);
  fx.routes.set('/b.tgz', { body: base.bytes });
  const other = await baseTarball([{ name: 'etc/extra', body: 'x' }]);
  fx.routes.set('/c.tgz', { body: other.bytes });
  const recipe = (url: string, sha: string): string => {
    const p = join(dir, 'vm.yaml');
    writeFileSync(p, `base: { url: "${url}", sha256: "${sha}" }\nagent: ./agent\n`);
    return p;
  };
  const out = join(dir, 'vm.ext4');
  const args = (p: string): string[] => ['rootfs', 'build', p, '-o', out, '--cache-dir', join(dir, 'cache'), '-q', '--output', 'json'];
  const r = await vmimg(args(recipe(`${fx.base}/b.tgz`, base.sha256)));
  assert.equal(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.equal(s.output, out);
  assert.equal(s.recipe, 'vm');
  assert.equal(s.sha256, sha256(readFileSync(out)));
  assertFsckClean(t, out);
  const refused = await vmimg(args(recipe(`${fx.base}/c.tgz`, other.sha256)));
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /was made for a different base; rebuild with --update.*\[INVALID_RECIPE\]/);
  const updated = await vmimg([...args(recipe(`${fx.base}/c.tgz`, other.sha256)), '--update']);
  assert.equal(updated.status, 0, updated.stderr);
  assert.equal(JSON.parse(readFileSync(`${out}.lock.json`, 'utf8')).base.sha256, other.sha256);
});
