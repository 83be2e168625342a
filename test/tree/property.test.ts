/** Property tests: path safety, tree invariants, and independence from input order and chunking. */
import assert from 'node:assert/strict';
import test from 'node:test';
import fc from 'fast-check';
import { treeFromLayers } from '../../src/tree/index.js';
import { readTarStream } from '../../src/tree/tar.js';
import { normaliseArchivePath, parentPath } from '../../src/tree/path.js';
import { isVmimgError } from '../../src/util/errors.js';
import { describe } from './helpers.js';
import { makeTar, type TarMember } from './make-tar.js';

test('normaliseArchivePath: safe output or UNSAFE_PATH', () => {
  const byte = fc.constantFrom(0x61, 0x62, 0x2e, 0x2f, 0x00, 0xff);
  fc.assert(
    fc.property(fc.array(byte, { maxLength: 24 }), (bytes) => {
      let out: Buffer;
      try {
        out = normaliseArchivePath(Uint8Array.from(bytes));
      } catch (e) {
        assert.ok(isVmimgError(e) && e.code === 'UNSAFE_PATH');
        return;
      }
      assert.ok(!out.includes(0));
      if (out.length === 0) return;
      assert.notEqual(out[0], 0x2f);
      for (const part of out.toString('latin1').split('/')) assert.ok(part !== '' && part !== '.' && part !== '..', out.toString('latin1'));
    }),
    { numRuns: 2000, seed: 6 },
  );
});

const member = fc.record({
  path: fc.array(fc.constantFrom('a', 'b', 'a.b', 'é', 'z'), { minLength: 1, maxLength: 4 }).map((p) => p.join('/')),
  kind: fc.constantFrom('file', 'dir', 'symlink', 'fifo'),
  data: fc.string({ maxLength: 40 }),
  mode: fc.integer({ min: 0, max: 0o7777 }),
  mtime: fc.integer({ min: 0, max: 2_000_000_000 }),
});

function toTar(members: Array<{ path: string; kind: string; data: string; mode: number; mtime: number }>): TarMember[] {
  return members.map((m) => ({
    name: m.path,
    type: { file: '0', dir: '5', symlink: '2', fifo: '6' }[m.kind]!,
    data: m.kind === 'file' ? m.data : '',
    linkname: m.kind === 'symlink' ? m.data || 't' : undefined,
    mode: m.mode,
    mtime: m.mtime,
  }));
}

test('tree invariants, and the same tree for any member order and any chunking', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.uniqueArray(member, { selector: (m) => m.path, maxLength: 12 }),
      fc.integer({ min: 1, max: 700 }),
      fc.integer({ min: 0, max: 1000 }),
      async (members, chunk, seed) => {
        // Keep only sets where no member lies below a non-directory member (extraction would fail).
        const kinds = new Map(members.map((m) => [m.path, m.kind]));
        if (members.some((m) => m.path.split('/').slice(0, -1).some((_, i, parts) => (kinds.get(parts.slice(0, i + 1).join('/')) ?? 'dir') !== 'dir'))) return;
        const shuffled = [...members].sort((a, b) => ((a.path.length * 7919 + seed) % 13) - ((b.path.length * 7919 + seed) % 13));
        const a = makeTar(toTar(members));
        const b = makeTar(toTar(shuffled));
        const chunks: Buffer[] = [];
        for (let p = 0; p < b.length; p += chunk) chunks.push(b.subarray(p, p + chunk));
        const sa = await readTarStream([a], 'a');
        const sb = await readTarStream(chunks, 'b');
        const ta = treeFromLayers([sa.entries], { sourceDateEpoch: 1_000_000_000 }, sa.close);
        const tb = treeFromLayers([sb.entries], { sourceDateEpoch: 1_000_000_000 }, sb.close);
        try {
          assert.deepEqual(await describe(ta.entries), await describe(tb.entries));
        } finally {
          await ta.close();
          await tb.close();
        }
        const paths = ta.entries.map((e) => e.path.toString('latin1'));
        assert.equal(paths[0], '');
        for (let i = 1; i < ta.entries.length; i++) {
          assert.ok(Buffer.compare(ta.entries[i - 1]!.path, ta.entries[i]!.path) < 0, 'strictly sorted');
          const parent = parentPath(ta.entries[i]!.path).toString('latin1');
          const p = ta.entries.find((e) => e.path.toString('latin1') === parent);
          assert.equal(p?.type, 'dir', `parent of ${paths[i]}`);
          assert.ok(ta.entries[i]!.mtimeNs <= 1_000_000_000_000_000_000n);
        }
      },
    ),
    { numRuns: 150, seed: 42 },
  );
});
