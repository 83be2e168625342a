/**
 * Source folders for the reader tests and a walk comparing a filesystem read through
 * Ext4Reader with the folder it was made from (content, mode, owner, times, links, symlink
 * targets, xattrs as python3's os.listxattr/getxattr report them).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chownSync, closeSync, linkSync, lstatSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, readlinkSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Ext4Reader, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type Ext4Inode } from '../../../src/fs/ext4/read/reader.js';
import { run } from '../../helpers/oracle.js';

export const HUGE_SIZE = 5 * 1024 * 1024 * 1024 + 12345;
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

export interface SourceOptions {
  /** A 3000-entry directory (htree with mke2fs). */
  bigDir?: boolean;
  /** A sparse file past 4 GiB. */
  huge?: boolean;
  /** Set user.* xattrs with python3 (needs python3 and a filesystem with user xattrs). */
  xattrs?: boolean;
}

/** Builds the folder `dir/src` and returns its path. */
export function sourceTree(dir: string, o: SourceOptions = {}): string {
  const src = join(dir, 'src');
  for (const d of ['etc', 'usr/bin', 'usr/local/bin', 'home/user', 'work']) mkdirSync(join(src, d), { recursive: true });
  writeFileSync(join(src, 'etc', 'hostname'), 'reader\n', { mode: 0o600 });
  writeFileSync(join(src, 'etc', 'empty'), '');
  const blob = Buffer.alloc(3_000_000);
  for (let i = 0; i < blob.length; i++) blob[i] = (i * 2654435761) >>> 24;
  writeFileSync(join(src, 'usr', 'bin', 'tool'), blob, { mode: 0o755 });
  writeFileSync(join(src, 'usr', 'local', 'bin', 'agent'), '#!/bin/sh\necho agent\n', { mode: 0o755 });
  writeFileSync(join(src, 'home', 'user', 'notes'), 'x'.repeat(5000), { mode: 0o640 });
  chownSync(join(src, 'home', 'user'), 1000, 1000);
  chownSync(join(src, 'home', 'user', 'notes'), 1000, 100);
  chownSync(join(src, 'etc', 'empty'), 70000, 70001);
  linkSync(join(src, 'usr', 'bin', 'tool'), join(src, 'usr', 'bin', 'tool-link'));
  symlinkSync('tool', join(src, 'usr', 'bin', 'fast'));
  symlinkSync('/' + 'x'.repeat(100) + '/target', join(src, 'usr', 'bin', 'slow'));
  symlinkSync('../local/bin/agent', join(src, 'usr', 'bin', 'rel'));
  symlinkSync('/usr/bin/fast', join(src, 'usr', 'bin', 'chain'));
  symlinkSync('../../../../../..', join(src, 'usr', 'bin', 'up'));
  symlinkSync('/loop-b', join(src, 'loop-a'));
  symlinkSync('/loop-a', join(src, 'loop-b'));
  const fd = openSync(join(src, 'sparse'), 'w');
  writeSync(fd, 'head');
  writeSync(fd, 'tail', 70 * 1024 * 1024);
  closeSync(fd);
  if (o.huge) {
    const h = openSync(join(src, 'huge'), 'w');
    writeSync(h, 'start');
    writeSync(h, 'around-4g', 4 * 1024 * 1024 * 1024 - 4);
    writeSync(h, 'end', HUGE_SIZE - 3);
    closeSync(h);
  }
  if (o.bigDir) {
    mkdirSync(join(src, 'big'));
    for (let i = 0; i < 3000; i++) writeFileSync(join(src, 'big', `entry-${i}`), String(i));
  }
  if (o.xattrs) {
    const script = [
      'import os, sys',
      's = sys.argv[1]',
      "os.setxattr(s + '/etc/hostname', 'user.small', b'v1')",
      "os.setxattr(s + '/etc/hostname', 'user.other', b'')",
      "os.setxattr(s + '/usr/bin/tool', 'user.big', bytes(range(256)) * 2 + b'x' * 188)",
      "os.setxattr(s + '/home/user', 'user.dir', b'on a directory')",
      "for i in range(12): os.setxattr(s + '/etc/empty', 'user.n%02d' % i, b'value-%d' % i)",
    ].join('\n');
    const r = run('python3', ['-c', script, src]);
    assert.equal(r.status, 0, `python3 setxattr: ${r.stderr}`);
  }
  return src;
}

/** Every entry's xattrs (not following symlinks), by relative path, as python3 reports them. */
export function hostXattrs(src: string): Map<string, Map<string, string>> {
  const script = [
    'import os, sys, json',
    'root = sys.argv[1]; out = {}',
    'for d, dirs, files in os.walk(root):',
    '  for n in dirs + files + ([] if d != root else []):',
    '    p = os.path.join(d, n); r = os.path.relpath(p, root)',
    '    try: names = os.listxattr(p, follow_symlinks=False)',
    '    except OSError: names = []',
    '    out[r] = {k: os.getxattr(p, k, follow_symlinks=False).hex() for k in names}',
    'print(json.dumps(out))',
  ].join('\n');
  const r = run('python3', ['-c', script, src]);
  assert.equal(r.status, 0, r.stderr);
  const parsed = JSON.parse(r.stdout) as Record<string, Record<string, string>>;
  return new Map(Object.entries(parsed).map(([k, v]) => [k, new Map(Object.entries(v))]));
}

export interface CompareOptions {
  /** mtime seconds (and nanoseconds when `nsec`) must equal the folder's. */
  times?: boolean;
  nsec?: boolean;
  xattrs?: Map<string, Map<string, string>>;
  /** Hard-linked files share one inode with the folder's link count. */
  links?: boolean;
}

/** Walks the filesystem and the folder together; returns the number of entries compared. */
export async function compareTree(fs: Ext4Reader, src: string, o: CompareOptions = {}): Promise<number> {
  let n = 0;
  const inodeOf = new Map<number, number>();
  const walk = async (rel: string, inode: Ext4Inode): Promise<void> => {
    const host = join(src, rel);
    const st = lstatSync(host, { bigint: true });
    const at = `/${rel}`;
    assert.equal(inode.mode & 0o7777, Number(st.mode & 0o7777n), `${at} mode`);
    assert.deepEqual([inode.uid, inode.gid], [Number(st.uid), Number(st.gid)], `${at} owner`);
    if (o.times && st.isFile()) {
      assert.equal(inode.mtimeFull.sec, Number(st.mtimeNs / 1_000_000_000n), `${at} mtime`);
      if (o.nsec) assert.equal(inode.mtimeFull.nsec, Number(st.mtimeNs % 1_000_000_000n), `${at} mtime nsec`);
    }
    if (o.xattrs) {
      const want = o.xattrs.get(rel === '' ? '.' : rel) ?? new Map<string, string>();
      const got = await fs.xattrs(inode);
      assert.deepEqual(new Map([...got].map(([k, v]) => [k, v.toString('hex')])), want, `${at} xattrs`);
    }
    n++;
    if (st.isDirectory()) {
      assert.equal(inode.mode & S_IFMT, S_IFDIR, `${at} type`);
      const entries = (await fs.readDir(inode)).filter((e) => !['.', '..'].includes(e.name.toString()) && !(rel === '' && e.name.toString() === 'lost+found'));
      assert.deepEqual(entries.map((e) => e.name.toString()).sort(), readdirSync(host).sort(), `${at} entries`);
      for (const e of entries) await walk(rel ? `${rel}/${e.name}` : e.name.toString(), await fs.inode(e.ino));
    } else if (st.isSymbolicLink()) {
      assert.equal(inode.mode & S_IFMT, S_IFLNK, `${at} type`);
      assert.equal((await fs.readLink(inode)).toString(), readlinkSync(host), `${at} target`);
    } else {
      assert.equal(inode.mode & S_IFMT, S_IFREG, `${at} type`);
      assert.equal(inode.size, Number(st.size), `${at} size`);
      if (o.links) {
        assert.equal(inode.links, Number(st.nlink), `${at} links`);
        const seen = inodeOf.get(Number(st.ino));
        if (seen !== undefined) assert.equal(inode.ino, seen, `${at} is the same inode as its hard link`);
        inodeOf.set(Number(st.ino), inode.ino);
      }
      if (st.size > 64n * 1024n * 1024n) {
        // Large sparse files: sample ranges instead of hashing gigabytes of zeros.
        const hostBytes = (off: number, len: number): Buffer => {
          const fd = openSync(host, 'r');
          const b = Buffer.alloc(len);
          const got = readSync(fd, b, 0, len, off);
          closeSync(fd);
          return b.subarray(0, got);
        };
        const size = Number(st.size);
        for (const [off, len] of [[0, 8192], [4 * 1024 * 1024 * 1024 - 10000, 20000], [size - 5000, 10000], [size / 2, 4096]] as const) {
          if (off >= size) continue;
          assert.deepEqual(await fs.readRange(inode, Math.floor(off), len), hostBytes(Math.floor(off), len), `${at} bytes at ${off}`);
        }
      } else {
        assert.equal(sha(await fs.readAll(inode, 1 << 30)), sha(readFileSync(host)), `${at} content`);
      }
    }
  };
  await walk('', await fs.inode(2));
  return n;
}

/** Path lookups over the tree sourceTree() makes: symlinks followed, the root never left. */
export async function checkLookups(fs: Ext4Reader): Promise<void> {
  assert.equal((await fs.lookup('/usr/bin/fast'))!.path, '/usr/bin/tool');
  assert.equal((await fs.lookup('/usr/bin/chain'))!.path, '/usr/bin/tool');
  assert.equal((await fs.lookup('/usr/bin/rel'))!.path, '/usr/local/bin/agent');
  assert.equal((await fs.lookup('/usr/bin/chain', false))!.path, '/usr/bin/chain');
  assert.equal((await fs.lookup('/usr/bin/up/etc/hostname'))!.path, '/etc/hostname', '.. stops at the root');
  assert.equal((await fs.lookup('/../../etc/./hostname'))!.path, '/etc/hostname');
  assert.equal(await fs.lookup('/usr/bin/slow'), undefined, 'a dangling target is not found');
  assert.equal(await fs.lookup('/etc/hostname/x'), undefined, 'a file is not traversed');
  assert.equal((await fs.readFile('/usr/bin/rel', 1024)).toString(), '#!/bin/sh\necho agent\n');
  await assert.rejects(fs.lookup('/loop-a'), (e: unknown) => (e as { code?: string }).code === 'CORRUPT_IMAGE' && /more than 40 symlinks/.test(String(e)));
  await assert.rejects(fs.stat('/nope'), (e: unknown) => (e as { code?: string }).code === 'FS_PATH_NOT_FOUND');
}
