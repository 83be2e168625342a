/**
 * Finding a program in a built tree the way the guest's execve would: an absolute path, or a bare
 * name searched along the guest's PATH; symbolic links (absolute or relative) are followed inside
 * the tree, at most 40 of them (Linux's MAXSYMLINKS), never outside its root.
 */
import { pathKey } from '../../tree/path.js';
import type { TreeEntry } from '../../tree/types.js';

export const GUEST_PATH: readonly string[] = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

const MAX_SYMLINKS = 40;

/** Normalises '/'-joined components, resolving '.' and '..' at the root like the kernel. */
function normalise(parts: string[]): string[] {
  const out: string[] = [];
  for (const p of parts) {
    if (p === '' || p === '.') continue;
    if (p === '..') out.pop();
    else out.push(p);
  }
  return out;
}

/**
 * The final path of `path` after following symlinks in every component, or undefined when a
 * component is missing, not a directory where one is needed, or the links loop.
 */
export function resolveInTree(byPath: ReadonlyMap<string, TreeEntry>, path: string): { path: string; entry: TreeEntry } | undefined {
  let pending = normalise(path.split('/'));
  let done: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const name = pending.shift()!;
    if (name === '..') {
      done.pop();
      continue;
    }
    const candidate = [...done, name];
    const entry = byPath.get(pathKey(Buffer.from(candidate.join('/'))));
    if (!entry) return undefined;
    if (entry.type === 'symlink') {
      if (++hops > MAX_SYMLINKS) return undefined;
      const target = entry.symlinkTarget!.toString();
      const parts = target.split('/');
      if (target.startsWith('/')) done = [];
      pending = [...parts, ...pending].filter((p) => p !== '' && p !== '.');
      continue;
    }
    if (pending.length > 0 && entry.type !== 'dir') return undefined;
    done = candidate;
  }
  const entry = byPath.get(pathKey(Buffer.from(done.join('/'))));
  return entry ? { path: '/' + done.join('/'), entry } : undefined;
}

/** Where `runtime` (absolute path or bare name) resolves to a regular, executable file. */
export function resolveRuntime(entries: readonly TreeEntry[], runtime: string): string | undefined {
  const byPath = new Map(entries.map((e) => [pathKey(e.path), e]));
  const candidates = runtime.startsWith('/') ? [runtime] : GUEST_PATH.map((d) => `${d}/${runtime}`);
  for (const c of candidates) {
    const hit = resolveInTree(byPath, c);
    if (hit && (hit.entry.type === 'file' || hit.entry.type === 'hardlink') && (hit.entry.mode & 0o111) !== 0) return hit.path;
  }
  return undefined;
}
