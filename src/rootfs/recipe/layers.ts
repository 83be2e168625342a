/**
 * The layers a recipe build overlays, in order (later wins, as extracting them one over another):
 *   1. the base: a pinned download (through the fetch cache), a local tarball, or a directory;
 *   2. the apk layer: package contents and the apk database (src/rootfs/apk);
 *   3. the recipe layer: directories, files, the agent, /sbin/init, hostname, resolv.conf.
 * Everything the recipe layer synthesises gets one deterministic mtime (`mtimeNs`), never the
 * host file's, so a rebuild on another machine gives the same bytes.
 */
import { lstat } from 'node:fs/promises';
import { fromSystemError, VmimgError } from '../../util/errors.js';
import { bufferContent, fileContent } from '../../tree/content.js';
import { readDirectory } from '../../tree/dir.js';
import { readTarFile } from '../../tree/tar.js';
import type { RawEntry } from '../../tree/types.js';
import type { FetchCache } from '../fetch/cache.js';
import type { HttpOptions } from '../fetch/http.js';
import { generatedInit, INIT_MOUNT_POINTS } from './init.js';
import type { Recipe } from './schema.js';

export interface Layer {
  entries: RawEntry[];
  close(): Promise<void>;
}

/** Image path "/a/b" → tree path bytes "a/b". */
export function treePath(imagePath: string): Buffer {
  return Buffer.from(imagePath.replace(/^\/+/, ''));
}

/** The base layer of `recipe`. */
export async function loadBase(recipe: Recipe, cache: FetchCache, http: HttpOptions = {}): Promise<Layer> {
  const base = recipe.base;
  if (base.kind === 'empty') return { entries: [], close: async () => undefined };
  let file: string;
  if (base.kind === 'download') {
    file = (await cache.ensure({ url: base.url, sha256: base.sha256, ...http })).path;
  } else {
    let isDir: boolean;
    try {
      isDir = (await lstat(base.path)).isDirectory();
    } catch (e) {
      throw fromSystemError(e, base.path, 'open');
    }
    if (isDir) return { entries: await readDirectory(base.path), close: async () => undefined };
    file = base.path;
  }
  const tar = await readTarFile(file);
  return { entries: tar.entries, close: tar.close };
}

/** The last entry at `imagePath` among `entries` (a later duplicate wins, as in the overlay). */
export function findEntry(entries: readonly RawEntry[], imagePath: string): RawEntry | undefined {
  const want = treePath(imagePath);
  for (let i = entries.length - 1; i >= 0; i--) if (entries[i]!.path.equals(want)) return entries[i];
  return undefined;
}

/** The bytes of the regular file at `imagePath`, or undefined; refused above `max` bytes. */
export async function readEntryBytes(entries: readonly RawEntry[], imagePath: string, max: number): Promise<Buffer | undefined> {
  const e = findEntry(entries, imagePath);
  return e ? entryBytes(e, imagePath, max) : undefined;
}

/** The bytes of entry `e` (found at `imagePath`) when it is a regular file; refused above `max` bytes. */
async function entryBytes(e: RawEntry, imagePath: string, max: number): Promise<Buffer | undefined> {
  if (e.type !== 'file' || !e.content) return undefined;
  if (e.size > max) throw new VmimgError('INVALID_RECIPE', `base file '${imagePath}' is ${e.size} bytes, more than the ${max} expected`, { path: imagePath, size: e.size });
  return Buffer.from(e.size === 0 ? new Uint8Array() : await e.content.read(0, e.size));
}

/** Trusted apk keys from the base's /etc/apk/keys (name → PEM), at most 64 keys of 16 KiB. */
export async function baseKeys(entries: readonly RawEntry[]): Promise<Map<string, string>> {
  const keys = new Map<string, string>();
  const dir = treePath('/etc/apk/keys/');
  for (const e of entries) {
    if (e.type !== 'file' || !e.path.subarray(0, dir.length).equals(dir)) continue;
    const name = e.path.subarray(dir.length).toString();
    if (name.includes('/') || !name.endsWith('.pub')) continue;
    if (keys.size >= 64) break;
    const pem = await entryBytes(e, `/etc/apk/keys/${name}`, 16 * 1024);
    if (pem) keys.set(name, pem.toString('utf8'));
  }
  return keys;
}

/** The newest mtime among `layers` (the default timestamp of generated entries), 0 when empty. */
export function newestMtime(layers: readonly (readonly RawEntry[])[]): bigint {
  let newest = 0n;
  for (const l of layers) for (const e of l) if (e.mtimeNs > newest) newest = e.mtimeNs;
  return newest;
}

async function hostFile(path: string, what: string): Promise<{ size: number }> {
  let st;
  try {
    st = await lstat(path);
  } catch (e) {
    throw fromSystemError(e, path, 'open').within(what);
  }
  if (!st.isFile()) throw new VmimgError('INVALID_RECIPE', `${what}: '${path}' is not a regular file`, { path });
  return { size: st.size };
}

/** The recipe's own layer (see the file comment). */
export async function recipeLayer(recipe: Recipe, mtimeNs: bigint): Promise<RawEntry[]> {
  const out: RawEntry[] = [];
  const common = { mtimeNs, xattrs: new Map<string, Buffer>() };
  const dir = (path: string, mode = 0o755, uid = 0, gid = 0): void => {
    out.push({ path: treePath(path), type: 'dir', mode, uid, gid, size: 0, ...common, xattrs: new Map() });
  };
  const text = (path: string, body: string, mode = 0o644, uid = 0, gid = 0): void => {
    const bytes = Buffer.from(body);
    out.push({ path: treePath(path), type: 'file', mode, uid, gid, size: bytes.length, content: bufferContent(bytes), ...common, xattrs: new Map() });
  };
  const copy = async (path: string, source: string, mode: number, uid: number, gid: number, what: string): Promise<void> => {
    const { size } = await hostFile(source, what);
    out.push({ path: treePath(path), type: 'file', mode, uid, gid, size, content: fileContent(source, size), ...common, xattrs: new Map() });
  };

  if (recipe.init.kind === 'generated') for (const p of INIT_MOUNT_POINTS) if (p !== '/dev/pts') dir(p, p === '/tmp' ? 0o1777 : 0o755);
  for (const d of recipe.directories) dir(d.path, d.mode, d.uid, d.gid);
  for (const [i, f] of recipe.files.entries()) {
    if (f.source !== undefined) await copy(f.path, f.source, f.mode, f.uid, f.gid, `recipe files[${i}]`);
    else text(f.path, f.content ?? '', f.mode, f.uid, f.gid);
  }
  if (recipe.hostname !== undefined) text('/etc/hostname', `${recipe.hostname}\n`);
  if (recipe.resolv !== undefined) text('/etc/resolv.conf', recipe.resolv);
  const agentPath = recipe.agent ? `/usr/local/bin/${recipe.agent.name}` : undefined;
  if (recipe.agent) {
    if (recipe.agent.source === undefined) {
      throw new VmimgError('INVALID_RECIPE', `recipe '${recipe.name}' has no agent binary: give agent.source in the recipe or --agent PATH`, { field: 'agent.source' });
    }
    await copy(agentPath!, recipe.agent.source, 0o755, 0, 0, 'recipe agent');
  }
  switch (recipe.init.kind) {
    case 'generated':
      text('/sbin/init', generatedInit(agentPath!), 0o755);
      break;
    case 'symlink': {
      const target = Buffer.from(agentPath!);
      out.push({ path: treePath('/sbin/init'), type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: target.length, symlinkTarget: target, ...common, xattrs: new Map() });
      break;
    }
    case 'file':
      await copy('/sbin/init', recipe.init.source, 0o755, 0, 0, 'recipe init');
      break;
    case 'keep':
      break;
  }
  return out;
}
