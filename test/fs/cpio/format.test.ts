/**
 * The newc bytes themselves, read by an independent strict parser (parse.ts): what the kernel's
 * initramfs unpacker and GNU cpio expect (4-byte alignment, NUL-terminated names, parents before
 * children, the trailer), inode numbering, hard-link data on the last member, field limits
 * (CPIO_LIMIT before any file exists), no partial output, bounded chunks (streaming).
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildCpio, planCpio, writeCpio } from '../../../src/fs/cpio/index.js';
import type { ContentSource, Tree } from '../../../src/tree/types.js';
import { vmimg } from '../../helpers/cli.js';
import { tempDir } from '../../helpers/oracle.js';
import { memoryTree, zeroContent, type Spec } from '../ext4/helpers.js';
import { parseNewc } from './parse.js';

const SPECS: Spec[] = [
  { path: '', type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeNs: 1_700_000_000_999_999_999n },
  { path: 'bin', type: 'dir' },
  { path: 'bin/sh', type: 'symlink', target: 'busybox', mode: 0o777 },
  { path: 'bin/busybox', data: 'ELF...', mode: 0o755 },
  { path: 'dev', type: 'dir' },
  { path: 'dev/console', type: 'char', rdev: [5, 1], mode: 0o600 },
  { path: 'dev/vda', type: 'block', rdev: [254, 0], mode: 0o660, gid: 6 },
  { path: 'dev/wide', type: 'char', rdev: [4095, 1048575] },
  { path: 'run', type: 'dir', mode: 0o1777 },
  { path: 'run/fifo', type: 'fifo' },
  { path: 'run/sock', type: 'socket' },
  { path: 'a', data: 'shared', uid: 0xfffffffe, gid: 0xfffffffd },
  { path: 'a-b', data: 'xyz', xattrs: { 'user.k': 'v' } },
  { path: 'm/n', type: 'hardlink', target: 'a' },
  { path: 'z', type: 'hardlink', target: 'a' },
  { path: 'e1', data: '' },
  { path: 'e2', type: 'hardlink', target: 'e1' },
  { path: 'old', data: 'o', mtimeNs: -1n + 1n },
  { path: 'run/sh-link', type: 'hardlink', target: 'bin/sh' },
  { path: 'run/fifo2', type: 'hardlink', target: 'run/fifo' },
];

async function archiveOf(tree: Tree, options: Parameters<typeof writeCpio>[2] = {}): Promise<{ bytes: Buffer; chunks: number[] }> {
  const parts: Buffer[] = [];
  await writeCpio(tree, async (c) => void parts.push(Buffer.from(c)), options);
  return { bytes: Buffer.concat(parts), chunks: parts.map((p) => p.length) };
}

test('members: sorted, root ".", inode numbers in order, full st_mode, owners, mtimes, devices, trailer', async () => {
  const tree = memoryTree(SPECS);
  const { bytes } = await archiveOf(tree);
  const { members, end } = parseNewc(bytes);
  assert.equal(end, bytes.length);
  const names = members.map((m) => m.name.toString('latin1'));
  assert.deepEqual(names, ['.', 'a', 'a-b', 'bin', 'bin/busybox', 'bin/sh', 'dev', 'dev/console', 'dev/vda', 'dev/wide', 'e1', 'e2', 'm', 'm/n', 'old', 'run', 'run/fifo', 'run/fifo2', 'run/sh-link', 'run/sock', 'z']);
  for (const [i, n] of names.entries()) {
    assert.ok(!n.startsWith('/') && !n.startsWith('./'), n);
    const parent = n.includes('/') ? n.slice(0, n.lastIndexOf('/')) : '.';
    if (n !== '.') assert.ok(names.indexOf(parent) >= 0 && names.indexOf(parent) < i, `parent of ${n} comes first`);
  }
  const by = new Map(members.map((m) => [m.name.toString('latin1'), m]));
  const root = by.get('.')!;
  assert.equal(root.ino, 0);
  assert.equal(root.mode, 0o040755);
  assert.equal(root.mtime, 1_700_000_000, 'seconds, rounded down');
  assert.equal(root.nlink, 2 + 4, 'root: bin, dev, m, run');
  assert.equal(by.get('bin')!.nlink, 2);
  // Distinct inodes number 0, 1, 2, ... in archive order.
  const firstSeen: number[] = [];
  for (const m of members) if (!firstSeen.includes(m.ino)) firstSeen.push(m.ino);
  assert.deepEqual(firstSeen, firstSeen.map((_, i) => i));
  assert.equal(by.get('bin/busybox')!.mode, 0o100755);
  assert.equal(by.get('bin/sh')!.mode, 0o120777);
  assert.equal(by.get('bin/sh')!.data.toString(), 'busybox');
  assert.equal(by.get('dev/console')!.mode, 0o020600);
  assert.deepEqual([by.get('dev/console')!.rdevmajor, by.get('dev/console')!.rdevminor], [5, 1]);
  assert.equal(by.get('dev/vda')!.mode, 0o060660);
  assert.equal(by.get('dev/vda')!.gid, 6);
  assert.deepEqual([by.get('dev/wide')!.rdevmajor, by.get('dev/wide')!.rdevminor], [4095, 1048575]);
  assert.equal(by.get('run')!.mode, 0o041777);
  assert.equal(by.get('run/fifo')!.mode, 0o010644);
  assert.equal(by.get('run/sock')!.mode, 0o140644);
  assert.equal(by.get('old')!.mtime, 0);
  for (const m of members) {
    assert.equal(m.check, 0);
    assert.deepEqual([m.devmajor, m.devminor], [0, 0], 'no host device numbers');
  }
  await tree.close();
});

test('hard links: one c_ino and c_nlink per group, data only on the last member in archive order', async () => {
  const { bytes } = await archiveOf(memoryTree(SPECS));
  const by = new Map(parseNewc(bytes).members.map((m) => [m.name.toString('latin1'), m]));
  const group = ['a', 'm/n', 'z'].map((n) => by.get(n)!);
  assert.ok(group.every((m) => m.ino === group[0]!.ino && m.nlink === 3 && m.mode === 0o100644));
  assert.ok(group.every((m) => m.uid === 0xfffffffe && m.gid === 0xfffffffd), 'the group shares the first member\'s owner');
  assert.deepEqual(group.map((m) => m.filesize), [0, 0, 6]);
  assert.equal(group[2]!.data.toString(), 'shared');
  const empties = ['e1', 'e2'].map((n) => by.get(n)!);
  assert.ok(empties.every((m) => m.ino === empties[0]!.ino && m.nlink === 2 && m.filesize === 0));
  assert.notEqual(empties[0]!.ino, group[0]!.ino);
  assert.equal(by.get('a-b')!.nlink, 1);
  // Groups of other types keep their type; every symlink member carries the target.
  const sh = ['bin/sh', 'run/sh-link'].map((n) => by.get(n)!);
  assert.ok(sh.every((m) => m.mode === 0o120777 && m.nlink === 2 && m.ino === sh[0]!.ino && m.data.toString() === 'busybox'));
  const fifos = ['run/fifo', 'run/fifo2'].map((n) => by.get(n)!);
  assert.ok(fifos.every((m) => m.mode === 0o010644 && m.nlink === 2 && m.ino === fifos[0]!.ino && m.filesize === 0));
});

test('padding: every data length 0..9 keeps members 4-byte aligned with NUL padding', async () => {
  const specs: Spec[] = [];
  for (let n = 0; n < 10; n++) specs.push({ path: `${'n'.repeat(n + 1)}`, data: 'd'.repeat(n) });
  const { bytes } = await archiveOf(memoryTree(specs));
  const { members } = parseNewc(bytes);
  assert.equal(bytes.length % 4, 0);
  for (const m of members.slice(1)) assert.equal(m.data.toString(), 'd'.repeat(m.name.length - 1));
  assert.equal(planCpio(memoryTree(specs)).size, bytes.length, 'planned size is the written size');
});

test('deterministic: two builds of equal trees give equal bytes; xattrs are counted as dropped', async () => {
  const a = await archiveOf(memoryTree(SPECS));
  const b = await archiveOf(memoryTree(SPECS));
  assert.ok(a.bytes.equals(b.bytes));
  const r = await writeCpio(memoryTree(SPECS), async () => undefined);
  assert.equal(r.droppedXattrs, 1);
  assert.equal(r.entries, SPECS.length + 1, 'entries plus the synthesised m/');
  assert.equal(r.dataBytes, 6 + 6 + 3 + 1);
});

test('streaming: a 64 MiB file goes out in bounded chunks', async () => {
  const { chunks } = await archiveOf(memoryTree([{ path: 'big', content: zeroContent(64 * 1024 * 1024 + 1) }]));
  assert.ok(chunks.length > 60);
  assert.ok(Math.max(...chunks) <= 1024 * 1024, `largest chunk ${Math.max(...chunks)}`);
  const gz = await archiveOf(memoryTree([{ path: 'big', content: zeroContent(64 * 1024 * 1024 + 1) }]), { compress: 'gzip' });
  assert.ok(Math.max(...gz.chunks) <= 1024 * 1024);
});

function limitCase(t: import('node:test').TestContext, specs: Spec[], field: RegExp): Promise<void> {
  const dir = tempDir(t, 'vmimg-cpio-');
  const out = join(dir, 'x.cpio');
  return assert
    .rejects(buildCpio(memoryTree(specs), out), (e: Error & { code?: string; details?: Record<string, unknown> }) => {
      assert.equal(e.code, 'CPIO_LIMIT');
      assert.match(e.message, field);
      return true;
    })
    .then(() => assert.deepEqual(readdirSync(dir), [], 'no output, no temporary file'));
}

test('limits: file size, mtime, symlink target, name length, ids (CPIO_LIMIT, nothing written)', async (t) => {
  const huge = zeroContent(2 ** 32);
  await limitCase(t, [{ path: 'f', content: huge }], /'f': file size 4294967296 .*at most 4294967295/);
  assert.equal(planCpio(memoryTree([{ path: 'f', content: zeroContent(2 ** 32 - 1) }])).members[1]!.header.filesize, 2 ** 32 - 1);
  await limitCase(t, [{ path: 'f', data: 'x', mtimeNs: -1n }], /mtime \(seconds\) -1/);
  await limitCase(t, [{ path: 'f', data: 'x', mtimeNs: 2n ** 32n * 1_000_000_000n }], /mtime \(seconds\) 4294967296/);
  planCpio(memoryTree([{ path: 'f', data: 'x', mtimeNs: (2n ** 32n - 1n) * 1_000_000_000n }]));
  await limitCase(t, [{ path: 'l', type: 'symlink', target: 'x'.repeat(4096) }], /symlink target length 4096/);
  planCpio(memoryTree([{ path: 'l', type: 'symlink', target: 'x'.repeat(4095) }]));
  const longName = `${'d'.repeat(200)}/`.repeat(21).slice(0, 4096);
  await limitCase(t, [{ path: longName, data: '' }], /name size \(with NUL\) 4097/);
  planCpio(memoryTree([{ path: longName.slice(0, 4095), data: '' }]));
  await limitCase(t, [{ path: 'f', data: '', uid: 2 ** 32 }], /uid 4294967296/);
  await limitCase(t, [{ path: 'c', type: 'char', rdev: [2 ** 32, 0] }], /device major/);
});

function shortContent(size: number, actual: number): ContentSource {
  return { size, async *stream() { yield Buffer.alloc(actual); }, async read() { return Buffer.alloc(0); } };
}

test('no partial output: a source that shrank mid-build leaves neither file nor temp, and keeps an old file', async (t) => {
  const dir = tempDir(t, 'vmimg-cpio-');
  const out = join(dir, 'x.cpio');
  writeFileSync(out, 'old');
  const tree = memoryTree([{ path: 'a', data: 'fine' }, { path: 'b', content: shortContent(10_000_000, 100) }]);
  await assert.rejects(buildCpio(tree, out), { code: 'SOURCE_CHANGED' });
  assert.equal(readFileSync(out, 'utf8'), 'old');
  assert.deepEqual(readdirSync(dir), ['x.cpio']);
  await assert.rejects(buildCpio(memoryTree([{ path: 'b', content: shortContent(10, 100) }]), join(dir, 'y.cpio'), { compress: 'gzip' }), { code: 'SOURCE_CHANGED' });
  assert.ok(!existsSync(join(dir, 'y.cpio')));
});

test('max size: refused before writing (plain) or as soon as passed (gzip)', async (t) => {
  const dir = tempDir(t, 'vmimg-cpio-');
  const tree = memoryTree([{ path: 'big', content: zeroContent(1024 * 1024) }]);
  await assert.rejects(buildCpio(tree, join(dir, 'a.cpio'), { maxSize: 1024 * 1024 }), { code: 'FS_TOO_LARGE' });
  const r = await buildCpio(tree, join(dir, 'b.cpio.gz'), { compress: 'gzip', maxSize: 1024 * 1024 });
  assert.ok(r.imageSize < 10_000, 'zeros compress');
  await assert.rejects(buildCpio(memoryTree([{ path: 'r', data: Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 7919) % 251)) }]), join(dir, 'c.cpio.gz'), { compress: 'gzip', maxSize: 1000 }), { code: 'FS_TOO_LARGE' });
  assert.deepEqual(readdirSync(dir), ['b.cpio.gz']);
});

test('CLI: mkfs -t cpio usage and option errors', async (t) => {
  const dir = tempDir(t, 'vmimg-cpio-');
  writeFileSync(join(dir, 'f'), 'x');
  const bad = await vmimg(['mkfs', '-t', 'cpio', '--compress', 'xz', '--output', 'json', dir, join(dir, 'o.cpio')]);
  assert.notEqual(bad.status, 0);
  assert.match(bad.stdout + bad.stderr, /UNSUPPORTED_OPTION|compression 'xz' is not supported/);
  const usage = await vmimg(['mkfs', '-t', 'cpio', dir]);
  assert.notEqual(usage.status, 0);
  assert.match(usage.stderr, /needs inputs and an output file/);
  const ok = await vmimg(['mkfs', '-t', 'cpio', '--mtime', '1000', '--owner', '7:8', '-o', join(dir, 'sub/o.cpio'), dir]);
  assert.equal(ok.status, 0, ok.stderr);
  const { members } = parseNewc(readFileSync(join(dir, 'sub/o.cpio')));
  assert.ok(members.every((m) => m.uid === 7 && m.gid === 8 && m.mtime <= 1000));
  assert.equal(ok.stderr, '', 'no warning without xattrs');
});

test('CLI: extended attributes newc cannot hold are a warning on stderr and counted in JSON', async (t) => {
  const dir = tempDir(t, 'vmimg-cpio-');
  const { makeTar } = await import('../../tree/make-tar.js');
  writeFileSync(join(dir, 'x.tar'), makeTar([{ name: 'f', type: '0', data: 'x', pax: [['SCHILY.xattr.user.k', 'v']] }]));
  const human = await vmimg(['mkfs', '-t', 'cpio', join(dir, 'x.tar'), join(dir, 'a.cpio')]);
  assert.equal(human.status, 0, human.stderr);
  assert.match(human.stderr, /warning: 1 entries have extended attributes, which a newc archive cannot hold/);
  const json = await vmimg(['mkfs', '-t', 'cpio', '--output', 'json', join(dir, 'x.tar'), join(dir, 'b.cpio')]);
  assert.equal(JSON.parse(json.stdout)['dropped-xattrs'], 1);
});
