/**
 * fast-check property: random trees (deep and wide directories, long and unicode names, empty
 * and larger files, hard links, every entry type, xattrs, extreme times and ids) under random
 * feature sets build into images that e2fsck -fn finds clean and debugfs reads back equal.
 */
import fc from 'fast-check';
import { join } from 'node:path';
import { test } from 'node:test';
import { oracle, tempDir } from '../../helpers/oracle.js';
import { assertContentMatches, assertFsckClean, assertStatsMatch, build, memoryTree, specsFromRecords, type Spec } from './helpers.js';

const KINDS = ['file', 'file', 'file', 'dir', 'dir', 'symlink', 'hardlink', 'char', 'block', 'fifo', 'socket'] as const;
/** Name characters: ASCII without '/', '"', '\\' and NUL, plus a few multi-byte ones. */
const nameChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCXYZ0123456789-_.+=,~é日本ж🙂 '.split(/(?:)/u));
const name = fc.oneof(
  { weight: 9, arbitrary: fc.array(nameChar, { minLength: 1, maxLength: 24 }).map((a) => a.join('')) },
  { weight: 1, arbitrary: fc.integer({ min: 200, max: 255 }).map((n) => 'L'.repeat(n)) },
).filter((n) => n !== '.' && n !== '..' && Buffer.byteLength(n) <= 255);

const record = fc.record({
  parent: fc.nat(),
  name,
  kind: fc.constantFrom(...KINDS),
  size: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 5000 }) }, { weight: 1, arbitrary: fc.integer({ min: 4096, max: 300_000 }) }),
  seed: fc.nat(255),
  mode: fc.integer({ min: 0, max: 0o7777 }),
  uid: fc.oneof(fc.constantFrom(0, 1000), fc.nat(0xffffffff)),
  gid: fc.oneof(fc.constantFrom(0, 100), fc.nat(0xffffffff)),
  mtimeNs: fc.bigInt({ min: -(2n ** 31n) * 1_000_000_000n, max: (3n * 2n ** 32n - 2n ** 31n) * 1_000_000_000n - 1n }),
  target: fc.integer({ min: 1, max: 300 }),
  xattrs: fc.dictionary(fc.stringMatching(/^user\.[a-z]{1,12}$/), fc.uint8Array({ maxLength: 120 }).map((a) => Buffer.from(a)), { maxKeys: 4 }),
  rdev: fc.tuple(fc.nat(4095), fc.nat(0xfffff)),
});

/** The records as a tree description (test/fs/ext4/helpers.ts specsFromRecords); paths up to 4000 bytes. */
function specsOf(records: Parameters<Parameters<typeof record.map>[0]>[0][]): Spec[] {
  return specsFromRecords(
    records.map((r) => ({ ...r, data: () => Buffer.from(Array.from({ length: r.size }, (_, i) => (i * 7 + r.seed) & 0xff)), target: 't'.repeat(r.target) })),
    { maxPathBytes: 4000 },
  );
}

test('random trees build into e2fsck-clean images that debugfs reads back equal', async (t) => {
  if (!oracle(t, 'e2fsck') || !oracle(t, 'debugfs')) return;
  const dir = tempDir(t, 'vmimg-ext4-prop-');
  let n = 0;
  let entries = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(record, { minLength: 1, maxLength: 400, size: 'max' }),
      fc.record({ journal: fc.boolean(), features: fc.constantFrom('', '^metadata_csum', '^64bit', '^sparse_super,^dir_index'), freePercent: fc.integer({ min: 0, max: 50 }) }),
      async (records, options) => {
        const run = join(dir, `r${n++}`);
        const tree = memoryTree(specsOf(records));
        const image = join(dir, `r${n}.img`);
        await build(tree, image, options);
        assertFsckClean(t, image);
        assertStatsMatch(t, image, tree);
        await assertContentMatches(t, image, tree, run);
        entries += tree.entries.length;
      },
    ),
    { numRuns: 30, seed: 20_251_122 },
  );
  t.diagnostic(`${n} images, ${entries} entries checked`);
});

/** The scale: 10k+ files per tree (kinds weighted to files, small sizes to keep it quick). */
const bulkRecord = record.chain((r) =>
  fc.record({ kind: fc.constantFrom(...KINDS, 'file', 'file', 'file', 'file', 'file', 'file', 'file', 'file', 'file', 'file', 'file', 'file', 'file', 'file', 'file', 'file', 'file', 'file', 'file', 'file', 'file', 'file'), size: fc.integer({ min: 0, max: 3000 }) }).map((o) => ({ ...r, ...o })),
);

test('random trees with over 10k files build clean and read back equal', async (t) => {
  if (!oracle(t, 'e2fsck') || !oracle(t, 'debugfs')) return;
  const dir = tempDir(t, 'vmimg-ext4-bulk-');
  let n = 0;
  const sizes: number[] = [];
  // fc.check, not fc.assert: the counterexample is megabytes of records; report the error itself.
  const result = await fc.check(
    fc.asyncProperty(fc.array(bulkRecord, { minLength: 13_500, maxLength: 14_000, size: 'max' }), fc.boolean(), async (records, journal) => {
      const tree = memoryTree(specsOf(records));
      const files = tree.entries.filter((e) => e.type === 'file' || e.type === 'hardlink').length;
      if (files < 10_000) throw new Error(`generator made only ${files} files`);
      sizes.push(files);
      const image = join(dir, `b${n}.img`);
      await build(tree, image, { journal });
      assertFsckClean(t, image);
      assertStatsMatch(t, image, tree);
      await assertContentMatches(t, image, tree, join(dir, `b${n++}`));
    }),
    { numRuns: 2, seed: 20_261_123, endOnFailure: true },
  );
  if (result.failed) throw result.errorInstance instanceof Error ? result.errorInstance : new Error(`property failed: ${String(result.errorInstance)}`);
  t.diagnostic(`${n} images with ${sizes.join(', ')} files checked`);
});
