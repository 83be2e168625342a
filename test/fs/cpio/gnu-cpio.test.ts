/**
 * newc archives judged by GNU cpio (the oracle): `cpio -itv` lists every member, `cpio -idm`
 * extracts a tree equal to the source directory (content, modes, owners and devices as root,
 * symlinks, hard links, mtimes), `gzip -dc | cpio -t` reads the gzip variant, and for a tree without
 * hard links our bytes equal `cpio -o -H newc --reproducible` (GNU pads the end to 512 bytes).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { buildCpio } from '../../../src/fs/cpio/index.js';
import { loadTree } from '../../../src/tree/index.js';
import { vmimg } from '../../helpers/cli.js';
import { oracle, tempDir } from '../../helpers/oracle.js';
import { IS_ROOT, makeCpioFixture, snapshot, walk } from './fixture.js';
import { parseNewc } from './parse.js';

function sh(t: TestContext, script: string, cwd?: string): Buffer {
  const r = spawnSync('sh', ['-c', script], { cwd, maxBuffer: 256 * 1024 * 1024 });
  assert.equal(r.status, 0, `${script}: ${r.stderr.toString()}`);
  return r.stdout;
}

async function archive(src: string, out: string, compress: 'none' | 'gzip' = 'none'): Promise<void> {
  const tree = await loadTree([src], { sourceDateEpoch: null });
  try {
    await buildCpio(tree, out, { compress });
  } finally {
    await tree.close();
  }
}

test('cpio -idm extracts a tree equal to the source (content, modes, links, owners and devices as root)', async (t) => {
  if (!oracle(t, 'cpio')) return;
  const dir = tempDir(t, 'vmimg-cpio-');
  const src = join(dir, 'src');
  mkdirSync(src);
  makeCpioFixture(src, { hardLinks: true });
  const out = join(dir, 'out.cpio');
  const r = await vmimg(['mkfs', '-t', 'cpio', src, out]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /out\.cpio: cpio, \d+ entries, \d+ bytes/);

  const listing = sh(t, `cpio -itv --numeric-uid-gid --quiet < '${out}'`).toString('latin1').trim().split('\n');
  const names = listing.map((l) => l.replace(/^.*? \w{3} [ \d]\d  ?\d{4} /, '').replace(/ -> .*$/, ''));
  const expected = walk(src).map(([rel]) => (rel === '' ? '.' : rel));
  assert.deepEqual(names, expected, 'members in path-byte order, root as "."');
  assert.ok(listing.some((l) => /^lrwxrwxrwx .* a\/link -> \.\.\/big\.bin$/.test(l)), listing.join('\n'));

  const x = join(dir, 'x');
  mkdirSync(x);
  sh(t, `cpio -idm --quiet < '${out}'`, x);
  const a = snapshot(src);
  const b = snapshot(x);
  for (const [rel, fact] of a.facts) {
    if (rel === '') continue;
    assert.deepEqual(b.facts.get(rel), fact, `extracted '${rel}'`);
  }
  assert.deepEqual([...b.facts.keys()].sort(), [...a.facts.keys()].sort());
  assert.deepEqual(b.links, a.links, 'hard-link groups');
  assert.equal(a.links.length, 3, 'file, empty file and fifo groups');
  if (IS_ROOT) {
    assert.equal(b.facts.get('dev/wide')?.type, 'char');
    assert.equal(b.facts.get('a/e3')?.uid, 1234);
  } else {
    t.diagnostic('not root: device nodes and foreign owners were not part of the fixture');
  }
});

test('build twice gives the same bytes; GNU cpio --reproducible writes the same archive', async (t) => {
  if (!oracle(t, 'cpio')) return;
  const dir = tempDir(t, 'vmimg-cpio-');
  const src = join(dir, 'src');
  mkdirSync(src);
  makeCpioFixture(src);
  await archive(src, join(dir, 'a.cpio'));
  await archive(src, join(dir, 'b.cpio'));
  const ours = readFileSync(join(dir, 'a.cpio'));
  assert.ok(ours.equals(readFileSync(join(dir, 'b.cpio'))), 'deterministic');
  assert.equal(parseNewc(ours).end, ours.length, 'nothing after the trailer');

  const subdirs = walk(src).filter(([, st]) => st.isDirectory()).length - 1;
  const rootLinks = Number(walk(src)[0]![1].nlink);
  const topSubdirs = walk(src).filter(([rel, st]) => st.isDirectory() && rel !== '' && !rel.includes('/')).length;
  if (rootLinks !== 2 + topSubdirs) {
    t.diagnostic(`this filesystem reports directory link counts GNU cpio would copy (${rootLinks}, not 2 + ${topSubdirs}); byte comparison skipped`);
    return;
  }
  assert.ok(subdirs > 3);
  const gnu = sh(t, `{ printf '.\\0'; find . -mindepth 1 -printf '%P\\0' | LC_ALL=C sort -z; } | cpio -o -0 -H newc --reproducible --quiet`, src);
  assert.equal(gnu.length % 512, 0);
  assert.ok(gnu.length >= ours.length && gnu.length - ours.length < 512, `GNU ${gnu.length} bytes, ours ${ours.length}`);
  const diff = ours.findIndex((byte, i) => gnu[i] !== byte);
  assert.equal(diff, -1, `first difference at byte ${diff}`);
  assert.ok(gnu.subarray(ours.length).every((byte) => byte === 0), 'GNU block padding is zeros');
});

test('gzip variant: gzip -dc gives the plain archive, cpio -t reads it, bytes are deterministic', async (t) => {
  if (!oracle(t, 'cpio') || !oracle(t, 'gzip')) return;
  const dir = tempDir(t, 'vmimg-cpio-');
  const src = join(dir, 'src');
  mkdirSync(src);
  makeCpioFixture(src, { hardLinks: true });
  await archive(src, join(dir, 'plain.cpio'));
  const r = await vmimg(['mkfs', '-t', 'cpio', '--compress', 'gzip', '--output', 'json', src, join(dir, 'a.cpio.gz')]);
  assert.equal(r.status, 0, r.stderr);
  const info = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.equal(info['compress'], 'gzip');
  assert.equal(info['archive-size'], readFileSync(join(dir, 'plain.cpio')).length);
  await archive(src, join(dir, 'b.cpio.gz'), 'gzip');
  const gz = readFileSync(join(dir, 'a.cpio.gz'));
  assert.equal(info['image-size'], gz.length);
  assert.ok(gz.equals(readFileSync(join(dir, 'b.cpio.gz'))), 'deterministic gzip');
  assert.deepEqual([...gz.subarray(0, 4)], [0x1f, 0x8b, 8, 0], 'gzip magic, deflate, no flags');
  assert.equal(gz.readUInt32LE(4), 0, 'gzip header mtime 0');
  assert.ok(sh(t, `gzip -dc '${join(dir, 'a.cpio.gz')}'`).equals(readFileSync(join(dir, 'plain.cpio'))));
  const names = sh(t, `gzip -dc '${join(dir, 'a.cpio.gz')}' | cpio -t --quiet`).toString('latin1').trim().split('\n');
  assert.equal(names.length, walk(src).length);
  assert.equal(names[0], '.');
});
