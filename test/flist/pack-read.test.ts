/**
 * How pack reads file content (src/flist/plain-blocks.ts): files of a directory are read straight
 * from their host path into reused buffers, other content is re-chunked from its stream. Both
 * must give the same blocks for the same bytes at every size around the small-file and block
 * boundaries, and a file that changed after the walk (shorter, longer, no longer a regular file)
 * must fail the pack with SOURCE_CHANGED and leave no manifest.
 */
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ManifestReader } from '../../src/flist/manifest.js';
import { packTree } from '../../src/flist/pack.js';
import { openRouter } from '../../src/flist/store/index.js';
import { unpackFlist } from '../../src/flist/unpack.js';
import { loadTree } from '../../src/tree/index.js';
import { isVmimgError } from '../../src/util/errors.js';
import { memoryTree } from '../fs/ext4/helpers.js';
import { oracle, run, tempDir } from '../helpers/oracle.js';

const K = 1024;
const SIZES = [0, 1, 4095, 256 * K, 256 * K + 1, 512 * K - 1, 512 * K, 512 * K + 1, 1_300_000, 3 * 512 * K, 4 * 512 * K, 9 * 512 * K + 3];

function body(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 131 + seed + (i >> 12) * 7) & 0xff;
  return b;
}

function blocksByPath(manifest: string, paths: string[]): Map<string, string> {
  const r = ManifestReader.open(manifest);
  try {
    return new Map(paths.map((p) => [p, r.blocks(r.lookup(`/${p}`)!.ino).map((b) => b.id.toString('hex') + b.key.toString('hex')).join(',')]));
  } finally {
    r.close();
  }
}

test('files read from their host path give the blocks their streamed bytes give, at every boundary size', async (t) => {
  const dir = tempDir(t, 'vmimg-flist-read-');
  const src = join(dir, 'src');
  mkdirSync(src);
  const files = SIZES.map((size, i) => ({ path: `f${i}-${size}`, data: body(size, i) }));
  // The same bytes twice: blocks shared between files are uploaded once, the buffers reused.
  files.push({ path: 'copy', data: files.at(-1)!.data });
  for (const f of files) writeFileSync(join(src, f.path), f.data);
  const router = await openRouter([join(dir, 'store')]);
  t.after(() => router.close());

  const fromDir = await packTree(await loadTree([src], { sourceDateEpoch: null }), { manifest: join(dir, 'dir.fl'), router });
  const fromStream = await packTree(memoryTree(files), { manifest: join(dir, 'mem.fl'), router });
  const paths = files.map((f) => f.path);
  assert.deepEqual(blocksByPath(join(dir, 'dir.fl'), paths), blocksByPath(join(dir, 'mem.fl'), paths));
  assert.equal(fromDir.blocks, fromStream.blocks);
  assert.equal(fromStream.blobsNew, 0, 'the streamed pack finds every blob the host reads stored');

  const out = join(dir, 'out');
  await unpackFlist(join(dir, 'dir.fl'), out, { router });
  for (const f of files) assert.ok(readFileSync(join(out, f.path)).equals(f.data), `${f.path} unpacked as written`);
});

test('a file shorter, longer or no longer regular than at the walk fails with SOURCE_CHANGED and leaves no manifest', async (t) => {
  const dir = tempDir(t, 'vmimg-flist-changed-');
  const router = await openRouter([join(dir, 'store')]);
  t.after(() => router.close());
  const cases: Array<[string, number, (path: string) => void, RegExp]> = [
    ['large file shrank', 1_300_000, (p) => truncateSync(p, 700_000), /ended after/],
    ['large file grew', 1_300_000, (p) => appendFileSync(p, 'more'), /grew past/],
    ['small file shrank', 5000, (p) => truncateSync(p, 10), /ended after/],
    ['small file grew', 5000, (p) => appendFileSync(p, 'more'), /grew past/],
  ];
  if (oracle(t, 'mkfifo')) {
    const toFifo = (p: string): void => {
      rmSync(p);
      assert.equal(run('mkfifo', [p]).status, 0);
    };
    cases.push(['large file became a FIFO', 1_300_000, toFifo, /no longer a regular file/], ['small file became a FIFO', 5000, toFifo, /no longer a regular file/]);
  }
  for (const [name, size, change, why] of cases) {
    const src = join(dir, name.replaceAll(' ', '-'));
    mkdirSync(src);
    writeFileSync(join(src, 'a'), body(600_000, 1));
    writeFileSync(join(src, 'b'), body(size, 2));
    const tree = await loadTree([src], { sourceDateEpoch: null });
    change(join(src, 'b'));
    const manifest = join(dir, `${name}.fl`);
    await assert.rejects(
      packTree(tree, { manifest, router }),
      (e: unknown) => isVmimgError(e) && e.code === 'SOURCE_CHANGED' && why.test(e.message) && e.message.includes(join(src, 'b')),
      name,
    );
    assert.equal(existsSync(manifest), false, `${name}: no manifest`);
  }
});
