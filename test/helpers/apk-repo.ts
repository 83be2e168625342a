/**
 * A generated Alpine-style repository for tests (apk-v2(5), apk-repositories(5)): an RSA signing
 * key, .apk files in the real v2 layout (signature section, control section with .PKGINFO and its
 * datahash, data section; the first two sections without tar end blocks, as abuild cuts them) and
 * a signed APKINDEX.tar.gz, laid out as `<repo>/<arch>/...` routes for test/fetch/server.ts.
 *
 * Two ways to use it:
 *   - makeApkRepo(dir, { packages, minirootfs? }) writes the repository (and a minirootfs tarball)
 *     into `dir` and serves it on loopback: { url, keys, minirootfs, requests, close }.
 *   - new ApkRepo(keyName) + add(spec) + files(prefix) → routes for test/fetch/server.ts, for tests
 *     that tamper with individual responses.
 */
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, normalize, sep } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';

export interface ApkFileSpec {
  path: string;
  /** File content (default empty); ignored for symlinks and dirs. */
  content?: string | Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  symlink?: string;
  dir?: boolean;
  /** A hard link to this earlier path of the same package. */
  hardlink?: string;
  /** A device node. */
  device?: { type: 'char' | 'block'; major: number; minor: number };
  /** Extended attributes (PAX SCHILY.xattr.*; ASCII values). */
  xattrs?: Record<string, string>;
}

export interface ApkPackageSpec {
  name: string;
  version: string;
  arch?: string;
  depends?: string[];
  provides?: string[];
  providerPriority?: number;
  files?: ApkFileSpec[];
  /** Extra control files, e.g. { '.post-install': '#!/bin/sh\n' }. */
  scripts?: Record<string, string>;
  description?: string;
  /** Omit .PKGINFO datahash (an unverifiable package). */
  noDatahash?: boolean;
  /** .PKGINFO `triggers` (directories; with a '.trigger' script). */
  triggers?: string[];
  /** .PKGINFO `replaces` atoms and `replaces_priority`. */
  replaces?: string[];
  replacesPriority?: number;
  /** Omit the PAX APK-TOOLS.checksum.SHA1 records abuild adds to files and symlinks. */
  noChecksums?: boolean;
}

export interface BuiltPackage {
  spec: ApkPackageSpec;
  apk: Buffer;
  control: Buffer;
  checksum: string;
  sha256: string;
}

const MTIME = new Date(1_700_000_000 * 1000);

/** A tar stream of `entries`; `cut` drops the two end-of-archive blocks (abuild-tar --cut). */
export async function tar(entries: Array<{ header: Parameters<ReturnType<typeof pack>['entry']>[0]; body?: Buffer }>, cut: boolean): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => void chunks.push(c as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    p.on('end', () => resolve());
    p.on('error', reject);
  });
  for (const e of entries) {
    if (e.body) p.entry(e.header, e.body);
    else p.entry(e.header);
  }
  p.finalize();
  await done;
  const all = Buffer.concat(chunks);
  return cut ? all.subarray(0, all.length - 1024) : all;
}

export function q1(bytes: Uint8Array): string {
  return 'Q1' + createHash('sha1').update(bytes).digest('base64');
}

export class ApkRepo {
  readonly keyName: string;
  readonly publicPem: string;
  readonly #privateKey: KeyObject;
  readonly built: BuiltPackage[] = [];

  constructor(keyName: string, keyPair = generateKeyPairSync('rsa', { modulusLength: 2048 })) {
    this.keyName = keyName;
    this.#privateKey = keyPair.privateKey;
    this.publicPem = keyPair.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  }

  get keys(): Map<string, string> {
    return new Map([[this.keyName, this.publicPem]]);
  }

  async #signature(signed: Buffer): Promise<Buffer> {
    const sig = sign('sha1', signed, this.#privateKey);
    return gzipSync(await tar([{ header: { name: `.SIGN.RSA.${this.keyName}`, size: sig.length, mode: 0o644, mtime: MTIME, uid: 0, gid: 0 }, body: sig }], true));
  }

  async add(spec: ApkPackageSpec): Promise<BuiltPackage> {
    const arch = spec.arch ?? 'x86_64';
    const files = spec.files ?? [];
    const data = gzipSync(
      await tar(
        files.map((f) => {
          // abuild's tar: PAX records APK-TOOLS.checksum.SHA1 (hex) on files and symlinks, xattrs as SCHILY.xattr.*.
          const pax: Record<string, string> = {};
          for (const [k, v] of Object.entries(f.xattrs ?? {})) pax[`SCHILY.xattr.${k}`] = v;
          const sum = (b: Buffer | string): void => {
            if (!spec.noChecksums) pax['APK-TOOLS.checksum.SHA1'] = createHash('sha1').update(b).digest('hex');
          };
          const base = { name: f.path, mode: f.mode ?? (f.dir ? 0o755 : f.symlink ? 0o777 : 0o644), mtime: MTIME, uid: f.uid ?? 0, gid: f.gid ?? 0 };
          const withPax = (): { pax?: Record<string, string> } => (Object.keys(pax).length ? { pax } : {});
          if (f.dir) return { header: { ...base, type: 'directory' as const, ...withPax() } };
          if (f.symlink) {
            sum(f.symlink);
            return { header: { ...base, type: 'symlink' as const, linkname: f.symlink, ...withPax() } };
          }
          if (f.hardlink) return { header: { ...base, type: 'link' as const, linkname: f.hardlink, ...withPax() } };
          if (f.device) {
            return { header: { ...base, type: f.device.type === 'char' ? ('character-device' as const) : ('block-device' as const), devmajor: f.device.major, devminor: f.device.minor, ...withPax() } };
          }
          const body = Buffer.isBuffer(f.content) ? f.content : Buffer.from(f.content ?? '');
          sum(body);
          return { header: { ...base, type: 'file' as const, size: body.length, ...withPax() }, body };
        }),
        false,
      ),
    );
    const installedSize = files.reduce((n, f) => n + (f.content ? Buffer.byteLength(f.content) : 0), 0);
    const pkginfo = [
      '# Generated by test/helpers/apk-repo.ts',
      `pkgname = ${spec.name}`,
      `pkgver = ${spec.version}`,
      `pkgdesc = ${spec.description ?? `${spec.name} test package`}`,
      'url = https://example.invalid/',
      `builddate = 1700000000`,
      `size = ${installedSize}`,
      `arch = ${arch}`,
      'license = MIT',
      ...(spec.depends ?? []).map((d) => `depend = ${d}`),
      ...(spec.provides ?? []).map((p) => `provides = ${p}`),
      ...(spec.providerPriority ? [`provider_priority = ${spec.providerPriority}`] : []),
      ...(spec.triggers?.length ? [`triggers = ${spec.triggers.join(' ')}`] : []),
      ...(spec.replaces ?? []).map((r) => `replaces = ${r}`),
      ...(spec.replacesPriority ? [`replaces_priority = ${spec.replacesPriority}`] : []),
      ...(spec.noDatahash ? [] : [`datahash = ${createHash('sha256').update(data).digest('hex')}`]),
      '',
    ].join('\n');
    const controlFiles = [{ name: '.PKGINFO', body: Buffer.from(pkginfo) }, ...Object.entries(spec.scripts ?? {}).map(([name, text]) => ({ name, body: Buffer.from(text) }))];
    const control = gzipSync(await tar(controlFiles.map((f) => ({ header: { name: f.name, size: f.body.length, mode: 0o644, mtime: MTIME, uid: 0, gid: 0 }, body: f.body })), true));
    const apk = Buffer.concat([await this.#signature(control), control, data]);
    const built: BuiltPackage = { spec: { ...spec, arch }, apk, control, checksum: q1(control), sha256: createHash('sha256').update(apk).digest('hex') };
    this.built.push(built);
    return built;
  }

  /** The APKINDEX text of the packages added so far (in order). */
  indexText(): string {
    return this.built
      .map((b) => {
        const s = b.spec;
        const lines = [`C:${b.checksum}`, `P:${s.name}`, `V:${s.version}`, `A:${s.arch}`, `S:${b.apk.length}`, `I:4096`, `T:${s.description ?? `${s.name} test package`}`, 'U:https://example.invalid/', 'L:MIT', `o:${s.name}`, 't:1700000000'];
        if (s.providerPriority) lines.push(`k:${s.providerPriority}`);
        if (s.depends?.length) lines.push(`D:${s.depends.join(' ')}`);
        if (s.provides?.length) lines.push(`p:${s.provides.join(' ')}`);
        return lines.join('\n') + '\n';
      })
      .join('\n') + '\n';
  }

  /** A signed APKINDEX.tar.gz over `indexText()` (or `text`), signed by this repo's key. */
  async index(text = this.indexText()): Promise<Buffer> {
    const body = Buffer.from(text);
    const desc = Buffer.from('test repository');
    const indexGz = gzipSync(
      await tar(
        [
          { header: { name: 'DESCRIPTION', size: desc.length, mode: 0o644, mtime: MTIME, uid: 0, gid: 0 }, body: desc },
          { header: { name: 'APKINDEX', size: body.length, mode: 0o644, mtime: MTIME, uid: 0, gid: 0 }, body },
        ],
        false,
      ),
    );
    return Buffer.concat([await this.#signature(indexGz), indexGz]);
  }

  /** Routes for test/fetch/server.ts: `<prefix>/<arch>/APKINDEX.tar.gz` and every .apk. */
  async files(prefix: string, arch = 'x86_64'): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>();
    out.set(`${prefix}/${arch}/APKINDEX.tar.gz`, await this.index());
    for (const b of this.built) out.set(`${prefix}/${arch}/${b.spec.name}-${b.spec.version}.apk`, b.apk);
    return out;
  }
}

/** A minirootfs tarball built from base packages (their files, an apk database listing them). */
export interface MinirootfsSpec {
  /** Base packages: unpacked into the tarball, listed in /lib/apk/db/installed and /etc/apk/world, and also published in the repository (as Alpine's are). */
  packages: ApkPackageSpec[];
  /** Extra regular files, e.g. { 'etc/hostname': 'alpine\n' }. */
  files?: Record<string, string>;
}

export interface ApkRepoSpec {
  packages: ApkPackageSpec[];
  keyName?: string;
  keyPair?: ReturnType<typeof generateKeyPairSync>;
  arch?: string;
  /** URL path of the repository (default /alpine/v3.20/main); files go to DIR/<path>/<arch>/. */
  path?: string;
  minirootfs?: MinirootfsSpec;
}

export interface ServedApkRepo {
  /** The repository URL, as ApkRepository.url (no trailing slash). */
  url: string;
  /** Trusted keys for ApkInstallRequest.keys. */
  keys: Map<string, string>;
  repo: ApkRepo;
  /** The directory holding the repository's files (written by makeApkRepo; the caller removes it). */
  dir: string;
  /** Paths of every request served so far, in order (to assert "no network"). */
  requests: string[];
  /** The generated minirootfs, when the spec asked for one. */
  minirootfs?: { url: string; file: string; sha256: string; installed: Buffer; world: Buffer };
  /** Stops the server (files stay): later requests fail to connect. */
  close(): Promise<void>;
}

/** One installed-db record of a base package, as apk writes it (C P V A S I T U L o t D p, then F/R/a/Z). */
function baseRecord(b: BuiltPackage): string {
  const s = b.spec;
  const lines = [`C:${b.checksum}`, `P:${s.name}`, `V:${s.version}`, `A:${s.arch}`, `S:${b.apk.length}`, 'I:4096', `T:${s.description ?? `${s.name} test package`}`, 'U:https://example.invalid/', 'L:MIT', `o:${s.name}`, 't:1700000000'];
  if (s.depends?.length) lines.push(`D:${s.depends.join(' ')}`);
  if (s.provides?.length) lines.push(`p:${s.provides.join(' ')}`);
  const dirs = new Map<string, ApkFileSpec[]>();
  for (const f of s.files ?? []) {
    const path = f.path.replace(/\/+$/, '');
    if (f.dir) {
      if (!dirs.has(path)) dirs.set(path, []);
      continue;
    }
    const parent = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '';
    (dirs.get(parent) ?? dirs.set(parent, []).get(parent)!).push(f);
  }
  for (const [dir, files] of dirs) {
    lines.push(`F:${dir}`);
    for (const f of files) {
      lines.push(`R:${f.path.slice(f.path.lastIndexOf('/') + 1)}`);
      const mode = f.symlink ? 0o777 : (f.mode ?? 0o644);
      if (mode !== 0o644 || (f.uid ?? 0) !== 0 || (f.gid ?? 0) !== 0) lines.push(`a:${f.uid ?? 0}:${f.gid ?? 0}:${mode.toString(8)}`);
      if (f.symlink !== undefined || (!f.hardlink && !f.device)) lines.push(`Z:${q1(Buffer.from(f.symlink ?? f.content ?? ''))}`);
    }
  }
  return lines.join('\n') + '\n\n';
}

/**
 * A gzip'd minirootfs like Alpine's alpine-minirootfs-*.tar.gz: the base packages' files, their
 * installed-db records, world, repositories and the signing key. Returns the tarball and the db files.
 */
export async function makeMinirootfs(repo: ApkRepo, base: BuiltPackage[], repoUrl: string, extra: Record<string, string> = {}): Promise<{ tgz: Buffer; installed: Buffer; world: Buffer }> {
  type E = Parameters<typeof tar>[0][number];
  const h = { mtime: MTIME, uid: 0, gid: 0 };
  const entries: E[] = [];
  const seen = new Set<string>();
  const dir = (name: string): void => {
    if (seen.has(name)) return;
    seen.add(name);
    entries.push({ header: { ...h, name: `${name}/`, type: 'directory', mode: 0o755 } });
  };
  const file = (name: string, body: Buffer | string, mode = 0o644): void => {
    const parts = name.split('/');
    for (let i = 1; i < parts.length; i++) dir(parts.slice(0, i).join('/'));
    const b = Buffer.from(body);
    entries.push({ header: { ...h, name, type: 'file', mode, size: b.length }, body: b });
  };
  for (const d of ['bin', 'dev', 'etc', 'etc/apk', 'etc/apk/keys', 'lib', 'lib/apk', 'lib/apk/db', 'proc', 'root', 'sbin', 'sys', 'tmp', 'usr', 'usr/bin', 'var']) dir(d);
  for (const b of base) {
    for (const f of b.spec.files ?? []) {
      const name = f.path.replace(/\/+$/, '');
      if (f.dir) dir(name);
      else if (f.symlink) entries.push({ header: { ...h, name, type: 'symlink', linkname: f.symlink, mode: 0o777, uid: f.uid ?? 0, gid: f.gid ?? 0 } });
      else if (f.hardlink) entries.push({ header: { ...h, name, type: 'link', linkname: f.hardlink, mode: f.mode ?? 0o644 } });
      else if (!f.device) file(name, Buffer.isBuffer(f.content) ? f.content : (f.content ?? ''), f.mode ?? 0o644);
    }
  }
  const installed = Buffer.from(base.map(baseRecord).join(''));
  const world = Buffer.from([...new Set(base.map((b) => b.spec.name))].sort().join('\n') + '\n');
  file('etc/alpine-release', '3.20.3\n');
  file('etc/apk/world', world);
  file('etc/apk/repositories', `${repoUrl}\n`);
  file(`etc/apk/keys/${repo.keyName}`, repo.publicPem);
  file('lib/apk/db/installed', installed);
  file('lib/apk/db/scripts.tar', Buffer.alloc(1024)); // an empty tar, as apk writes it
  file('lib/apk/db/triggers', '');
  for (const [name, body] of Object.entries(extra)) file(name, body);
  return { tgz: gzipSync(await tar(entries, false)), installed, world };
}

/**
 * Writes a signed Alpine-style repository (and optionally a minirootfs) into `dir` and serves
 * `dir` over HTTP on 127.0.0.1: `<url>/<arch>/APKINDEX.tar.gz`, `<url>/<arch>/<name>-<ver>.apk`,
 * and `<base>/alpine-minirootfs-test-<arch>.tar.gz`. Call close() when done (e.g. t.after).
 *
 *   const r = await makeApkRepo(dir, { packages: [{ name: 'hello', version: '1.0-r0', files: [...] }] });
 *   await installApkPackages({ repositories: [{ url: r.url }], keys: r.keys, packages: ['hello'], arch: 'x86_64', cache });
 */
export async function makeApkRepo(dir: string, spec: ApkRepoSpec): Promise<ServedApkRepo> {
  const arch = spec.arch ?? 'x86_64';
  const prefix = spec.path ?? '/alpine/v3.20/main';
  const repo = new ApkRepo(spec.keyName ?? 'test@vmimg-00000001.rsa.pub', spec.keyPair);
  const base: BuiltPackage[] = [];
  for (const p of spec.minirootfs?.packages ?? []) base.push(await repo.add({ ...p, arch: p.arch ?? arch }));
  for (const p of spec.packages) await repo.add({ ...p, arch: p.arch ?? arch });
  for (const [path, body] of await repo.files(prefix, arch)) {
    mkdirSync(join(dir, dirname(path)), { recursive: true });
    writeFileSync(join(dir, path), body);
  }
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    requests.push(path);
    const file = normalize(join(dir, path));
    if (req.method !== 'GET' || !file.startsWith(normalize(dir) + sep) || !existsSync(file) || !statSync(file).isFile()) return void res.writeHead(404).end('not found');
    const body = readFileSync(file);
    res.writeHead(200, { 'content-length': String(body.length) }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const url = `${origin}${prefix}`;
  const out: ServedApkRepo = {
    url,
    keys: repo.keys,
    repo,
    dir,
    requests,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  if (spec.minirootfs) {
    const m = await makeMinirootfs(repo, base, url, spec.minirootfs.files);
    const name = `alpine-minirootfs-test-${arch}.tar.gz`;
    writeFileSync(join(dir, name), m.tgz);
    out.minirootfs = { url: `${origin}/${name}`, file: join(dir, name), sha256: createHash('sha256').update(m.tgz).digest('hex'), installed: m.installed, world: m.world };
  }
  return out;
}

/** A musl package as Alpine ships it (the loader, the libc symlink, its so: provide), for tests. */
export const MUSL: ApkPackageSpec = {
  name: 'musl',
  version: '1.2.5-r0',
  provides: ['so:libc.musl-x86_64.so.1=1'],
  files: [{ path: 'lib/', dir: true }, { path: 'lib/ld-musl-x86_64.so.1', content: 'musl loader', mode: 0o755 }, { path: 'lib/libc.musl-x86_64.so.1', symlink: 'ld-musl-x86_64.so.1' }],
};
