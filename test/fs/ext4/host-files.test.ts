/**
 * File content read from a directory on disk: a raw output takes whole files through the
 * writer's copyFiles (native, off the main thread), other formats through the sink. Both must
 * give the same filesystem, and a file that changed after the tree was read (longer, shorter,
 * swapped for a symlink or a FIFO, gone) must fail the build with its own error and leave no
 * output.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { native } from '../../../src/storage/native.js';
import { loadTree } from '../../../src/tree/index.js';
import { oracle, qemuImg, run, tempDir } from '../../helpers/oracle.js';
import { assertFsckClean, build, sha256 } from './helpers.js';

/** 150 files of 0..70 KiB (some exactly block sized, one empty), one of 600 KiB, one of 3 MiB. */
function makeSource(root: string): string {
  const src = join(root, 'src');
  for (let d = 0; d < 5; d++) {
    mkdirSync(join(src, `d${d}`), { recursive: true });
    for (let f = 0; f < 30; f++) {
      const n = d * 30 + f;
      const size = n === 7 ? 0 : n % 10 === 0 ? 4096 * (n % 4) : (n * 2749) % 71_000;
      writeFileSync(join(src, `d${d}`, `f${f}`), Buffer.alloc(size, (n % 250) + 1));
    }
  }
  writeFileSync(join(src, 'mid'), Buffer.alloc(600 * 1024, 0xa5));
  writeFileSync(join(src, 'large'), Buffer.alloc(3 << 20, 0x5a));
  return src;
}

test('a directory source builds the same raw image through copyFiles as through the sink (qcow2)', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'debugfs')) return;
  const root = tempDir(t, 'vmimg-ext4-');
  const src = makeSource(root);
  const tree = await loadTree([src], { sourceDateEpoch: 1_700_000_000 });
  const raw = join(root, 'fs.raw');
  const qcow = join(root, 'fs.qcow2');
  try {
    await build(tree, raw);
    await build(tree, qcow, { format: 'qcow2' });
  } finally {
    await tree.close();
  }
  assertFsckClean(t, raw);
  const back = join(root, 'back.raw');
  assert.equal(qemuImg(['convert', '-f', 'qcow2', '-O', 'raw', qcow, back]).status, 0);
  const want = readFileSync(raw);
  assert.equal(sha256(readFileSync(back).subarray(0, want.length)), sha256(want));
  // debugfs reads every file back equal to the source.
  const out = join(root, 'out');
  mkdirSync(out);
  assert.equal(run('debugfs', ['-R', `rdump / ${out}`, raw]).status, 0);
  for (const d of readdirSync(src)) {
    const p = join(src, d);
    const names = d === 'mid' || d === 'large' ? [''] : readdirSync(p);
    for (const n of names) assert.ok(readFileSync(join(p, n)).equals(readFileSync(join(out, d, n))), `${d}/${n}`);
  }
});

for (const format of ['raw', 'qcow2'] as const) {
  test(`${format}: a file changed after the tree was read fails the build, naming it, and leaves no image`, async (t) => {
    const root = tempDir(t, 'vmimg-ext4-');
    const cases: Array<{ name: string; change: (path: string) => void; code: string; message: RegExp; victim?: string }> = [
      { name: 'grew', change: (p) => writeFileSync(p, Buffer.alloc(70_000, 1)), code: 'SOURCE_CHANGED', message: /grew past/ },
      { name: 'shrank', change: (p) => writeFileSync(p, Buffer.alloc(10, 1)), code: 'SOURCE_CHANGED', message: /ended after 10 of/ },
      { name: 'symlink', change: (p) => (rmSync(p), symlinkSync('/etc/passwd', p)), code: 'READ_FAILED', message: /ELOOP|symbolic link/ },
      { name: 'gone', change: (p) => rmSync(p), code: 'FILE_NOT_FOUND', message: /No such file/ },
      // A FIFO would block a plain open(2) for ever; the build must fail instead.
      { name: 'fifo', change: (p) => (rmSync(p), assert.equal(spawnSync('mkfifo', [p]).status, 0)), code: 'SOURCE_CHANGED', message: /no longer a regular file/ },
      // The same for a file large enough to be streamed rather than read whole.
      { name: 'fifo-large', victim: 'mid', change: (p) => (rmSync(p), assert.equal(spawnSync('mkfifo', [p]).status, 0)), code: 'SOURCE_CHANGED', message: /no longer a regular file/ },
    ];
    for (const c of cases) {
      const dir = join(root, c.name);
      const src = makeSource(dir);
      const tree = await loadTree([src], { sourceDateEpoch: 1_700_000_000 });
      const victim = c.victim ? join(src, c.victim) : join(src, 'd3', 'f11');
      c.change(victim);
      const image = join(dir, `fs.${format}`);
      try {
        await assert.rejects(build(tree, image, { format }), (e: Error & { code?: string }) => {
          assert.equal(e.code, c.code, `${c.name}: ${e.message}`);
          assert.match(e.message, c.message, c.name);
          assert.ok(e.message.includes(c.victim ?? 'd3/f11'), `${c.name}: ${e.message}`);
          return true;
        });
      } finally {
        await tree.close();
      }
      assert.equal(existsSync(image), false, `${c.name}: no image is left`);
      assert.deepEqual(readdirSync(dir).sort(), ['src'], `${c.name}: no temporary file is left`);
    }
  });
}

test('the native helper is built (the fast paths above are the ones CI tests)', { skip: process.env['VMIMG_REQUIRE_ORACLES'] !== '1' }, () => {
  assert.equal(typeof native?.copyFiles, 'function');
  assert.equal(typeof native?.readFilesSync, 'function');
});
