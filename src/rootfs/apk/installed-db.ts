/**
 * /lib/apk/db/installed records for packages vmimg installs, in the format apk writes
 * (apk-tools database.c apk_db_fdb_write and package.c apk_pkg_write_index_header):
 *   C: P: V: A: S: I: T: U: L: [o:] [m:] [t:] [c:] [k:] [D:] [p:] [i:]
 *   then per directory   F:DIR   [M:uid:gid:mode when not 0:0:755]
 *   and per entry in it  R:NAME  [a:uid:gid:mode when not 0:0:644] [Z:Q1<sha1>]
 *   and a blank line.
 * Z: is the SHA1 of a regular file's content, or of a symlink's target (as abuild records in
 * APK-TOOLS.checksum.SHA1), so `apk audit` inside the guest finds nothing modified.
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

/** The installed-db record of `pkg` whose data section gave `entries` (in archive order). */
export async function installedRecord(pkg: IndexPackage, entries: readonly RawEntry[]): Promise<string> {
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
    const de = d.entry;
    if (de && (de.uid !== 0 || de.gid !== 0 || de.mode !== 0o755)) lines.push(`M:${de.uid}:${de.gid}:${de.mode.toString(8)}`);
    for (const f of d.files) {
      const path = f.path.toString('utf8');
      lines.push(`R:${path.slice(path.lastIndexOf('/') + 1)}`);
      const acl = f.type === 'hardlink' ? byPath.get(f.linkTarget!.toString('utf8')) ?? f : f;
      const mode = acl.type === 'symlink' ? 0o777 : acl.mode;
      if (acl.uid !== 0 || acl.gid !== 0 || mode !== 0o644) lines.push(`a:${acl.uid}:${acl.gid}:${mode.toString(8)}`);
      const z = await contentSha1(f, byPath);
      if (z) lines.push(`Z:${z}`);
    }
  }
  return lines.join('\n') + '\n\n';
}
