/**
 * /lib/apk/db/installed records for packages vmimg installs, in the format apk writes
 * (apk-tools database.c apk_db_fdb_write and package.c apk_pkg_write_index_header):
 *   C: P: V: A: S: I: T: U: L: [o:] [m:] [t:] [c:] [k:] [D:] [p:] [i:] [r:] [q:]
 *   (r:/q: are .PKGINFO `replaces` and `replaces_priority`, database.c apk_db_write_fdb)
 *   then per directory   F:DIR   [M:uid:gid:mode when not 0:0:755]
 *   and per entry in it  R:NAME  [a:uid:gid:mode when not 0:0:644] [Z:Q1<sha1>]
 *   and a blank line.
 * Z: is the SHA1 of a regular file's content, or of a symlink's target (as abuild records in
 * APK-TOOLS.checksum.SHA1), a hard link taking its target's; so `apk audit` inside the guest
 * finds nothing modified. Modes are permission bits only (apk_db_acl_atomize: mode & 07777).
 * An entry with extended attributes gets its M:/a: line even at the default owner and mode,
 * with a fourth field: Q1 + SHA1 over the xattrs sorted by name, each as a big-endian u32
 * length + name, then u32 length + value (io.c apk_fileinfo_hash_xattr_array).
 */
import { createHash } from 'node:crypto';
import type { RawEntry } from '../../tree/types.js';
import type { IndexPackage } from './apkindex.js';
import type { Dep } from './deps.js';
import { q1 } from './package.js';

const OPS: Record<number, string> = { 1: '<', 2: '=', 3: '<=', 4: '>', 6: '>=', 10: '~', 11: '<~', 14: '>~' };

function formatDep(d: Dep): string {
  const op = d.mask !== undefined ? (OPS[d.mask] ?? '=') : '';
  return `${d.conflict ? '!' : ''}${d.name}${op}${d.version ?? ''}`;
}

async function contentSha1(e: RawEntry, byPath: ReadonlyMap<string, RawEntry>): Promise<string | undefined> {
  if (e.type === 'hardlink') {
    const target = byPath.get(e.linkTarget!.toString('utf8'));
    return target && target.type !== 'hardlink' ? contentSha1(target, byPath) : undefined;
  }
  if (e.type === 'symlink') return q1(e.symlinkTarget!);
  if (e.type !== 'file' || !e.content) return e.type === 'file' ? q1(new Uint8Array()) : undefined;
  const h = createHash('sha1');
  for await (const chunk of e.content.stream()) h.update(chunk);
  return 'Q1' + h.digest('base64');
}

/** apk's xattr checksum of an entry, or '' without xattrs. */
export function xattrChecksum(xattrs: ReadonlyMap<string, Buffer>): string {
  if (xattrs.size === 0) return '';
  const h = createHash('sha1');
  const len = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const names = [...xattrs.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  for (const name of names) {
    const n = Buffer.from(name);
    const v = xattrs.get(name)!;
    h.update(len(n.length)).update(n).update(len(v.length)).update(v);
  }
  return 'Q1' + h.digest('base64');
}

function aclLine(field: 'M' | 'a', e: RawEntry, defaultMode: number): string | undefined {
  const mode = e.type === 'symlink' ? 0o777 : e.mode & 0o7777;
  const xsum = xattrChecksum(e.xattrs);
  if (e.uid === 0 && e.gid === 0 && mode === defaultMode && xsum === '') return undefined;
  return `${field}:${e.uid}:${e.gid}:${mode.toString(8)}${xsum ? `:${xsum}` : ''}`;
}

/** The installed-db record of `pkg` whose data section gave `entries` (in archive order). */
export async function installedRecord(pkg: IndexPackage, entries: readonly RawEntry[], replaces: { atoms: readonly Dep[]; priority: number } = { atoms: [], priority: 0 }): Promise<string> {
  const lines: string[] = [`C:${pkg.checksum}`, `P:${pkg.name}`, `V:${pkg.version}`];
  if (pkg.arch) lines.push(`A:${pkg.arch}`);
  lines.push(`S:${pkg.size}`, `I:${pkg.installedSize}`, `T:${pkg.description}`, `U:${pkg.url}`, `L:${pkg.license}`);
  if (pkg.origin) lines.push(`o:${pkg.origin}`);
  if (pkg.maintainer) lines.push(`m:${pkg.maintainer}`);
  if (pkg.buildTime) lines.push(`t:${pkg.buildTime}`);
  if (pkg.commit) lines.push(`c:${pkg.commit}`);
  if (pkg.providerPriority) lines.push(`k:${pkg.providerPriority}`);
  if (pkg.depends.length) lines.push(`D:${pkg.depends.map(formatDep).join(' ')}`);
  if (pkg.provides.length) lines.push(`p:${pkg.provides.map((p) => (p.version !== undefined ? `${p.name}=${p.version}` : p.name)).join(' ')}`);
  if (pkg.installIf.length) lines.push(`i:${pkg.installIf.map(formatDep).join(' ')}`);
  if (replaces.atoms.length) lines.push(`r:${replaces.atoms.map(formatDep).join(' ')}`);
  if (replaces.priority) lines.push(`q:${replaces.priority}`);

  // Directories in archive order (parents of files included), each with its entries.
  const byPath = new Map(entries.map((e) => [e.path.toString('utf8'), e]));
  const dirs = new Map<string, { entry?: RawEntry; files: RawEntry[] }>();
  const dirOf = (path: string): { entry?: RawEntry; files: RawEntry[] } => {
    let d = dirs.get(path);
    if (!d) dirs.set(path, (d = { files: [] }));
    return d;
  };
  for (const e of entries) {
    const path = e.path.toString('utf8');
    if (e.type === 'dir') {
      if (path !== '') dirOf(path).entry = e;
      continue;
    }
    const slash = path.lastIndexOf('/');
    dirOf(slash < 0 ? '' : path.slice(0, slash)).files.push(e);
  }
  for (const [path, d] of dirs) {
    lines.push(`F:${path}`);
    const m = d.entry ? aclLine('M', d.entry, 0o755) : undefined;
    if (m) lines.push(m);
    for (const f of d.files) {
      const path = f.path.toString('utf8');
      lines.push(`R:${path.slice(path.lastIndexOf('/') + 1)}`);
      // A hard link's own tar header carries its mode and owner (apk uses the entry's header).
      const a = aclLine('a', f, 0o644);
      if (a) lines.push(a);
      const z = await contentSha1(f, byPath);
      if (z) lines.push(`Z:${z}`);
    }
  }
  return lines.join('\n') + '\n\n';
}
