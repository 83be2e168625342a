/** Tree from a directory: every entry type, modes, ns mtimes, hard links, content streaming. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'node:test';
import { loadTree } from '../../src/tree/index.js';
import { tempDir } from '../helpers/oracle.js';
import { byPath, describe, makeFixtureDir, readAll } from './helpers.js';

test('directory source: entry types, modes, mtimes, links and content', async (t) => {
  const dir = tempDir(t);
  const server = await makeFixtureDir(dir);
  const tree = await loadTree([dir], { sourceDateEpoch: null });
  server.close();
  const e = byPath(tree.entries);
  assert.deepEqual(tree.entries[0]!.path, Buffer.alloc(0));
  assert.equal(e.get('')!.type, 'dir');
  assert.equal(e.get('a')!.type, 'dir');
  assert.equal(e.get('a/b/c')!.type, 'dir');
  assert.equal(e.get('a/hello.txt')!.type, 'file');
  assert.equal(e.get('a/hello.txt')!.size, 6);
  assert.equal(e.get('a/hello.txt')!.mtimeNs, 1_600_000_000_123_456_000n, 'nanosecond mtime kept');
  assert.equal(e.get('suid')!.mode, 0o4755);
  assert.equal(e.get('sgid')!.mode, 0o2711);
  assert.equal(e.get('tmp')!.mode, 0o1777);
  assert.equal(e.get('a/link')!.type, 'symlink');
  assert.deepEqual(e.get('a/link')!.symlinkTarget, Buffer.from('../big.bin'));
  assert.equal(e.get('a/link')!.size, 10);
  assert.equal(e.get('fifo')!.type, 'fifo');
  assert.equal(e.get('sock')!.type, 'socket');
  assert.equal(e.get('a/b/empty')!.size, 0);
  // hard links: the first path holds the inode, the later one is a 'hardlink' to it
  assert.equal(e.get('a/b/h2')!.type, 'file');
  assert.equal(e.get('a/b/h2')!.linkGroup, 0);
  assert.equal(e.get('h1')!.type, 'hardlink');
  assert.deepEqual(e.get('h1')!.linkTarget, Buffer.from('a/b/h2'));
  assert.equal(e.get('h1')!.linkGroup, 0);
  assert.equal((await readAll(e.get('h1')!.content!)).toString(), 'shared inode');
  // content: streamed in chunks and by range
  const big = readFileSync(join(dir, 'big.bin'));
  const bigEntry = e.get('big.bin')!;
  assert.equal(createHash('sha256').update(await readAll(bigEntry.content!)).digest('hex'), createHash('sha256').update(big).digest('hex'));
  assert.deepEqual(Buffer.from(await bigEntry.content!.read(1_048_570, 20)), big.subarray(1_048_570, 1_048_590));
  await assert.rejects(bigEntry.content!.read(big.length - 1, 2), { code: 'OUT_OF_BOUNDS' });
  // sorted by path bytes
  const paths = tree.entries.map((x) => x.path);
  assert.deepEqual(paths, [...paths].sort(Buffer.compare));
  await tree.close();
});

test('directory source: non-UTF-8 names kept as bytes', async (t) => {
  const dir = tempDir(t);
  const name = Buffer.concat([Buffer.from(dir + '/caf'), Buffer.from([0xe9])]);
  writeFileSync(name, 'latin1 name');
  const tree = await loadTree([dir], { sourceDateEpoch: null });
  assert.deepEqual(tree.entries[1]!.path, Buffer.from([0x63, 0x61, 0x66, 0xe9]));
});

test('directory source: a file replaced by a symlink after the scan is not followed', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'f'), 'data');
  writeFileSync(join(dir, 'secret'), 'secret');
  const tree = await loadTree([dir], { sourceDateEpoch: null });
  rmSync(join(dir, 'f'));
  symlinkSync('secret', join(dir, 'f'));
  await assert.rejects(readAll(byPath(tree.entries).get('f')!.content!), { code: 'READ_FAILED' });
});

test('directory source: a file that shrank is reported as changed', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'f'), 'data data');
  const tree = await loadTree([dir], { sourceDateEpoch: null });
  writeFileSync(join(dir, 'f'), 'd');
  await assert.rejects(readAll(byPath(tree.entries).get('f')!.content!), { code: 'SOURCE_CHANGED' });
});

test('normalisation: SOURCE_DATE_EPOCH clamps, squash-owner, identical listings on re-read', async (t) => {
  const dir = tempDir(t);
  const server = await makeFixtureDir(dir);
  const one = await loadTree([dir], { sourceDateEpoch: 1_500_000_000, squashOwner: true });
  const two = await loadTree([dir], { sourceDateEpoch: 1_500_000_000, squashOwner: true });
  server.close();
  for (const e of one.entries) {
    assert.ok(e.mtimeNs <= 1_500_000_000_000_000_000n);
    assert.equal(e.uid, 0);
    assert.equal(e.gid, 0);
  }
  assert.deepEqual(await describe(one.entries), await describe(two.entries));
  const env = await loadTreeWithEnv(dir, '1400000000');
  assert.ok(env.entries.every((e) => e.mtimeNs <= 1_400_000_000_000_000_000n));
});

async function loadTreeWithEnv(dir: string, value: string): ReturnType<typeof loadTree> {
  const old = process.env['SOURCE_DATE_EPOCH'];
  process.env['SOURCE_DATE_EPOCH'] = value;
  try {
    return await loadTree([dir]);
  } finally {
    if (old === undefined) delete process.env['SOURCE_DATE_EPOCH'];
    else process.env['SOURCE_DATE_EPOCH'] = old;
  }
}
