/**
 * Rootless Alpine package installation without running apk (docs/apk.md): verified repository
 * indexes → resolution against the base's installed packages → verified .apk files → a tree
 * layer with the packages' files and an updated apk database (/lib/apk/db/installed,
 * /etc/apk/world, /etc/apk/repositories, /etc/apk/keys) so apk inside the guest sees them.
 *
 * Install scripts (.pre-install, .post-install, .trigger) cannot run without executing guest
 * code; they are never run, but reported in `scripts`/`warnings` and recorded in
 * /lib/apk/db/scripts.tar and triggers (scripts-db.ts) as apk would.
 */
import type { RawEntry } from '../../tree/types.js';
import { VmimgError } from '../../util/errors.js';
import { bufferContent } from '../../tree/content.js';
import type { FetchCache } from '../fetch/cache.js';
import type { HttpOptions } from '../fetch/http.js';
import { loadIndex, parseIndexText, type IndexPackage } from './apkindex.js';
import { parseDeps } from './deps.js';
import { installedRecord } from './installed-db.js';
import { fetchPackage, type UnpackedPackage } from './package.js';
import { resolvePackages, type InstalledPackage } from './resolve.js';
import { scriptsTar, triggersText } from './scripts-db.js';

export interface ApkRepository {
  url: string;
}

export interface ApkInstallRequest {
  repositories: ApkRepository[];
  /** Trusted signing keys: file name as in .SIGN.RSA.<name> → PEM text. */
  keys: ReadonlyMap<string, string>;
  /** World constraints: "python3", "nodejs>=20", "so:libc.musl-x86_64.so.1", "cmd:sh". */
  packages: string[];
  arch: string;
  cache: FetchCache;
  /** The base rootfs's /lib/apk/db/installed and /etc/apk/world, if any. */
  baseInstalled?: Buffer;
  baseWorld?: Buffer;
  /**
   * The base's /lib/apk/db/scripts.tar and /lib/apk/db/triggers. New packages' install scripts
   * and triggers are appended to them (apk in the guest runs them on later upgrades/removals).
   * With a base installed db but without these, the base's files stay as they are and a warning
   * says the new scripts were not recorded.
   */
  baseScripts?: Buffer;
  baseTriggers?: Buffer;
  /** Pins from a lock file: name → version, index checksum, .apk SHA256. */
  lock?: ReadonlyMap<string, { version: string; checksum: string; sha256?: string }>;
  /** Index SHA256 per repository URL from a lock file (read from the cache, no network). */
  indexes?: ReadonlyMap<string, string>;
  http?: HttpOptions;
  /** Timestamp of the generated database files (nanoseconds). */
  mtimeNs?: bigint;
}

export interface ApkInstalledPackage {
  name: string;
  version: string;
  arch: string;
  checksum: string;
  sha256: string;
  size: number;
  installedSize: number;
  repository: string;
}

export interface ApkInstallResult {
  layer: RawEntry[];
  /** Newly installed packages, dependencies first. */
  installed: ApkInstalledPackage[];
  /** SHA256 of each repository's APKINDEX.tar.gz, in repository order. */
  indexes: Array<{ url: string; sha256: string }>;
  /** Install scripts present but not run: "busybox-1.36.1-r29: .post-install". */
  scripts: string[];
  /**
   * Human-readable warnings: one per package whose scripts were not run (what they usually do
   * and how to get the effect), so a caller can print them as they are.
   */
  warnings: string[];
  close(): Promise<void>;
}

/** How many package downloads run at once. */
const FETCH_CONCURRENCY = 4;

function dbFile(path: string, text: string | Buffer, mtimeNs: bigint, mode = 0o644): RawEntry {
  const bytes = Buffer.from(text);
  return { path: Buffer.from(path), type: 'file', mode, uid: 0, gid: 0, mtimeNs, size: bytes.length, content: bufferContent(bytes), xattrs: new Map() };
}

function baseInstalledPackages(text: string | undefined): { pkgs: InstalledPackage[]; records: IndexPackage[] } {
  if (!text) return { pkgs: [], records: [] };
  const records = parseIndexText(text, '', '/lib/apk/db/installed');
  return { pkgs: records.map((r) => ({ name: r.name, version: r.version, provides: r.provides })), records };
}

/**
 * Install scripts need the guest's own binaries (a chroot and root), so they never run here.
 * Most Alpine scripts add users/groups (addgroup/adduser: list them in the recipe's files) or,
 * for busybox, create applet symlinks with `busybox --install -s` (the minirootfs ships them).
 */
function scriptWarning(name: string, version: string, scripts: string[]): string {
  const hint = name === 'busybox' ? '; its applet symlinks (busybox --install -s) are already in the minirootfs' : '; if they create users, groups or files, add those to the recipe';
  return `${name}-${version}: ${scripts.join(', ')} not run (vmimg never executes guest code)${hint}`;
}

/** Runs `fn` over `items` with at most `limit` in flight, keeping result order. */
async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  let failed: unknown;
  const worker = async (): Promise<void> => {
    while (next < items.length && failed === undefined) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!);
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed !== undefined) throw failed;
  return out;
}

export async function installApkPackages(req: ApkInstallRequest): Promise<ApkInstallResult> {
  for (const name of req.keys.keys()) {
    if (name === '' || name.includes('/') || name.includes('\0') || name === '.' || name === '..' || name.length > 255) throw new VmimgError('INVALID_OPTION', `apk key name '${name}' is not a plain file name`, { key: name });
  }
  const mtimeNs = req.mtimeNs ?? 0n;
  const indexes = [];
  for (const repo of req.repositories) indexes.push(await loadIndex(repo.url, req.arch, req.keys, req.cache, req.indexes?.get(repo.url.replace(/\/+$/, '')), req.http));
  const base = baseInstalledPackages(req.baseInstalled?.toString('utf8'));
  const world = parseDeps(req.packages.join(' '), 'requested packages');
  const plan = resolvePackages({
    world,
    installed: base.pkgs,
    available: indexes.flatMap((i) => i.packages.filter((p) => p.arch === req.arch || p.arch === 'noarch' || p.arch === '')),
    ...(req.lock ? { pins: req.lock } : {}),
  });

  const unpacked: UnpackedPackage[] = [];
  const closeAll = async (): Promise<void> => {
    for (const u of unpacked.splice(0)) await u.close().catch(() => undefined);
  };
  try {
    const fetched = await mapLimited(plan, FETCH_CONCURRENCY, async (pkg) => {
      const u = await fetchPackage(pkg, req.arch, req.cache, req.lock?.get(pkg.name)?.sha256, req.http);
      unpacked.push(u);
      return u;
    });
    const layer: RawEntry[] = [];
    let db = req.baseInstalled?.toString('utf8') ?? '';
    if (db !== '' && !db.endsWith('\n\n')) db += db.endsWith('\n') ? '\n' : '\n\n';
    const scripts: string[] = [];
    const warnings: string[] = [];
    for (const u of fetched) {
      layer.push(...u.entries);
      db += await installedRecord(u.pkg, u.entries, { atoms: u.replaces, priority: u.replacesPriority });
      for (const s of u.scripts) scripts.push(`${u.pkg.name}-${u.pkg.version}: ${s}`);
      if (u.scripts.length > 0) warnings.push(scriptWarning(u.pkg.name, u.pkg.version, u.scripts));
    }
    const withScripts = fetched.filter((u) => u.scriptFiles.length > 0).map((u) => ({ pkg: u.pkg, scripts: u.scriptFiles, triggers: u.triggers }));
    if (withScripts.length > 0) {
      if (req.baseScripts !== undefined || req.baseInstalled === undefined) layer.push(dbFile('lib/apk/db/scripts.tar', await scriptsTar(req.baseScripts, withScripts), mtimeNs));
      else warnings.push('/lib/apk/db/scripts.tar of the base was not given: the new packages\' scripts are not recorded for apk in the guest');
      const triggered = withScripts.some((w) => w.triggers.length > 0 && w.scripts.some((s) => s.action === 'trigger'));
      if (triggered && (req.baseTriggers !== undefined || req.baseInstalled === undefined)) layer.push(dbFile('lib/apk/db/triggers', triggersText(req.baseTriggers?.toString('utf8') ?? '', withScripts), mtimeNs));
      else if (triggered) warnings.push('/lib/apk/db/triggers of the base was not given: the new packages\' triggers are not recorded for apk in the guest');
    }
    const baseWorld = (req.baseWorld?.toString('utf8') ?? '').split(/\s+/).filter((w) => w !== '');
    const worldText = [...new Set([...baseWorld, ...req.packages])].sort().join('\n') + '\n';
    layer.push(
      dbFile('lib/apk/db/installed', db, mtimeNs),
      dbFile('etc/apk/world', worldText, mtimeNs),
      dbFile('etc/apk/repositories', req.repositories.map((r) => r.url).join('\n') + '\n', mtimeNs),
      ...[...req.keys].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, pem]) => dbFile(`etc/apk/keys/${name}`, pem, mtimeNs)),
    );
    return {
      layer,
      installed: fetched.map((u) => ({
        name: u.pkg.name,
        version: u.pkg.version,
        arch: u.pkg.arch,
        checksum: u.pkg.checksum,
        sha256: u.sha256,
        size: u.pkg.size,
        installedSize: u.pkg.installedSize,
        repository: u.pkg.repository,
      })),
      indexes: indexes.map((i) => ({ url: i.url, sha256: i.sha256 })),
      scripts,
      warnings,
      close: closeAll,
    };
  } catch (e) {
    await closeAll();
    throw e;
  }
}
