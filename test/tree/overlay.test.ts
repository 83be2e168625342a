/** Overlays of several sources: later wins, OCI whiteouts (image-spec layer.md) honoured. */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'node:test';
import { loadTree, treeFromLayers } from '../../src/tree/index.js';
import { readTarStream } from '../../src/tree/tar.js';
import type { RawEntry } from '../../src/tree/types.js';
import { tempDir } from '../helpers/oracle.js';
import { readAll } from './helpers.js';
import { makeTar, type TarMember } from './make-tar.js';

const spools: Array<() => Promise<void>> = [];
test.after(async () => {
  for (const close of spools) await close();
});

async function layer(members: TarMember[]): Promise<RawEntry[]> {
  const src = await readTarStream([makeTar(members)], 'layer.tar');
  spools.push(src.close);
  return src.entries;
}

const listing = (entries: readonly { path: Buffer; type: string }[]): string[] => entries.map((e) => `${e.path.toString()}:${e.type}`);

test('whiteouts remove lower entries and subtrees; opaque dirs hide lower children only', async () => {
  const lower = await layer([
    { name: 'a/x', data: 'x' },
    { name: 'a/y', data: 'y' },
    { name: 'b/z', data: 'z' },
    { name: 'b/sub/deep', data: 'd' },
    { name: 'c/d/e', data: 'e' },
    { name: 'keep', data: 'lower' },
    { name: 'gone/inner', data: 'i' },
  ]);
  const upper = await layer([
    { name: 'a/.wh.x', data: '' },
    { name: 'b/new', data: 'n' },
    { name: 'b/.wh..wh..opq', data: '' },
    { name: 'c', data: 'now a file' },
    { name: '.wh.gone', data: '' },
    { name: '.wh.never-existed', data: '' },
    { name: 'keep', data: 'upper' },
    { name: 'a/.wh..wh.plnk', data: '' },
  ]);
  const tree = treeFromLayers([lower, upper], { sourceDateEpoch: null });
  assert.deepEqual(listing(tree.entries), [':dir', 'a:dir', 'a/y:file', 'b:dir', 'b/new:file', 'c:file', 'keep:file']);
  const keep = tree.entries.find((e) => e.path.toString() === 'keep')!;
  assert.equal((await readAll(keep.content!)).toString(), 'upper');
});

test('a whiteout never hides an entry of its own layer, whatever the order', async () => {
  const lower = await layer([{ name: 'f', data: 'old' }]);
  const upper = await layer([{ name: 'f', data: 'new' }, { name: '.wh.f', data: '' }, { name: 'd/g', data: 'g' }, { name: 'd/.wh..wh..opq', data: '' }]);
  const tree = treeFromLayers([lower, upper], { sourceDateEpoch: null });
  assert.deepEqual(listing(tree.entries), [':dir', 'd:dir', 'd/g:file', 'f:file']);
  assert.equal((await readAll(tree.entries[3]!.content!)).toString(), 'new');
});

test('a single input keeps .wh. names unless whiteouts are asked for', async () => {
  const only = await layer([{ name: '.wh.x', data: '' }, { name: 'x', data: 'x' }]);
  assert.deepEqual(listing(treeFromLayers([only], { sourceDateEpoch: null }).entries), [':dir', '.wh.x:file', 'x:file']);
  assert.deepEqual(listing(treeFromLayers([only], { sourceDateEpoch: null, whiteouts: true }).entries), [':dir', 'x:file']);
});

test('a directory over a directory merges; its metadata comes from the later one', async () => {
  const lower = await layer([{ name: 'd/', type: '5', mode: 0o700, uid: 5 }, { name: 'd/a', data: 'a' }]);
  const upper = await layer([{ name: 'd/', type: '5', mode: 0o755, uid: 7 }, { name: 'd/b', data: 'b' }]);
  const tree = treeFromLayers([lower, upper], { sourceDateEpoch: null });
  assert.deepEqual(listing(tree.entries), [':dir', 'd:dir', 'd/a:file', 'd/b:file']);
  assert.equal(tree.entries[1]!.mode, 0o755);
  assert.equal(tree.entries[1]!.uid, 7);
});

test('overlay of a directory and a tarball through loadTree; hard-link groups stay per source', async (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, 'etc'));
  writeFileSync(join(dir, 'etc/hostname'), 'base');
  writeFileSync(join(dir, 'etc/motd'), 'hi');
  const tarPath = join(tempDir(t), 'top.tar');
  writeFileSync(tarPath, makeTar([{ name: 'etc/hostname', data: 'top' }, { name: 'etc/.wh.motd', data: '' }, { name: 'etc/alias', type: '1', linkname: 'etc/hostname' }]));
  const tree = await loadTree([dir, tarPath], { sourceDateEpoch: null });
  assert.deepEqual(listing(tree.entries), [':dir', 'etc:dir', 'etc/alias:file', 'etc/hostname:hardlink']);
  assert.equal((await readAll(tree.entries[2]!.content!)).toString(), 'top');
  await tree.close();
});
