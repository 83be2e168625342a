/** Tree from tar / tar.gz / tar.zst: GNU tar archives agree with the directory they came from. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import test, { type TestContext } from 'node:test';
import { loadTree, treeFromLayers } from '../../src/tree/index.js';
import { readTarStream } from '../../src/tree/tar.js';
import { oracle, tempDir } from '../helpers/oracle.js';
import { byPath, describe, makeFixtureDir, readAll } from './helpers.js';
import { makeTar, paxRecord } from './make-tar.js';

function gnuTar(t: TestContext, args: string[]): void {
  if (!oracle(t, 'tar')) return;
  const r = spawnSync('tar', args, { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
}

async function fixtureWithoutSocket(t: TestContext): Promise<string> {
  const dir = tempDir(t);
  const server = await makeFixtureDir(dir);
  await new Promise((resolve) => server.close(resolve));
  rmSync(join(dir, 'sock'), { force: true });
  return dir;
}

for (const [label, flag] of [['tar', []], ['tar.gz', ['-z']], ['tar.zst', ['--zstd']]] as const) {
  test(`GNU tar ${label} (posix format, --xattrs, --numeric-owner) reads back as the directory`, async (t) => {
    const dir = await fixtureWithoutSocket(t);
    const out = join(tempDir(t), `fixture.${label}`);
    if (label === 'tar.zst' && spawnSync('sh', ['-c', 'command -v zstd']).status !== 0) {
      // No zstd program (CI installs none): compress GNU tar's plain archive with zstd-napi instead.
      gnuTar(t, ['--format=posix', '--xattrs', '--numeric-owner', '-C', dir, '-cf', out + '.plain', '.']);
      const { Compressor } = createRequire(import.meta.url)('zstd-napi') as { Compressor: new () => { compress(b: Uint8Array): Buffer } };
      writeFileSync(out, new Compressor().compress(readFileSync(out + '.plain')));
    } else {
      gnuTar(t, ['--format=posix', '--xattrs', '--numeric-owner', ...flag, '-C', dir, '-cf', out, '.']);
    }
    const fromDir = await loadTree([dir], { sourceDateEpoch: null });
    const fromTar = await loadTree([out], { sourceDateEpoch: null });
    assert.deepEqual(await describe(fromTar.entries), await describe(fromDir.entries));
    await fromTar.close();
  });
}

test('GNU tar --xattrs: user xattrs (binary values) survive', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'f'), 'x');
  const set = spawnSync('python3', ['-c', `import os; os.setxattr(${JSON.stringify(join(dir, 'f'))}, 'user.blob', bytes(range(256)))`]);
  if (set.status !== 0) return t.skip('cannot set user xattrs here');
  const out = join(tempDir(t), 'x.tar');
  gnuTar(t, ['--format=posix', '--xattrs', '--xattrs-include=*', '-C', dir, '-cf', out, '.']);
  const tree = await loadTree([out], { sourceDateEpoch: null });
  const f = byPath(tree.entries).get('f')!;
  assert.deepEqual(f.xattrs.get('user.blob'), Buffer.from(Array.from({ length: 256 }, (_, i) => i)));
  await tree.close();
});

test('GNU tar --format=gnu long names and long link targets', async (t) => {
  const dir = tempDir(t);
  const long = 'd'.repeat(120) + '/' + 'f'.repeat(150);
  spawnSync('mkdir', ['-p', join(dir, 'd'.repeat(120))]);
  writeFileSync(join(dir, long), 'deep');
  spawnSync('ln', ['-s', 'x'.repeat(200), join(dir, 'sym')]);
  const out = join(tempDir(t), 'gnu.tar');
  gnuTar(t, ['--format=gnu', '-C', dir, '-cf', out, '.']);
  const tree = await loadTree([out], { sourceDateEpoch: null });
  const e = byPath(tree.entries);
  assert.equal((await readAll(e.get(long)!.content!)).toString(), 'deep');
  assert.equal(e.get('sym')!.symlinkTarget!.toString(), 'x'.repeat(200));
  await tree.close();
});

test('hand-built archive: device nodes, ownership, pax times/ids, xattrs, hard links to symlinks', async (t) => {
  const tar = makeTar([
    { name: 'dev/', type: '5', mode: 0o755 },
    { name: 'dev/null', type: '3', mode: 0o666, devmajor: 1, devminor: 3 },
    { name: 'dev/sda', type: '4', mode: 0o660, uid: 0, gid: 6, devmajor: 8, devminor: 0 },
    { name: 'dev/fifo', type: '6', mode: 0o600 },
    {
      name: 'bin/ping',
      data: 'ELF',
      mode: 0o4755,
      uid: 1000,
      gid: 1000,
      pax: [
        ['mtime', '1700000000.123456789'],
        ['uid', '70000000'],
        ['SCHILY.xattr.security.capability', Buffer.from([1, 0, 0, 2, 0x20, 0, 0, 0, 0xff, 0xfe])],
        ['LIBARCHIVE.xattr.user.b%20c', Buffer.from('aGk=')],
      ],
    },
    { name: 'bin/sh', type: '2', linkname: 'busybox' },
    { name: 'bin/ash', type: '1', linkname: 'bin/sh' },
    { name: 'x'.repeat(40), pax: [['path', 'p/' + 'q'.repeat(250)]], data: 'long' },
  ]);
  const src = await readTarStream([tar], 'built.tar');
  t.after(src.close);
  const tree = treeFromLayers([src.entries], { sourceDateEpoch: null });
  const e = byPath(tree.entries);
  assert.deepEqual(e.get('dev/null')!.rdev, { major: 1, minor: 3 });
  assert.equal(e.get('dev/null')!.type, 'char');
  assert.equal(e.get('dev/sda')!.type, 'block');
  assert.equal(e.get('dev/sda')!.gid, 6);
  assert.equal(e.get('dev/fifo')!.type, 'fifo');
  const ping = e.get('bin/ping')!;
  assert.equal(ping.mode, 0o4755);
  assert.equal(ping.uid, 70_000_000);
  assert.equal(ping.gid, 1000);
  assert.equal(ping.mtimeNs, 1_700_000_000_123_456_789n);
  assert.deepEqual(ping.xattrs.get('security.capability'), Buffer.from([1, 0, 0, 2, 0x20, 0, 0, 0, 0xff, 0xfe]));
  assert.deepEqual(ping.xattrs.get('user.b c'), Buffer.from('hi'));
  assert.equal(e.get('bin/ash')!.type, 'symlink', 'the first path of the group holds the inode');
  assert.equal(e.get('bin/sh')!.type, 'hardlink');
  assert.deepEqual(e.get('bin/sh')!.linkTarget, Buffer.from('bin/ash'));
  assert.deepEqual(e.get('bin/sh')!.symlinkTarget, Buffer.from('busybox'));
  assert.equal((await readAll(e.get('p/' + 'q'.repeat(250))!.content!)).toString(), 'long');
  assert.ok(e.get('p')!.type === 'dir' && e.get('bin')!.mode === 0o755, 'parents synthesised');
});

test('spooled and in-place content agree; any chunking gives the same tree; close removes the spool', async (t) => {
  const dir = tempDir(t);
  const spoolDir = tempDir(t);
  const data = Buffer.alloc(70_000, 0x5a);
  const tar = makeTar([{ name: 'a', data }, { name: 'b/c', data: 'cc' }, { name: 'e', data: '' }]);
  writeFileSync(join(dir, 'x.tar'), tar);
  const inPlace = await loadTree([join(dir, 'x.tar')], { sourceDateEpoch: null });
  const expected = await describe(inPlace.entries);
  for (const size of [7, 321, tar.length]) {
    const chunks: Buffer[] = [];
    for (let p = 0; p < tar.length; p += size) chunks.push(tar.subarray(p, p + size));
    const src = await readTarStream(chunks, 'stream', { spoolDir });
    assert.equal(src.content, 'spool');
    assert.deepEqual(await describe(treeFromLayers([src.entries], { sourceDateEpoch: null }).entries), expected);
    await src.close();
  }
  assert.deepEqual(readdirSync(spoolDir), []);
  assert.deepEqual(readFileSync(join(dir, 'x.tar')), tar);
  await inPlace.close();
});

test('pax records encode their own length', () => {
  assert.equal(paxRecord('path', 'a').toString(), '9 path=a\n');
});
