/**
 * Property test: for random trees (files of random sizes, directories, symlinks, fifos, devices,
 * hard-link groups), the archive parses strictly (parse.ts), lists exactly the tree's entries in
 * order, and every member carries what the newc contract says (type bits, data on the last
 * hard-link member only, shared inode numbers iff shared inodes, planned size = written size).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { planCpio, writeCpio } from '../../../src/fs/cpio/index.js';
import { FILE_TYPE_BITS } from '../../../src/tree/types.js';
import { memoryTree, type Spec } from '../ext4/helpers.js';
import { parseNewc } from './parse.js';

const spec = fc.record({
  path: fc.array(fc.constantFrom('a', 'b', 'a.b', 'a-b', 'z'), { minLength: 1, maxLength: 3 }).map((p) => p.join('/')),
  kind: fc.constantFrom('file', 'file', 'dir', 'symlink', 'fifo', 'char', 'hardlink'),
  size: fc.integer({ min: 0, max: 70 }),
  mode: fc.integer({ min: 0, max: 0o7777 }),
  pick: fc.nat(),
});

test('random trees: strict parse, tree order, data placement, inode sharing', async () => {
  let withLinks = 0;
  await fc.assert(
    fc.asyncProperty(fc.uniqueArray(spec, { selector: (s) => s.path, maxLength: 14 }), async (raw) => {
      const kinds = new Map(raw.map((s) => [s.path, s.kind]));
      if (raw.some((s) => s.path.split('/').slice(0, -1).some((_, i, parts) => (kinds.get(parts.slice(0, i + 1).join('/')) ?? 'dir') !== 'dir'))) return;
      const linkable = raw.filter((s) => s.kind !== 'dir' && s.kind !== 'hardlink');
      const specs: Spec[] = [];
      for (const s of raw) {
        const base = { path: s.path, mode: s.mode };
        if (s.kind === 'file') specs.push({ ...base, data: Buffer.alloc(s.size, s.path.length) });
        else if (s.kind === 'dir') specs.push({ ...base, type: 'dir' });
        else if (s.kind === 'symlink') specs.push({ ...base, type: 'symlink', target: 't'.repeat(s.size + 1) });
        else if (s.kind === 'fifo') specs.push({ ...base, type: 'fifo' });
        else if (s.kind === 'char') specs.push({ ...base, type: 'char', rdev: [s.size, s.mode] });
        else if (linkable.length > 0) specs.push({ path: s.path, type: 'hardlink', target: linkable[s.pick % linkable.length]!.path });
      }
      const tree = memoryTree(specs);
      if (tree.entries.some((e) => e.type === 'hardlink')) withLinks++;
      const parts: Buffer[] = [];
      await writeCpio(tree, async (c) => void parts.push(c));
      const bytes = Buffer.concat(parts);
      assert.equal(planCpio(tree).size, bytes.length);
      const { members, end } = parseNewc(bytes);
      assert.equal(end, bytes.length);
      assert.deepEqual(members.map((m) => m.name.toString('latin1')), tree.entries.map((e) => (e.path.length === 0 ? '.' : e.path.toString('latin1'))));
      const lastOfGroup = new Map<number, number>();
      tree.entries.forEach((e, i) => e.linkGroup !== undefined && lastOfGroup.set(e.linkGroup, i));
      const inoOfGroup = new Map<number, number>();
      const seenIno = new Set<number>();
      tree.entries.forEach((e, i) => {
        const m = members[i]!;
        const first = e.type === 'hardlink' ? tree.entries.find((x) => x.linkGroup === e.linkGroup && x.type !== 'hardlink')! : e;
        assert.equal(m.mode, FILE_TYPE_BITS[first.type as keyof typeof FILE_TYPE_BITS] | (first.mode & 0o7777));
        if (e.linkGroup !== undefined) {
          if (!inoOfGroup.has(e.linkGroup)) {
            assert.ok(!seenIno.has(m.ino));
            inoOfGroup.set(e.linkGroup, m.ino);
            seenIno.add(m.ino);
          }
          assert.equal(m.ino, inoOfGroup.get(e.linkGroup));
          assert.equal(m.nlink, tree.entries.filter((x) => x.linkGroup === e.linkGroup).length);
        } else {
          assert.ok(!seenIno.has(m.ino), 'an inode number of its own');
          seenIno.add(m.ino);
        }
        if (first.type === 'file') {
          const carries = e.linkGroup === undefined || lastOfGroup.get(e.linkGroup) === i;
          assert.equal(m.filesize, carries ? first.size : 0);
          if (carries) assert.equal(m.data.length, first.size);
        } else if (first.type === 'symlink') assert.deepEqual(m.data, first.symlinkTarget);
        else assert.equal(m.filesize, 0);
        if (first.type === 'char') assert.deepEqual([m.rdevmajor, m.rdevminor], [first.rdev!.major, first.rdev!.minor]);
      });
    }),
    { numRuns: 300, seed: 7 },
  );
  assert.ok(withLinks >= 15, `only ${withLinks} runs had hard links`);
});
