/**
 * ext4 builds judged by e2fsck -fn (clean, no messages) and debugfs (stat and rdump equal the
 * tree): every entry type, hard links, xattrs in the inode and in a block, fast and slow
 * symlinks, device numbers past 8 bits, post-2038 and nanosecond times, 32-bit ids, and the
 * feature variants (journal, no checksums, 32-byte descriptors, several groups, no sparse_super).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { oracle, run, tempDir } from '../../helpers/oracle.js';
import { assertContentMatches, assertFsckClean, assertStatsMatch, build, debugfs, memoryTree, parseStat, type Spec } from './helpers.js';
import { SAMPLE } from './sample.js';


async function checkTree(t: import('node:test').TestContext, specs: Spec[], options: Parameters<typeof build>[2] = {}): Promise<string> {
  const dir = tempDir(t, 'vmimg-ext4-');
  const image = join(dir, 'fs.img');
  const tree = memoryTree(specs);
  await build(tree, image, options);
  if (!assertFsckClean(t, image)) return image;
  assertStatsMatch(t, image, tree);
  await assertContentMatches(t, image, tree, join(dir, 'out'));
  return image;
}

test('sample tree: e2fsck clean, debugfs stat and rdump equal the tree', async (t) => {
  const image = await checkTree(t, SAMPLE);
  const motd = parseStat(debugfs(t, image, 'stat /etc/motd'));
  assert.equal(motd.xattrs.get('user.small'), '"v"');
  const big = debugfs(t, image, 'stat /etc/big-xattrs');
  assert.match(big, /File ACL: [1-9]/, 'a 300-byte value goes to an xattr block');
  const root = parseStat(debugfs(t, image, 'stat /'));
  assert.equal(root.links, 2 + 8, 'root links: . and .. plus 8 subdirectories (with lost+found)');
  const lf = debugfs(t, image, 'stat /lost+found');
  assert.match(lf, /Size: 16384/);
});

for (const [name, options] of [
  ['journal (-J)', { journal: true }],
  ['no metadata_csum, 32-byte descriptors', { features: '^metadata_csum,^64bit' }],
  ['no dir_index, no ext_attr-free tree', { features: '^dir_index,^huge_file' }],
  ['several groups with sparse_super backups and a journal', { size: 700 * 1024 * 1024, journal: true }],
  ['several groups without sparse_super', { size: 300 * 1024 * 1024, features: '^sparse_super' }],
] as const) {
  test(`variant: ${name}`, async (t) => {
    await checkTree(t, SAMPLE, options);
  });
}

test('journal: inode 8 with a clean jbd2 superblock and the s_jnl_blocks backup', async (t) => {
  const image = await checkTree(t, [{ path: 'f', data: 'x' }], { journal: true, size: 256 * 1024 * 1024 });
  const dumpe2fs = oracle(t, 'dumpe2fs');
  if (!dumpe2fs) return;
  const stats = run(dumpe2fs, ['-h', image]).stdout;
  assert.match(stats, /Filesystem features:.*has_journal/);
  assert.match(stats, /Journal backup: +inode blocks/);
  assert.match(stats, /Total journal blocks: +4096/);
  assert.match(stats, /Journal start: +0/);
});

test('a directory of 3000 entries and a deep chain of directories', async (t) => {
  const specs: Spec[] = [];
  for (let i = 0; i < 3000; i++) specs.push({ path: `wide/entry-with-a-longish-name-${String(i).padStart(5, '0')}`, data: i % 3 ? `${i}` : '' });
  let deep = 'deep';
  for (let i = 0; i < 60; i++) deep += `/d${i}`;
  specs.push({ path: `${deep}/leaf`, data: 'bottom' });
  await checkTree(t, specs);
});

test('a file crossing block groups gets an extent tree with an index block', async (t) => {
  const { zeroContent } = await import('./helpers.js');
  // Without sparse_super every group starts with a superblock copy, so a 5-group file has 5+ runs.
  const image = await checkTree(t, [{ path: 'huge', content: zeroContent(600 * 1024 * 1024 + 5) }, { path: 'after', data: 'tail' }], { features: '^sparse_super' });
  const stat = debugfs(t, image, 'stat /huge');
  assert.match(stat, /\(ETB0\):/, 'extent tree block listed by debugfs');
});

test('an explicit size that is too small names the size that fits', async (t) => {
  const dir = tempDir(t, 'vmimg-ext4-');
  await assert.rejects(build(memoryTree(SAMPLE), join(dir, 'x.img'), { size: 200 * 1024 }), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'FS_TOO_SMALL');
    assert.match(e.message, /fits in \d+ bytes/);
    return true;
  });
});
