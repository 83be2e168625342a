/**
 * pack → unpack round trips over generated trees (fast-check: every entry type, unicode names,
 * empty and multi-block files, hard links), judged against the tree: content, modes, ownership
 * (the tests run as root in CI; skipped checks say so otherwise), symlink targets, mtimes, fifos
 * and device numbers. Packing twice gives the same manifest rows and the same blob set; a second
 * pack into the same store uploads nothing.
 */
import assert from 'node:assert/strict';
import { existsSync, lstatSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { ManifestReader } from '../../src/flist/manifest.js';
import { packTree } from '../../src/flist/pack.js';
import { openRouter } from '../../src/flist/store/index.js';
import { unpackFlist } from '../../src/flist/unpack.js';
import { bufferContent } from '../../src/tree/content.js';
import { treeFromLayers } from '../../src/tree/index.js';
import type { RawEntry, Tree } from '../../src/tree/types.js';
import { isVmimgError } from '../../src/util/errors.js';
import { memoryTree, sha256, specsFromRecords, type Spec } from '../fs/ext4/helpers.js';
import { tempDir } from '../helpers/oracle.js';

const isRoot = process.getuid?.() === 0;

const nameChar = fc.constantFrom(...'abcxyzABC019-_.+=,~é日本ж🙂 '.split(/(?:)/u));
const name = fc.array(nameChar, { minLength: 1, maxLength: 16 }).map((a) => a.join('')).filter((n) => n !== '.' && n !== '..');
const record = fc.record({
  parent: fc.nat(),
  name,
  kind: fc.constantFrom('file', 'file', 'file', 'dir', 'dir', 'symlink', 'hardlink', 'fifo', 'char', 'block'),
  size: fc.oneof({ weight: 5, arbitrary: fc.integer({ min: 0, max: 3000 }) }, { weight: 1, arbitrary: fc.integer({ min: 500_000, max: 1_600_000 }) }),
  seed: fc.nat(255),
  mode: fc.integer({ min: 0, max: 0o7777 }),
  uid: fc.constantFrom(0, 1000, 65534),
  gid: fc.constantFrom(0, 100, 65534),
  mtime: fc.integer({ min: 0, max: 4_000_000_000 }),
  target: fc.constantFrom('x', '../up/there', '/abs/target', 'a'.repeat(200)),
});

/** The records as a tree description (test/fs/ext4/helpers.ts specsFromRecords). */
function specsOf(records: Array<typeof record extends fc.Arbitrary<infer T> ? T : never>): Spec[] {
  return specsFromRecords(
    records.map((r) => ({
      ...r,
      mtimeNs: BigInt(r.mtime) * 1_000_000_000n,
      data: () => Buffer.from(Array.from({ length: r.size }, (_, i) => (i * 31 + r.seed + (i >> 9)) & 0xff)),
      rdev: [r.seed, r.mode] as [number, number],
    })),
    // Directories keep owner write/exec so unpack can fill them before their final mode applies.
    { dirMode: (mode) => mode | 0o700 },
  );
}

/** Checks the unpacked folder against the tree. */
async function assertSame(tree: Tree, dir: string): Promise<void> {
  const seen = new Set<string>();
  const walk = (rel: string): void => {
    for (const n of readdirSync(join(dir, rel))) {
      const p = rel ? `${rel}/${n}` : n;
      seen.add(p);
      if (lstatSync(join(dir, p)).isDirectory()) walk(p);
    }
  };
  walk('');
  for (const e of tree.entries) {
    const p = e.path.toString('utf8');
    if (p === '') continue;
    const host = join(dir, p);
    assert.ok(seen.has(p), `${p} unpacked`);
    const st = lstatSync(host);
    assert.equal(Math.floor(st.mtimeMs / 1000), Number(e.mtimeNs / 1_000_000_000n), `${p} mtime`);
    if (isRoot) assert.deepEqual([st.uid, st.gid], [e.uid, e.gid], `${p} owner`);
    if (e.type === 'symlink') {
      assert.ok(st.isSymbolicLink(), `${p} is a symlink`);
      assert.equal(readlinkSync(host), e.symlinkTarget!.toString(), `${p} target kept as recorded`);
      continue;
    }
    assert.equal(st.mode & 0o7777, e.mode, `${p} mode`);
    if (e.type === 'file' || e.type === 'hardlink') {
      assert.ok(st.isFile(), `${p} is a file`);
      const want = e.size > 0 ? await e.content!.read(0, Math.min(e.size, 16 * 1024 * 1024)) : new Uint8Array();
      assert.equal(sha256(readFileSync(host)), sha256(want), `${p} content`);
    } else if (e.type === 'dir') assert.ok(st.isDirectory(), `${p} is a dir`);
    else if (e.type === 'fifo') assert.ok(st.isFIFO(), `${p} is a fifo`);
    else if (isRoot && (e.type === 'char' || e.type === 'block')) {
      assert.ok(e.type === 'char' ? st.isCharacterDevice() : st.isBlockDevice(), `${p} device type`);
      const major = Number((BigInt(st.rdev) >> 8n) & 0xfffn) | Number((BigInt(st.rdev) >> 32n) & ~0xfffn);
      const minor = Number(BigInt(st.rdev) & 0xffn) | Number((BigInt(st.rdev) >> 12n) & ~0xffn);
      assert.deepEqual([major, minor], [e.rdev!.major, e.rdev!.minor], `${p} rdev`);
    }
  }
}

function rows(manifest: string): string {
  const r = ManifestReader.open(manifest);
  try {
    const out: string[] = [];
    for (const { path, row } of r.walk()) out.push(`${row.ino} ${row.parent} ${path} ${row.mode} ${row.size} ${row.uid}:${row.gid} ${row.mtime} ${r.extra(row.ino)?.toString('hex') ?? ''} ${r.blocks(row.ino).map((b) => b.id.toString('hex') + b.key.toString('hex')).join(',')}`);
    return [...out, JSON.stringify(r.tags()), JSON.stringify(r.routes())].join('\n');
  } finally {
    r.close();
  }
}

function blobSet(store: string): string[] {
  const out: string[] = [];
  if (!existsSync(store)) return out;
  for (const d of readdirSync(store)) for (const f of readdirSync(join(store, d))) out.push(`${d}/${f}`);
  return out.sort();
}

test('random trees survive pack → unpack; packing twice is identical and uploads nothing new', async (t) => {
  const dir = tempDir(t, 'vmimg-flist-rt-');
  let n = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(record, { minLength: 1, maxLength: 60 }), async (records) => {
      const k = n++;
      const tree = memoryTree(specsOf(records));
      const store = join(dir, `store${k}`);
      const router = await openRouter([`dir://${store}`]);
      try {
        const m1 = join(dir, `a${k}.fl`);
        const s1 = await packTree(tree, { manifest: m1, router });
        const blobs = blobSet(store);
        assert.equal(blobs.length, s1.uniqueBlobs);
        assert.equal(s1.blobsNew, s1.uniqueBlobs);
        const m2 = join(dir, `b${k}.fl`);
        const s2 = await packTree(tree, { manifest: m2, router });
        assert.equal(s2.blobsNew, 0, 'second pack: every blob already stored');
        assert.equal(s2.blobsExisting, s1.uniqueBlobs);
        assert.deepEqual(blobSet(store), blobs);
        assert.equal(rows(m2), rows(m1), 'same manifest rows');
        assert.deepEqual(readFileSync(m2), readFileSync(m1), 'same manifest bytes');
        const out = join(dir, `out${k}`);
        const u = await unpackFlist(m1, out, { router, preserveOwnership: isRoot });
        assert.equal(u.files, s1.files);
        await assertSame(tree, out);
      } finally {
        await router.close();
      }
    }),
    { numRuns: 12, seed: 20_261_123 },
  );
});

test('content shared between files and packs is stored once; blocks are 512 KiB', async (t) => {
  const dir = tempDir(t, 'vmimg-flist-dedup-');
  const block = Buffer.alloc(512 * 1024);
  for (let i = 0; i < block.length; i++) block[i] = (i * 7919) & 0xff;
  const big = Buffer.concat([block, block, block, Buffer.from('tail')]);
  const tree = memoryTree([{ path: 'a', data: big }, { path: 'b', data: big }, { path: 'c', data: block }, { path: 'e', data: '' }]);
  const router = await openRouter([join(dir, 'store')]);
  const s = await packTree(tree, { manifest: join(dir, 'x.fl'), router });
  assert.equal(s.blocks, 4 + 4 + 1, 'a and b: 3 full blocks and a tail; c: one block; e: none');
  assert.equal(s.uniqueBlobs, 2, 'the repeated block and the tail');
  assert.equal(s.dedupRatio, 4.5);
  const r = ManifestReader.open(join(dir, 'x.fl'));
  assert.equal(r.blocks(r.lookup('/e')!.ino).length, 0);
  r.close();
  const other = memoryTree([{ path: 'z', data: block }]);
  const s2 = await packTree(other, { manifest: join(dir, 'y.fl'), router });
  assert.deepEqual([s2.blobsNew, s2.blobsExisting], [0, 1], 'across packs');
  await router.close();
});

test('hard links: to a symlink or fifo they stay that type; a link walked before its first name shares its blocks', async (t) => {
  const dir = tempDir(t, 'vmimg-flist-hardlink-');
  const body = Buffer.alloc(700_000, 3);
  // 'a/data' is the group's first name by path, but the walk (directories taken last-in first-out)
  // reaches 'z' before 'a': the hard link 'z/copy' is encoded first and 'a/data' reuses its blocks.
  const tree = memoryTree([
    { path: 'a', type: 'dir' },
    { path: 'z', type: 'dir' },
    { path: 'a/data', data: body },
    { path: 'z/copy', type: 'hardlink', target: 'a/data' },
    { path: 'link', type: 'symlink', target: 'z/copy' },
    { path: 'link2', type: 'hardlink', target: 'link' },
    { path: 'pipe', type: 'fifo' },
    { path: 'pipe2', type: 'hardlink', target: 'pipe' },
  ]);
  const router = await openRouter([join(dir, 'store')]);
  const s = await packTree(tree, { manifest: join(dir, 'x.fl'), router });
  assert.deepEqual([s.files, s.symlinks, s.special, s.bytes, s.blocks, s.uniqueBlobs], [2, 2, 2, 700_000, 4, 2]);
  const r = ManifestReader.open(join(dir, 'x.fl'));
  const mode = (p: string): string => (r.lookup(p)!.mode >> 12).toString(8);
  assert.deepEqual(['/link2', '/pipe2', '/z/copy'].map(mode), ['12', '1', '10']);
  assert.ok(r.lookup('/z/copy')!.ino < r.lookup('/a/data')!.ino, 'z is walked first');
  assert.equal(r.extra(r.lookup('/link2')!.ino)?.toString(), 'z/copy');
  const ids = (p: string): string[] => r.blocks(r.lookup(p)!.ino).map((b) => b.id.toString('hex'));
  assert.deepEqual(ids('/z/copy'), ids('/a/data'));
  r.close();
  const out = join(dir, 'out');
  await unpackFlist(join(dir, 'x.fl'), out, { router });
  assert.deepEqual(readFileSync(join(out, 'a', 'data')), body);
  assert.deepEqual(readFileSync(join(out, 'z', 'copy')), body);
  assert.equal(readlinkSync(join(out, 'link2')), 'z/copy');
  assert.ok(lstatSync(join(out, 'pipe2')).isFIFO());
  await router.close();
});

test('a name that is not UTF-8 is refused (rfs stores names as text) and leaves no manifest', async (t) => {
  const dir = tempDir(t, 'vmimg-flist-utf8-');
  const raw: RawEntry[] = [{ path: Buffer.from([0x66, 0xff, 0x67]), type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, size: 1, content: bufferContent(Buffer.from('x')), xattrs: new Map() }];
  const router = await openRouter([join(dir, 'store')]);
  await assert.rejects(packTree(treeFromLayers([raw], { sourceDateEpoch: null }), { manifest: join(dir, 'x.fl'), router }), (e: unknown) => isVmimgError(e) && e.code === 'UNSUPPORTED_ENTRY' && /not valid UTF-8/.test(e.message));
  assert.deepEqual(readdirSync(dir).filter((n) => n.includes('.fl')), [], 'no manifest, no temporary file');
  await router.close();
});
