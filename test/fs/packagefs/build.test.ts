/** packagefs builder and reader: determinism, round trips, layout rules, size bound, atomicity. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'node:test';
import { buildPackagefs, memorySource, PackagefsReader } from '../../../src/fs/packagefs/index.js';
import { loadTree } from '../../../src/tree/index.js';
import { tempDir } from '../../helpers/oracle.js';
import { buildInMemory, memoryTree, SAMPLE, sha256 } from './helpers.js';

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of it) parts.push(c);
  return Buffer.concat(parts);
}

test('build twice → identical bytes; layout follows the spec', async () => {
  const a = await buildInMemory(memoryTree(SAMPLE));
  const b = await buildInMemory(memoryTree([...SAMPLE].reverse()));
  assert.equal(sha256(a), sha256(b));
  assert.equal(a.subarray(0, 8).toString(), 'VMIPKGFS');
  assert.equal(a.length % 512, 0);
  const r = await PackagefsReader.open(memorySource(a));
  assert.deepEqual(r.entries.map((e) => `${e.path}:${e.type}`), [':dir', 'bin:dir', 'bin/alias:file', 'bin/tool:file', 'etc:dir', 'etc/empty:file', 'etc/motd:file', 'lib:symlink', 'usr:dir', 'usr/lib:dir', 'usr/lib/big:file']);
  for (const e of r.entries) {
    assert.equal(e.uid, 0);
    assert.equal(e.mtime, 1_700_000_000);
    if (e.type === 'file' && e.size > 0) assert.equal(e.dataOffset % 512, 0);
  }
  const alias = r.stat('/bin/alias')!;
  const tool = r.stat('bin/tool/')!;
  assert.equal(alias.dataOffset, tool.dataOffset, 'hard links share their data');
  assert.equal(tool.mode, 0o104755);
  assert.equal(r.stat('lib')!.target!.toString(), 'usr/lib');
  assert.equal(r.stat('etc/empty')!.dataOffset, 0);
  assert.deepEqual(r.list('etc').map((e) => e.path.toString()), ['etc/empty', 'etc/motd']);
  assert.deepEqual(r.list('/').map((e) => e.path.toString()), ['bin', 'etc', 'lib', 'usr']);
  assert.equal((await collect(r.readFile(r.stat('etc/motd')!))).toString(), 'hello\n');
  assert.equal(Buffer.from(await r.readRange(r.stat('usr/lib/big')!, 3 * 1024 * 1024, 5)).toString('hex'), 'a5a5a5a5a5');
  const v = await r.verify();
  assert.equal(v.checked, 6);
  assert.deepEqual(v.mismatches, []);
});

test('ownership and mtime come from the options or SOURCE_DATE_EPOCH', async () => {
  const img = await buildInMemory(memoryTree(SAMPLE), { uid: 7, gid: 8, mtime: 42 });
  const r = await PackagefsReader.open(memorySource(img));
  assert.ok(r.entries.every((e) => e.uid === 7 && e.gid === 8 && e.mtime === 42));
  process.env['SOURCE_DATE_EPOCH'] = '1234';
  try {
    const img2 = await buildInMemory(memoryTree(SAMPLE), { mtime: undefined });
    assert.ok((await PackagefsReader.open(memorySource(img2))).entries.every((e) => e.mtime === 1234));
  } finally {
    delete process.env['SOURCE_DATE_EPOCH'];
  }
});

test('round trip from a directory: every file hashes as its source; build twice on disk is identical', async (t) => {
  const dir = tempDir(t);
  const out = tempDir(t);
  mkdirSync(join(dir, 'a/b'), { recursive: true });
  const files: Record<string, Buffer> = {};
  for (let i = 0; i < 40; i++) {
    const data = Buffer.alloc((i * 7919) % 5000, i);
    files[`a/${i % 2 ? 'b/' : ''}f${i}`] = data;
    writeFileSync(join(dir, `a/${i % 2 ? 'b/' : ''}f${i}`), data);
  }
  symlinkSync('a/b', join(dir, 'link'));
  for (const name of ['one.img', 'two.img']) {
    const tree = await loadTree([dir], { sourceDateEpoch: 0 });
    await buildPackagefs(tree, join(out, name), { mtime: 0 });
    await tree.close();
  }
  const one = readFileSync(join(out, 'one.img'));
  assert.equal(sha256(one), sha256(readFileSync(join(out, 'two.img'))));
  const r = await PackagefsReader.open(memorySource(one));
  for (const [path, data] of Object.entries(files)) assert.equal(r.stat(path)!.sha256.toString('hex'), sha256(data), path);
  for (const [path, data] of Object.entries(files)) assert.equal(sha256(await collect(r.readFile(r.stat(path)!))), sha256(data));
  assert.deepEqual(readdirSync(out).sort(), ['one.img', 'two.img'], 'no temporary files left');
});

test('--max-size: too large fails before anything is created; special files refused or skipped', async (t) => {
  const out = tempDir(t);
  await assert.rejects(buildPackagefs(memoryTree(SAMPLE), join(out, 'x.img'), { maxSize: 1024 * 1024 }), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'FS_TOO_LARGE');
    assert.match(e.message, /needs \d+ bytes, more than the maximum of 1048576 bytes/);
    return true;
  });
  assert.deepEqual(readdirSync(out), []);
  const withFifo = [...SAMPLE, { path: 'run/pipe', type: 'fifo' as const }];
  await assert.rejects(buildInMemory(memoryTree(withFifo)), { code: 'UNSUPPORTED_ENTRY', message: /fifo 'run\/pipe'.*--skip-special/ });
  const skipped = await PackagefsReader.open(memorySource(await buildInMemory(memoryTree(withFifo), { skipSpecial: true })));
  assert.equal(skipped.stat('run/pipe'), undefined);
  assert.equal(skipped.stat('run')!.type, 'dir');
});

test('verify and readFile report content that no longer matches its hash', async () => {
  const img = await buildInMemory(memoryTree(SAMPLE));
  const r0 = await PackagefsReader.open(memorySource(img));
  const motd = r0.stat('etc/motd')!;
  img[motd.dataOffset] = img[motd.dataOffset]! ^ 0xff;
  const r = await PackagefsReader.open(memorySource(img));
  const v = await r.verify();
  assert.equal(v.mismatches.length, 1);
  assert.equal(v.mismatches[0]!.path.toString(), 'etc/motd');
  await assert.rejects(collect(r.readFile(r.stat('etc/motd')!)), { code: 'CHECKSUM_MISMATCH' });
});

test('the same tree from a directory and from its GNU tarball gives the same image', async (t) => {
  const dir = tempDir(t);
  const out = tempDir(t);
  mkdirSync(join(dir, 'etc/conf.d'), { recursive: true });
  writeFileSync(join(dir, 'etc/conf.d/a'), 'alpha');
  writeFileSync(join(dir, 'etc/b'), Buffer.alloc(10_000, 3));
  symlinkSync('conf.d/a', join(dir, 'etc/link'));
  const r = spawnSync('tar', ['--format=posix', '--numeric-owner', '-czf', join(out, 't.tar.gz'), '-C', dir, '.']);
  if (r.error) return t.skip('tar not available');
  for (const [input, name] of [[dir, 'dir.img'], [join(out, 't.tar.gz'), 'tar.img']] as const) {
    const tree = await loadTree([input], { sourceDateEpoch: 0 });
    await buildPackagefs(tree, join(out, name), { mtime: 0 });
    await tree.close();
  }
  assert.equal(sha256(readFileSync(join(out, 'dir.img'))), sha256(readFileSync(join(out, 'tar.img'))));
});
