/**
 * `vmimg rootfs verify` reads the image itself: a recipe-built image passes (raw and qcow2);
 * images made with vmimg mkfs from crafted folders fail exactly the check they break.
 */
import assert from 'node:assert/strict';
import { chmodSync, linkSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { scriptExecs } from '../../src/rootfs/verify.js';
import { vmimg } from '../helpers/cli.js';
import { tempDir } from '../helpers/oracle.js';

interface Layout {
  agentMode?: number;
  work?: boolean | 'file';
  init?: { symlink: string } | { script: string | Buffer } | 'hardlink' | 'copy' | 'none';
  runtime?: boolean;
  initMode?: number;
}

function rootfs(dir: string, name: string, l: Layout): string {
  const root = join(dir, name);
  mkdirSync(join(root, 'usr', 'local', 'bin'), { recursive: true });
  mkdirSync(join(root, 'usr', 'lib', 'py'), { recursive: true });
  mkdirSync(join(root, 'usr', 'bin'), { recursive: true });
  mkdirSync(join(root, 'sbin'), { recursive: true });
  writeFileSync(join(root, 'usr', 'local', 'bin', 'agent'), '#!/bin/sh\nexec sleep 1\n');
  chmodSync(join(root, 'usr', 'local', 'bin', 'agent'), l.agentMode ?? 0o755);
  if (l.work === 'file') writeFileSync(join(root, 'work'), '');
  else if (l.work !== false) mkdirSync(join(root, 'work'));
  if (l.runtime !== false) {
    writeFileSync(join(root, 'usr', 'lib', 'py', 'python3.12'), 'py', { mode: 0o755 });
    symlinkSync('../lib/py/python3.12', join(root, 'usr', 'bin', 'python3'));
  }
  const init = l.init ?? { symlink: '/usr/local/bin/agent' };
  if (init === 'copy') writeFileSync(join(root, 'sbin', 'init'), readFileSync(join(root, 'usr', 'local', 'bin', 'agent')), { mode: 0o755 });
  else if (init === 'hardlink') linkSync(join(root, 'usr', 'local', 'bin', 'agent'), join(root, 'sbin', 'init'));
  else if (init !== 'none') {
    if ('symlink' in init) symlinkSync(init.symlink, join(root, 'sbin', 'init'));
    else {
      writeFileSync(join(root, 'sbin', 'init'), init.script);
      chmodSync(join(root, 'sbin', 'init'), l.initMode ?? 0o755);
    }
  }
  return root;
}

async function image(dir: string, name: string, l: Layout, format = 'raw'): Promise<string> {
  const out = join(dir, `${name}.${format === 'raw' ? 'ext4' : format}`);
  const r = await vmimg(['mkfs', '-t', 'ext4', '--format', format, rootfs(dir, name, l), out]);
  assert.equal(r.status, 0, r.stderr);
  return out;
}

test('a good image passes every check, raw and qcow2; JSON lists each check', async (t) => {
  const dir = tempDir(t, 'vmimg-verify-');
  for (const format of ['raw', 'qcow2']) {
    const img = await image(dir, `good-${format}`, {}, format);
    const r = await vmimg(['rootfs', 'verify', img, '--agent', 'agent', '--runtime', 'python3', '--runtime', '/usr/bin/python3', '--output', 'json']);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.ok, true);
    assert.deepEqual(j.checks.map((c: { name: string; ok: boolean }) => [c.name, c.ok]), [['agent', true], ['runtime python3', true], ['runtime /usr/bin/python3', true], ['work', true], ['init', true]]);
    assert.match(j.checks[1].detail, /\/usr\/bin\/python3 → \/usr\/lib\/py\/python3\.12/);
    assert.match(j.checks[4].detail, /\/sbin\/init → \/usr\/local\/bin\/agent \(the agent\)/);
  }
  const hard = await image(dir, 'hardlink', { init: 'hardlink' });
  const h = await vmimg(['rootfs', 'verify', hard, '--agent', 'agent']);
  assert.equal(h.status, 0, h.stdout);
  assert.equal(h.stdout, `ok   agent: /usr/local/bin/agent, 23 bytes, mode 0755\nok   work: /work is a directory\nok   init: /sbin/init is a hard link to the agent\n${hard}: all checks passed\n`);
  const rel = await image(dir, 'relative', { init: { symlink: '../usr/local/bin/agent' } });
  assert.equal((await vmimg(['rootfs', 'verify', rel, '--agent', 'agent'])).status, 0);
  const badName = await vmimg(['rootfs', 'verify', rel, '--agent', '../../etc/passwd']);
  assert.equal(badName.status, 1);
  assert.match(badName.stderr, /--agent '..\/..\/etc\/passwd' must be a file name.*\[INVALID_OPTION\]/);
  const script = await image(dir, 'script', { init: { script: '#!/bin/sh\nmount -t proc proc /proc\nexec /usr/local/bin/agent "$@"\n' } });
  const r = await vmimg(['rootfs', 'verify', script, '--agent', 'agent']);
  assert.equal(r.status, 0, r.stdout);
  assert.match(r.stdout, /ok   init: \/sbin\/init is a script that execs \/usr\/local\/bin\/agent/);
});

test('init forms that exec the agent pass: quoted or via env, a copy of the agent, a binary naming it', async (t) => {
  const dir = tempDir(t, 'vmimg-verify-init-');
  const cases: Array<[string, Layout, RegExp]> = [
    ['quoted', { init: { script: '#!/bin/sh\nset -e\nexec "/usr/local/bin/agent" --serve\n' } }, /a script that execs/],
    ['env', { init: { script: '#!/bin/sh\n[ -d /proc ] || mount -t proc proc /proc; exec env A=1 /usr/local/bin/agent\n' } }, /a script that execs/],
    ['copy', { init: 'copy' }, /^\/sbin\/init is a copy of the agent$/],
    ['binary', { init: { script: Buffer.concat([Buffer.from('\x7fELF'), Buffer.alloc(70_000), Buffer.from('/usr/local/bin/agent\0')]) } }, /^\/sbin\/init is a binary naming \/usr\/local\/bin\/agent$/],
  ];
  for (const [name, layout, re] of cases) {
    const r = await vmimg(['rootfs', 'verify', await image(dir, name, layout), '--agent', 'agent', '--output', 'json']);
    assert.equal(r.status, 0, `${name}: ${r.stdout}`);
    assert.match(JSON.parse(r.stdout).checks.find((c: { name: string }) => c.name === 'init').detail, re, name);
  }
  assert.equal(scriptExecs('exec /usr/local/bin/agent2', '/usr/local/bin/agent'), false, 'a longer name is another file');
  assert.equal(scriptExecs('echo /usr/local/bin/agent', '/usr/local/bin/agent'), false, 'no exec');
  assert.equal(scriptExecs('  exec /usr/local/bin/agent "$@"', '/usr/local/bin/agent'), true);
});

test('each broken image fails exactly its check, with exit status 1', async (t) => {
  const dir = tempDir(t, 'vmimg-verify-bad-');
  const cases: Array<[string, Layout, string, RegExp]> = [
    ['noexec', { agentMode: 0o644 }, 'agent', /not executable \(mode 0644\)/],
    ['nowork', { work: false }, 'work', /\/work is missing/],
    ['elsewhere', { init: { symlink: '/bin/busybox' } }, 'init', /\/sbin\/init → \/bin\/busybox, which is not the agent/],
    ['otherscript', { init: { script: '#!/bin/sh\nexec /sbin/getty\n' } }, 'init', /does not exec \/usr\/local\/bin\/agent/],
    ['noinit', { init: 'none' }, 'init', /\/sbin\/init is missing/],
    ['noruntime', { runtime: false }, 'runtime python3', /no executable python3 in \/usr\/local\/sbin:/],
    ['commented', { init: { script: '#!/bin/sh\n# exec /usr/local/bin/agent\nexec /sbin/getty\n' } }, 'init', /script that does not exec/],
    ['other-binary', { init: { script: Buffer.from('\x7fELF\0\0/usr/local/bin/agent2\0') } }, 'init', /^\/sbin\/init is a binary other than the agent that does not name it$/],
    ['workfile', { work: 'file' }, 'work', /^\/work is not a directory$/],
    ['initloop', { init: { symlink: '/sbin/init' } }, 'init', /more than 40 symlinks resolving '\/sbin\/init'.*\[CORRUPT_IMAGE\]/],
    ['init-relative-elsewhere', { init: { symlink: '../usr/bin/python3' } }, 'init', /\/sbin\/init → \.\.\/usr\/bin\/python3, which is not the agent/],
    ['init-dangling', { init: { symlink: '/usr/local/bin/missing' } }, 'init', /which is not the agent/],
    ['init-noexec-script', { init: { script: '#!/bin/sh\nexec /usr/local/bin/agent\n' }, initMode: 0o644 }, 'init', /not an executable file \(mode 0644\)/],
  ];
  for (const [name, layout, failing, re] of cases) {
    const img = await image(dir, name, layout);
    const r = await vmimg(['rootfs', 'verify', img, '--agent', 'agent', '--runtime', 'python3', '--output', 'json']);
    assert.equal(r.status, 1, `${name}: ${r.stdout}${r.stderr}`);
    const j = JSON.parse(r.stdout);
    const failed = j.checks.filter((c: { ok: boolean }) => !c.ok);
    assert.deepEqual(failed.map((c: { name: string }) => c.name), [failing], name);
    assert.match(failed[0].detail, re, name);
  }
  const notExt4 = join(dir, 'zeros.img');
  writeFileSync(notExt4, Buffer.alloc(1 << 20));
  const r = await vmimg(['rootfs', 'verify', notExt4, '--agent', 'agent', '-f', 'raw']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no ext2\/3\/4 superblock .*\[CORRUPT_IMAGE\]/);
});
