/** Helpers for tree tests: fixture directories with every entry type a non-root user can make. */
import { spawnSync } from 'node:child_process';
import { chmodSync, linkSync, mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import type { ContentSource, TreeEntry } from '../../src/tree/types.js';

export async function readAll(content: ContentSource): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const chunk of content.stream()) parts.push(chunk);
  return Buffer.concat(parts);
}

export function byPath(entries: readonly TreeEntry[]): Map<string, TreeEntry> {
  return new Map(entries.map((e) => [e.path.toString('latin1'), e]));
}

/** A listing that captures everything but content sources, for equality and determinism checks. */
export async function describe(entries: readonly TreeEntry[]): Promise<string[]> {
  const out: string[] = [];
  for (const e of entries) {
    const data = e.content ? (await readAll(e.content)).toString('hex') : '';
    const xattrs = [...e.xattrs].map(([k, v]) => `${k}=${v.toString('hex')}`).join(',');
    out.push(
      [e.path.toString('hex'), e.type, e.mode.toString(8), e.uid, e.gid, e.mtimeNs, e.size, data, e.symlinkTarget?.toString('hex') ?? '', e.linkTarget?.toString('hex') ?? '', e.rdev ? `${e.rdev.major}:${e.rdev.minor}` : '', xattrs, e.linkGroup ?? ''].join(' '),
    );
  }
  return out;
}

/**
 * Fills `dir` with: files (one large enough to need several stream chunks), nested dirs, a
 * symlink, two hard links to one file, a fifo, a unix socket (server returned: close it after
 * reading), setuid/setgid/sticky modes and nanosecond mtimes.
 */
export async function makeFixtureDir(dir: string): Promise<Server> {
  mkdirSync(join(dir, 'a/b/c'), { recursive: true });
  writeFileSync(join(dir, 'a/hello.txt'), 'hello\n');
  writeFileSync(join(dir, 'a/b/empty'), '');
  const big = Buffer.alloc(3 * 1024 * 1024 + 17);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff;
  writeFileSync(join(dir, 'big.bin'), big);
  writeFileSync(join(dir, 'suid'), '#!/bin/sh\n');
  chmodSync(join(dir, 'suid'), 0o4755);
  writeFileSync(join(dir, 'sgid'), 'x');
  chmodSync(join(dir, 'sgid'), 0o2711);
  mkdirSync(join(dir, 'tmp'));
  chmodSync(join(dir, 'tmp'), 0o1777);
  symlinkSync('../big.bin', join(dir, 'a/link'));
  writeFileSync(join(dir, 'h1'), 'shared inode');
  linkSync(join(dir, 'h1'), join(dir, 'a/b/h2'));
  const r = spawnSync('mkfifo', [join(dir, 'fifo')]);
  if (r.status !== 0) throw new Error('mkfifo failed');
  utimesSync(join(dir, 'a/hello.txt'), 1_600_000_000.25, 1_600_000_000.123456);
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(join(dir, 'sock'), resolve));
  return server;
}
