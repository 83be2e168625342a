/**
 * Fetching, verifying and unpacking one .apk (apk-v2(5)) without running apk:
 *   1. the bytes come from the fetch cache by SHA256 when the lock names it, else from
 *      `<repo>/<arch>/<name>-<version>.apk` (bounded by the index's S: size);
 *   2. the control section's SHA1 ("Q1" + base64) must equal the signed index's C: field — the
 *      link that makes the package as trustworthy as the index;
 *   3. the data section's SHA256 must equal .PKGINFO's `datahash` (packages without one are
 *      refused: nothing would tie their data to the index);
 *   4. the verified file is stored in the cache under its SHA256 (recorded in the lock);
 *   5. the data section is read as a tar into tree entries (src/tree: path safety, ownership,
 *      modes, links, device nodes kept; content spooled, never extracted to the host).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { VmimgError } from '../../util/errors.js';
import { readTarStream } from '../../tree/tar.js';
import type { RawEntry } from '../../tree/types.js';
import type { FetchCache } from '../fetch/cache.js';
import { displayUrl, httpGetBytes, type HttpOptions } from '../fetch/http.js';
import type { IndexPackage } from './apkindex.js';
import { parseDeps, type Dep } from './deps.js';
import { readGzipMember } from './gzip.js';
import { hasSignatureSection, smallTarFiles } from './sections.js';

export interface UnpackedPackage {
  pkg: IndexPackage;
  sha256: string;
  entries: RawEntry[];
  /** Names of install scripts found in the control section (.pre-install, .post-install, .trigger). */
  scripts: string[];
  /** Install scripts by apk's action name ('post-install', 'trigger', ...) for /lib/apk/db/scripts.tar. */
  scriptFiles: ScriptFile[];
  /** .PKGINFO `triggers` (directories whose changes run the .trigger script), for /lib/apk/db/triggers. */
  triggers: string[];
  /** .PKGINFO `replaces` atoms and `replaces_priority` (kept in the installed db as r: and q:). */
  replaces: Dep[];
  replacesPriority: number;
  close(): Promise<void>;
}

export interface ScriptFile {
  action: string;
  data: Buffer;
}

/** The script actions apk keeps (apk_script_types in apk-tools package.c). */
const SCRIPT_ACTIONS = new Set(['pre-install', 'post-install', 'pre-deinstall', 'post-deinstall', 'pre-upgrade', 'post-upgrade', 'trigger']);

/** Largest .apk accepted when the index gives no size. */
const MAX_APK_BYTES = 2 * 1024 * 1024 * 1024 - 1;
/** Largest unpacked control section and data section. */
const MAX_CONTROL = 16 * 1024 * 1024;

export function packageUrl(pkg: IndexPackage, arch: string): string {
  return `${pkg.repository.replace(/\/+$/, '')}/${arch}/${pkg.name}-${pkg.version}.apk`;
}

/** "Q1" + base64(SHA1): apk's encoding of a SHA1 identity hash. */
export function q1(bytes: Uint8Array): string {
  return 'Q1' + createHash('sha1').update(bytes).digest('base64');
}

function corrupt(what: string, why: string, details: Record<string, unknown> = {}): VmimgError {
  return new VmimgError('APK_CORRUPT_PACKAGE', `${what}: ${why}`, { file: what, ...details });
}

/** Checks a package's bytes against its index entry; returns the data section bounds. */
export interface VerifiedPackage {
  dataStart: number;
  scripts: string[];
  scriptFiles: ScriptFile[];
  triggers: string[];
  replaces: Dep[];
  replacesPriority: number;
}

export function verifyPackageBytes(bytes: Buffer, pkg: IndexPackage, what: string): VerifiedPackage {
  // Sections: [signature], control, data. Only the small first sections are inflated here; the
  // data section is the rest of the file, hashed as bytes and inflated (CRC-checked) by the tar reader.
  const first = readGzipMember(bytes, 0, what, MAX_CONTROL);
  const signed = hasSignatureSection([first], what);
  const control = signed ? readGzipMember(bytes, first.end, what, MAX_CONTROL) : first;
  if (control.end >= bytes.length) throw corrupt(what, 'no data section');
  const data = { start: control.end, end: bytes.length };
  const actual = q1(bytes.subarray(control.start, control.end));
  if (actual !== pkg.checksum) throw corrupt(what, `control checksum ${actual} does not match the index (${pkg.checksum})`, { expected: pkg.checksum, actual });
  const files = smallTarFiles(control.data, what, 64);
  const pkginfo = files.find((f) => f.name === '.PKGINFO');
  if (!pkginfo) throw corrupt(what, 'no .PKGINFO in the control section');
  const datahash = /^datahash = ([0-9a-f]{64})$/m.exec(pkginfo.data.toString('utf8'))?.[1];
  if (!datahash) throw corrupt(what, '.PKGINFO has no datahash, so its data cannot be verified');
  const dataSha = createHash('sha256').update(bytes.subarray(data.start, data.end)).digest('hex');
  if (dataSha !== datahash) throw corrupt(what, `data section SHA256 ${dataSha} does not match .PKGINFO datahash ${datahash}`, { expected: datahash, actual: dataSha });
  const meta = /^(pkgname|pkgver) = (.*)$/gm;
  const info = new Map<string, string>();
  for (let m = meta.exec(pkginfo.data.toString('utf8')); m; m = meta.exec(pkginfo.data.toString('utf8'))) info.set(m[1]!, m[2]!);
  if (info.get('pkgname') !== pkg.name || info.get('pkgver') !== pkg.version) {
    throw corrupt(what, `.PKGINFO names ${info.get('pkgname')}-${info.get('pkgver')}, the index ${pkg.name}-${pkg.version}`);
  }
  // `replaces` may repeat, each line a list of atoms (apk-tools database.c read_info_line).
  const text = pkginfo.data.toString('utf8');
  let replaces: Dep[];
  try {
    replaces = [...text.matchAll(/^replaces = (.*)$/gm)].flatMap((m) => parseDeps(m[1]!, `${what} .PKGINFO replaces`));
  } catch (e) {
    throw corrupt(what, (e as Error).message);
  }
  const prio = /^replaces_priority = (.*)$/m.exec(text)?.[1];
  if (prio !== undefined && !/^[0-9]{1,9}$/.test(prio)) throw corrupt(what, `.PKGINFO replaces_priority '${prio.slice(0, 20)}' is not a number`);
  const scripts = files.map((f) => f.name).filter((n) => n.startsWith('.') && n !== '.PKGINFO' && !n.startsWith('.SIGN.'));
  const scriptFiles = files.filter((f) => SCRIPT_ACTIONS.has(f.name.slice(1)) && f.name.startsWith('.')).map((f) => ({ action: f.name.slice(1), data: f.data }));
  const triggers = [...text.matchAll(/^triggers = (.*)$/gm)].flatMap((m) => m[1]!.split(/\s+/).filter(Boolean));
  return { dataStart: data.start, scripts, scriptFiles, triggers, replaces, replacesPriority: prio === undefined ? 0 : Number(prio) };
}

/** Fetches (or finds in the cache), verifies and unpacks `pkg`. */
export async function fetchPackage(pkg: IndexPackage, arch: string, cache: FetchCache, pinnedSha256: string | undefined, http: HttpOptions = {}): Promise<UnpackedPackage> {
  const url = packageUrl(pkg, arch);
  const what = `${pkg.name}-${pkg.version}.apk`;
  let bytes: Buffer | undefined;
  if (pinnedSha256) {
    const hit = await cache.lookup(pinnedSha256);
    if (hit) bytes = await readFile(hit);
  }
  if (!bytes) {
    const max = pkg.size > 0 ? pkg.size : MAX_APK_BYTES;
    bytes = await httpGetBytes(url, max, http);
    if (pkg.size > 0 && bytes.length !== pkg.size) throw corrupt(what, `${displayUrl(url)} is ${bytes.length} bytes, the index says ${pkg.size}`);
  }
  const { dataStart, scripts, scriptFiles, triggers, replaces, replacesPriority } = verifyPackageBytes(bytes, pkg, what);
  const sha256 = await cache.putBytes(bytes);
  const tar = await readTarStream([bytes.subarray(dataStart)], what);
  return { pkg, sha256, entries: tar.entries, scripts, scriptFiles, triggers, replaces, replacesPriority, close: tar.close };
}
