/**
 * `vmimg rootfs build`: recipe → ext4 image (raw by default, or qcow2/vmdk/vhdx/vpc through the
 * format writers) + lock file, without root, mount or apk (docs/rootfs.md).
 *
 * Contract:
 * - The image is written atomically (buildExt4: temp file + rename); the lock is written after
 *   the image is complete. A failure leaves neither new.
 * - Deterministic: the same recipe, inputs and lock give the same image bytes (tree order,
 *   synthesised mtimes, the ext4 UUID and hash seed derived from the tree).
 * - With a lock (and `useLock`), every package is pinned to its locked version and .apk SHA256;
 *   a locked base must have the recipe's base SHA256, else INVALID_RECIPE (run with --update).
 * - The runtime binary the recipe names must be in the built tree, else INVALID_RECIPE before
 *   anything is written.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { buildExt4, type Ext4Result } from '../../fs/ext4/build.js';
import { treeFromLayers } from '../../tree/index.js';
import type { RawEntry, Tree } from '../../tree/types.js';
import { fromSystemError, VmimgError } from '../../util/errors.js';
import type { FetchCache } from '../fetch/cache.js';
import type { HttpOptions } from '../fetch/http.js';
import type { ApkInstalledPackage } from '../apk/index.js';
import { baseKeys, loadBase, newestMtime, readEntryBytes, recipeLayer, type Layer } from './layers.js';
import { lockPathFor, readLock, writeLock, type LockedPackage, type RootfsLock } from './lock.js';
import { resolveRuntime } from './runtime.js';
import type { Recipe } from './schema.js';

export interface RootfsBuildRequest {
  recipe: Recipe;
  /** Image to write. */
  output: string;
  cache: FetchCache;
  /** Lock file path (default `<output>.lock.json`). */
  lockPath?: string;
  /** Pin to an existing lock (default true); false re-resolves and rewrites it (--update). */
  useLock?: boolean;
  http?: HttpOptions;
  /** Progress messages ("fetching base", ...), for the CLI's stderr. */
  log?: (message: string) => void;
}

export interface RootfsBuildResult {
  output: string;
  lockPath: string;
  lock: RootfsLock;
  ext4: Ext4Result;
  entries: number;
  runtime?: string;
}

/** Largest base apk database read into memory. */
const MAX_APK_DB = 64 * 1024 * 1024;

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  } catch (e) {
    throw fromSystemError(e, path, 'read');
  }
  return hash.digest('hex');
}

function lockedBase(recipe: Recipe): RootfsLock['base'] {
  if (recipe.base.kind === 'download') return { url: recipe.base.url, sha256: recipe.base.sha256 };
  if (recipe.base.kind === 'path') return { path: recipe.base.path };
  return null;
}

/** Checks an existing lock against the recipe; returns the pins for the installer. */
function pinsFrom(lock: RootfsLock, recipe: Recipe, lockPath: string): Map<string, { version: string; checksum: string; sha256: string }> {
  const mismatch = (what: string): never => {
    throw new VmimgError('INVALID_RECIPE', `lock file '${lockPath}' was made for a different ${what}; rebuild with --update to re-resolve`, { path: lockPath, field: what });
  };
  if (lock.arch !== recipe.arch) mismatch('arch');
  const base = lockedBase(recipe);
  if (base && 'sha256' in base && (!lock.base || !('sha256' in lock.base) || lock.base.sha256 !== base.sha256)) mismatch('base');
  return new Map(lock.packages.map((p) => [p.name, { version: p.version, checksum: p.checksum, sha256: p.sha256 }]));
}

function toLocked(p: ApkInstalledPackage): LockedPackage {
  return { name: p.name, version: p.version, arch: p.arch, checksum: p.checksum, sha256: p.sha256, size: p.size, repository: p.repository };
}

async function readKeyFiles(paths: readonly string[]): Promise<Map<string, string>> {
  const keys = new Map<string, string>();
  for (const p of paths) {
    let pem: Buffer;
    try {
      pem = await readFile(p);
    } catch (e) {
      throw fromSystemError(e, p, 'open').within('apk key');
    }
    if (pem.length > 16 * 1024 || !pem.toString('utf8').includes('-----BEGIN PUBLIC KEY-----')) {
      throw new VmimgError('INVALID_RECIPE', `apk key '${p}' is not a PEM public key`, { path: p });
    }
    keys.set(basename(p), pem.toString('utf8'));
  }
  return keys;
}

/** Builds the recipe's image and lock file (see the file comment). */
export async function buildRootfs(req: RootfsBuildRequest): Promise<RootfsBuildResult> {
  const { recipe, cache } = req;
  const log = req.log ?? (() => undefined);
  if (recipe.agent && recipe.agent.source === undefined) {
    throw new VmimgError('INVALID_RECIPE', `recipe '${recipe.name}' has no agent binary: give agent.source in the recipe or --agent PATH`, { field: 'agent.source' });
  }
  const lockPath = req.lockPath ?? lockPathFor(req.output);
  const existing = req.useLock === false ? undefined : await readLock(lockPath);
  const pins = existing ? pinsFrom(existing, recipe, lockPath) : undefined;

  const layers: Layer[] = [];
  const closeAll = async (): Promise<void> => {
    for (const l of layers.splice(0)) await l.close().catch(() => undefined);
  };
  let tree: Tree | undefined;
  try {
    log(`base: ${recipe.base.kind === 'download' ? recipe.base.url : recipe.base.kind === 'path' ? recipe.base.path : '(empty)'}`);
    const base = await loadBase(recipe, cache, req.http);
    layers.push(base);

    let installed: ApkInstalledPackage[] = [];
    let indexes: Array<{ url: string; sha256: string }> = [];
    if (recipe.packages.length > 0) {
      const keys = recipe.apk.trustBaseKeys ? await baseKeys(base.entries) : new Map<string, string>();
      for (const [name, pem] of await readKeyFiles(recipe.apk.keys)) keys.set(name, pem);
      log(`apk: installing ${recipe.packages.join(' ')} from ${recipe.apk.repositories.length} repositories`);
      const baseInstalled = await readEntryBytes(base.entries, '/lib/apk/db/installed', MAX_APK_DB);
      const baseWorld = await readEntryBytes(base.entries, '/etc/apk/world', 1024 * 1024);
      const baseScripts = await readEntryBytes(base.entries, '/lib/apk/db/scripts.tar', MAX_APK_DB);
      const baseTriggers = await readEntryBytes(base.entries, '/lib/apk/db/triggers', 1024 * 1024);
      // The apk installer loads only when a recipe lists packages.
      const { installApkPackages } = await import('../apk/index.js');
      const result = await installApkPackages({
        repositories: recipe.apk.repositories.map((url) => ({ url })),
        keys,
        packages: recipe.packages,
        arch: recipe.arch,
        cache,
        ...(baseInstalled ? { baseInstalled } : {}),
        ...(baseWorld ? { baseWorld } : {}),
        ...(baseScripts ? { baseScripts } : {}),
        ...(baseTriggers ? { baseTriggers } : {}),
        ...(pins ? { lock: pins, indexes: new Map(existing!.indexes?.map((i) => [i.url, i.sha256]) ?? []) } : {}),
        mtimeNs: recipe.epoch !== undefined ? BigInt(recipe.epoch) * 1_000_000_000n : newestMtime([base.entries]),
        ...(req.http ? { http: req.http } : {}),
      });
      layers.push({ entries: result.layer, close: result.close });
      installed = result.installed;
      indexes = result.indexes;
      for (const w of result.warnings) log(`apk: ${w}`);
    }

    const contentLayers: RawEntry[][] = layers.map((l) => l.entries);
    const mtimeNs = recipe.epoch !== undefined ? BigInt(recipe.epoch) * 1_000_000_000n : newestMtime(contentLayers);
    contentLayers.push(await recipeLayer(recipe, mtimeNs));
    tree = treeFromLayers(contentLayers, { whiteouts: false, sourceDateEpoch: recipe.epoch ?? null });

    let runtime: string | undefined;
    if (recipe.runtime !== undefined) {
      runtime = resolveRuntime(tree.entries, recipe.runtime);
      if (runtime === undefined) {
        throw new VmimgError('INVALID_RECIPE', `runtime '${recipe.runtime}' is not in the built tree (is its package listed?)`, { field: 'runtime', value: recipe.runtime });
      }
    }

    log(`ext4: ${tree.entries.length} entries → ${req.output}`);
    await mkdir(dirname(req.output), { recursive: true });
    const ext4 = await buildExt4(tree, req.output, {
      format: recipe.output.format,
      freePercent: recipe.freePercent,
      journal: recipe.ext4.journal,
      ...(recipe.size !== undefined ? { size: recipe.size } : {}),
      ...(recipe.ext4.label !== undefined ? { label: recipe.ext4.label } : {}),
      ...(recipe.ext4.uuid !== undefined ? { uuid: recipe.ext4.uuid } : {}),
      ...(recipe.ext4.features !== undefined ? { features: recipe.ext4.features } : {}),
      timestamp: Number(mtimeNs / 1_000_000_000n),
    });

    const lock: RootfsLock = {
      lockVersion: 1,
      recipe: recipe.name,
      arch: recipe.arch,
      base: lockedBase(recipe),
      repositories: recipe.apk.repositories,
      indexes,
      world: [...recipe.packages].sort(),
      packages: installed.map(toLocked),
      image: { file: basename(req.output), format: ext4.format, size: ext4.imageSize, sha256: await sha256File(req.output) },
    };
    await writeLock(lockPath, lock);
    return { output: req.output, lockPath, lock, ext4, entries: tree.entries.length, ...(runtime !== undefined ? { runtime } : {}) };
  } finally {
    if (tree) await tree.close();
    await closeAll();
  }
}
