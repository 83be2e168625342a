/**
 * Fixture directories for the cpio tests and a snapshot of a directory (lstat facts + content
 * hashes + hard-link groups) to compare a source tree with what `cpio -idm` extracted.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, lchownSync, linkSync, lstatSync, lutimesSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, utimesSync, writeFileSync, type Stats } from 'node:fs';
import { join } from 'node:path';

export const IS_ROOT = process.getuid?.() === 0;

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + seed * 17 + (i >> 8)) & 0xff;
  return b;
}

/**
 * Fills `dir`: files of 0..5 bytes (every padding case) and one of 600 KiB + 3, nested and empty
 * directories, setuid/setgid/sticky/0600/0700 modes, short, long (300-byte) and dangling absolute
 * symlinks, a name with a space and a non-UTF-8 byte, a fifo; with `hardLinks`, a 3-member group,
 * a pair of empty files, a hard-linked fifo and a hard-linked symlink; as root also char/block devices (minor past 255) and owners
 * 1234:5678. Every mtime is fixed (directories last, bottom-up).
 */
export function makeCpioFixture(dir: string, options: { hardLinks?: boolean } = {}): void {
  const p = (rel: string): string => join(dir, rel);
  mkdirSync(p('a/b/c'), { recursive: true });
  mkdirSync(p('empty-dir'));
  mkdirSync(p('private'), { mode: 0o700 });
  chmodSync(p('private'), 0o700);
  mkdirSync(p('tmp'));
  chmodSync(p('tmp'), 0o1777);
  for (let n = 0; n <= 5; n++) writeFileSync(p(`a/e${n}`), bytes(n, n));
  writeFileSync(p('big.bin'), bytes(600 * 1024 + 3, 9));
  writeFileSync(p('a/b/c/deep.txt'), 'deep\n');
  writeFileSync(p('suid'), '#!/bin/sh\n');
  chmodSync(p('suid'), 0o4755);
  writeFileSync(p('sgid'), 'x');
  chmodSync(p('sgid'), 0o2711);
  writeFileSync(p('private/secret'), 'secret');
  chmodSync(p('private/secret'), 0o600);
  writeFileSync(Buffer.from(join(dir, 'odd name \xff'), 'latin1'), 'odd');
  symlinkSync('../big.bin', p('a/link'));
  symlinkSync('/etc/nonexistent/target', p('abs-link'));
  symlinkSync('x/'.repeat(150), p('long-link'));
  symlinkSync('a/b', p('dir-link'));
  if (spawnSync('mkfifo', [p('fifo')]).status !== 0) throw new Error('mkfifo failed');
  if (options.hardLinks) {
    writeFileSync(p('h1'), 'shared inode, three names\n');
    linkSync(p('h1'), p('a/b/h2'));
    linkSync(p('h1'), p('z-h3'));
    writeFileSync(p('empty1'), '');
    linkSync(p('empty1'), p('a/empty2'));
    linkSync(p('fifo'), p('a/fifo2'));
    linkSync(p('a/link'), p('link2')); // link(2) does not follow: a second name of the symlink
  }
  if (IS_ROOT) {
    mkdirSync(p('dev'));
    for (const [name, kind, major, minor] of [['null', 'c', 1, 3], ['wide', 'c', 300, 70000], ['loop1', 'b', 7, 1]] as const) {
      if (spawnSync('mknod', [p(`dev/${name}`), kind, String(major), String(minor)]).status !== 0) throw new Error('mknod failed');
    }
    for (const rel of ['a/e3', 'suid', 'a/link', 'private', 'dev/wide']) lchownSync(p(rel), 1234, 5678);
  }
  // Times: everything but directories first, then directories bottom-up (creating children moves them).
  const all = walk(dir);
  for (const [rel, st] of all) {
    const abs = Buffer.from(join(dir, rel), 'latin1');
    if (st.isSymbolicLink()) lutimesSync(abs, 1_500_000_000, 1_500_000_000);
    else if (!st.isDirectory()) utimesSync(abs, 1_600_000_000, 1_600_000_000 + (rel.length % 7));
  }
  for (const [rel, st] of [...all].reverse()) if (st.isDirectory()) utimesSync(Buffer.from(join(dir, rel), 'latin1'), 1_700_000_000, 1_700_000_000 + rel.length);
}

/** Every path under `dir` ('' for dir itself) with its lstat, parents before children. */
export function walk(dir: string): Array<[string, Stats]> {
  const out: Array<[string, Stats]> = [];
  const visit = (rel: string): void => {
    const abs = rel === '' ? dir : join(dir, rel);
    const st = lstatSync(Buffer.from(abs, 'latin1')) as Stats;
    out.push([rel, st]);
    if (!st.isDirectory()) return;
    const names = readdirSync(Buffer.from(abs, 'latin1'), { encoding: 'buffer' }).map((n) => n.toString('latin1'));
    for (const n of names.sort()) visit(rel === '' ? n : `${rel}/${n}`);
  };
  visit('');
  return out;
}

export interface Fact {
  type: string;
  mode: string;
  uid: number;
  gid: number;
  size: number;
  sha?: string;
  target?: string;
  rdev?: number;
  mtime?: number;
}

function typeOf(st: Stats): string {
  return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : st.isSocket() ? 'socket' : '?';
}

/**
 * Facts per path plus hard-link groups (sorted path lists of inodes with several names). mtimes
 * are kept for files and special files: GNU cpio 2.13 -m sets a directory's time when it makes
 * the directory, and extracting its children moves it again; symlink times are not restored.
 * Hard-linked symlinks are left out of the groups: cpio -i (like the kernel) makes each name a
 * symlink of its own.
 */
export function snapshot(dir: string): { facts: Map<string, Fact>; links: string[][] } {
  const facts = new Map<string, Fact>();
  const byIno = new Map<number, string[]>();
  for (const [rel, st] of walk(dir)) {
    const abs = Buffer.from(rel === '' ? dir : join(dir, rel), 'latin1');
    const type = typeOf(st);
    const f: Fact = { type, mode: (Number(st.mode) & 0o7777).toString(8), uid: Number(st.uid), gid: Number(st.gid), size: type === 'dir' ? 0 : Number(st.size) };
    if (type === 'file') f.sha = createHash('sha256').update(readFileSync(abs)).digest('hex');
    if (type === 'symlink') f.target = readlinkSync(abs, { encoding: 'buffer' }).toString('latin1');
    else if (type !== 'dir') f.mtime = st.mtime.getTime() / 1000;
    if (type === 'char' || type === 'block') f.rdev = Number(st.rdev);
    facts.set(rel, f);
    if (type !== 'dir' && type !== 'symlink' && Number(st.nlink) > 1) byIno.set(Number(st.ino), [...(byIno.get(Number(st.ino)) ?? []), rel]);
  }
  const links = [...byIno.values()].map((l) => l.sort()).sort((x, y) => (x[0]! < y[0]! ? -1 : 1));
  return { facts, links };
}
