/**
 * Repository indexes: `<repo>/<arch>/APKINDEX.tar.gz` (apk-repositories(5)), a signature
 * section then the index section (APKINDEX, DESCRIPTION). The signature covers the compressed
 * bytes of everything after the signature section and must verify with a trusted key before a
 * byte of the index is parsed. Records are "K:value" lines separated by blank lines
 * (apk-package(5) names the v2 index characters). Every count and length is bounded.
 *
 * A fetched index is kept in the fetch cache under its SHA256, which the rootfs lock records, so
 * a locked rebuild reads the very same index without the network (its signature is checked again).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { VmimgError } from '../../util/errors.js';
import type { FetchCache } from '../fetch/cache.js';
import { displayUrl, httpGetBytes, type HttpOptions } from '../fetch/http.js';
import { PACKAGE_NAME, parseDeps, type Dep } from './deps.js';
import { splitGzipMembers } from './gzip.js';
import { hasSignatureSection, readSignatures, smallTarFiles, verifySigned } from './sections.js';
import { isValidVersion } from './version.js';

/** A provided name with its version (undefined for an unversioned provide). */
export interface Provide {
  name: string;
  version?: string;
}

export interface IndexPackage {
  name: string;
  version: string;
  arch: string;
  /** C: "Q1" + base64 SHA1 of the control section. */
  checksum: string;
  size: number;
  installedSize: number;
  description: string;
  url: string;
  license: string;
  origin: string;
  maintainer: string;
  buildTime: number;
  commit: string;
  providerPriority: number;
  depends: Dep[];
  provides: Provide[];
  installIf: Dep[];
  /** The repository URL it came from. */
  repository: string;
}

export interface RepositoryIndex {
  url: string;
  /** SHA256 of APKINDEX.tar.gz. */
  sha256: string;
  description: string;
  packages: IndexPackage[];
  /** The key that signed it. */
  keyName: string;
}

const MAX_INDEX_BYTES = 64 * 1024 * 1024;
const MAX_INDEX_TEXT = 256 * 1024 * 1024;
const MAX_PACKAGES = 200_000;
const MAX_LINE = 64 * 1024;
/** Fields whose repeated lines accumulate: depends, provides, install_if, replaces. */
const LIST_FIELDS = new Set(['D', 'p', 'i', 'r']);
/** C: of a v2 package: "Q1" + base64 of a 20-byte SHA1. */
const CHECKSUM = /^Q1[A-Za-z0-9+/]{27}=$/;

export function indexUrl(repo: string, arch: string): string {
  return `${repo.replace(/\/+$/, '')}/${arch}/APKINDEX.tar.gz`;
}

function int(text: string, field: string, where: string): number {
  if (!/^[0-9]{1,15}$/.test(text)) throw new VmimgError('APK_CORRUPT_INDEX', `${where}: field ${field} is not a number ('${text.slice(0, 40)}')`, { field });
  return Number(text);
}

/** "name=version" or "name" provides. */
export function parseProvides(text: string, where: string): Provide[] {
  return parseDeps(text, where).map((d) => {
    if (d.conflict || (d.mask !== undefined && d.mask !== 2)) {
      throw new VmimgError('APK_CORRUPT_INDEX', `${where}: provide '${d.text}' must be NAME or NAME=VERSION`, { provide: d.text });
    }
    return d.version !== undefined ? { name: d.name, version: d.version } : { name: d.name };
  });
}

/** Parses APKINDEX text (also the installed database, whose extra lines are skipped here). */
export function parseIndexText(text: string, repository: string, where: string, maxPackages = MAX_PACKAGES): IndexPackage[] {
  const out: IndexPackage[] = [];
  let rec = new Map<string, string>();
  let lineNo = 0;
  let inFiles = false;
  const flush = (): void => {
    if (rec.size === 0) return;
    const at = `${where} record ending at line ${lineNo}`;
    const get = (k: string): string => rec.get(k) ?? '';
    const name = get('P');
    const version = get('V');
    if (!name || !version) throw new VmimgError('APK_CORRUPT_INDEX', `${at}: missing P: or V:`, { line: lineNo });
    if (!PACKAGE_NAME.test(name) || name.length > 255) throw new VmimgError('APK_CORRUPT_INDEX', `${at}: field P: invalid package name '${name.slice(0, 80)}'`, { line: lineNo, field: 'P' });
    if (!isValidVersion(version)) throw new VmimgError('APK_CORRUPT_INDEX', `${at}: invalid version '${version}' of ${name}`, { line: lineNo });
    if (out.length >= maxPackages) throw new VmimgError('APK_CORRUPT_INDEX', `${where}: more than ${maxPackages} packages (at line ${lineNo})`, { line: lineNo });
    const pkg: IndexPackage = {
      name,
      version,
      arch: get('A'),
      checksum: get('C'),
      size: rec.has('S') ? int(get('S'), 'S', at) : 0,
      installedSize: rec.has('I') ? int(get('I'), 'I', at) : 0,
      description: get('T'),
      url: get('U'),
      license: get('L'),
      origin: get('o'),
      maintainer: get('m'),
      buildTime: rec.has('t') ? int(get('t'), 't', at) : 0,
      commit: get('c'),
      providerPriority: rec.has('k') ? int(get('k'), 'k', at) : 0,
      depends: parseDeps(get('D'), at),
      provides: parseProvides(get('p'), at),
      installIf: parseDeps(get('i'), at),
      repository,
    };
    if ((repository !== '' || pkg.checksum !== '') && !CHECKSUM.test(pkg.checksum)) {
      throw new VmimgError('APK_CORRUPT_INDEX', `${at}: field C of ${name} is not Q1 + base64 SHA1 ('${pkg.checksum.slice(0, 40)}')`, { line: lineNo, field: 'C' });
    }
    out.push(pkg);
    rec = new Map();
  };
  for (const line of text.split('\n')) {
    lineNo++;
    if (line.length > MAX_LINE) throw new VmimgError('APK_CORRUPT_INDEX', `${where} line ${lineNo} is longer than ${MAX_LINE} bytes`, { line: lineNo });
    if (line === '') {
      flush();
      inFiles = false;
      continue;
    }
    if (line[1] !== ':' || !/[A-Za-z]/.test(line[0]!)) throw new VmimgError('APK_CORRUPT_INDEX', `${where} line ${lineNo} is not 'K:value'`, { line: lineNo });
    // Dependency lists may repeat and accumulate (apk_pkg_add_info appends); other fields keep
    // their first value. In the installed db, file lines (F:, R:, Z:, M:, a:) follow the package
    // fields and are not package fields.
    const key = line[0]!;
    if (key === 'F') inFiles = true;
    if (inFiles) continue;
    if (LIST_FIELDS.has(key) && rec.has(key)) rec.set(key, `${rec.get(key)} ${line.slice(2)}`);
    else if (!rec.has(key)) rec.set(key, line.slice(2));
  }
  flush();
  return out;
}

/** Verifies and parses APKINDEX.tar.gz bytes. */
export function readIndexBytes(bytes: Buffer, url: string, keys: ReadonlyMap<string, string>): RepositoryIndex {
  const where = displayUrl(url);
  let members;
  try {
    members = splitGzipMembers(bytes, where, { maxMembers: 4, maxOutput: MAX_INDEX_TEXT });
  } catch (e) {
    if (e instanceof VmimgError) throw new VmimgError('APK_CORRUPT_INDEX', e.message, e.details, { cause: e });
    throw e;
  }
  if (members.length < 2 || !hasSignatureSection(members, where)) {
    throw new VmimgError('APK_UNTRUSTED_KEY', `${where} is not signed (no .SIGN section)`, { url: where });
  }
  const keyName = verifySigned(readSignatures(smallTarFiles(members[0]!.data, where, 64)), bytes.subarray(members[1]!.start), keys, where);
  const files = members.slice(1).flatMap((m) => smallTarFiles(m.data, where, 16));
  const index = files.find((f) => f.name === 'APKINDEX');
  if (!index) throw new VmimgError('APK_CORRUPT_INDEX', `${where} has no APKINDEX file`, { url: where });
  const description = files.find((f) => f.name === 'DESCRIPTION')?.data.toString('utf8').trim() ?? '';
  const repo = url.replace(/\/[^/]+\/APKINDEX\.tar\.gz$/, '');
  return {
    url: repo,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    description,
    packages: parseIndexText(index.data.toString('utf8'), repo, where),
    keyName,
  };
}

/**
 * The verified index of `repo`: from the cache when `pinnedSha256` names a cached copy (no
 * network), else downloaded, verified and cached.
 */
export async function loadIndex(repo: string, arch: string, keys: ReadonlyMap<string, string>, cache: FetchCache, pinnedSha256?: string, http: HttpOptions = {}): Promise<RepositoryIndex> {
  const url = indexUrl(repo, arch);
  if (pinnedSha256) {
    const hit = await cache.lookup(pinnedSha256);
    if (hit) return readIndexBytes(await readFile(hit), url, keys);
  }
  const bytes = await httpGetBytes(url, MAX_INDEX_BYTES, http);
  // A lock may pin an index the mirror no longer serves: the fresh one is verified and used, and
  // the resolver then requires the locked package versions to be in it.
  const index = readIndexBytes(bytes, url, keys);
  await cache.putBytes(bytes);
  return index;
}
