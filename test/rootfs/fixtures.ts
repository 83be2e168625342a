/** Fixtures for recipe tests: a small Alpine-like base tarball built with tar-stream. */
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { tar } from '../helpers/apk-repo.js';

export interface BaseTarball {
  bytes: Buffer;
  sha256: string;
}

const MTIME = new Date(1_700_000_000 * 1000);

/** A gzip'd tarball with busybox-style layout: bin/busybox, bin/sh → busybox, sbin/init → /bin/busybox, apk db. */
export async function baseTarball(extra: Array<{ name: string; body: string; mode?: number }> = []): Promise<BaseTarball> {
  type E = Parameters<typeof tar>[0][number];
  const entries: E[] = [];
  const h = { mtime: MTIME, uid: 0, gid: 0 };
  const dir = (name: string, mode = 0o755): void => void entries.push({ header: { ...h, name, type: 'directory', mode } });
  const file = (name: string, body: string, mode = 0o644): void => void entries.push({ header: { ...h, name, type: 'file', mode, size: Buffer.byteLength(body) }, body: Buffer.from(body) });
  const link = (name: string, target: string): void => void entries.push({ header: { ...h, name, type: 'symlink', linkname: target, mode: 0o777 } });
  for (const d of ['bin', 'etc', 'etc/apk', 'lib', 'lib/apk', 'lib/apk/db', 'sbin', 'usr', 'usr/bin', 'dev', 'proc', 'sys', 'root']) dir(d);
  file('bin/busybox', '\x7fELF fake busybox\n', 0o755);
  link('bin/sh', '/bin/busybox');
  link('sbin/init', '/bin/busybox');
  link('usr/bin/env', '../../bin/busybox');
  file('etc/os-release', 'ID=alpine\nVERSION_ID=3.20.3\n');
  file('etc/apk/world', 'busybox\n');
  file('lib/apk/db/installed', 'C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:busybox\nV:1.36.1-r29\nA:x86_64\n\n');
  for (const e of extra) file(e.name, e.body, e.mode ?? 0o644);
  const bytes = gzipSync(await tar(entries, false));
  return { bytes, sha256: createHash('sha256').update(bytes).digest('hex') };
}
