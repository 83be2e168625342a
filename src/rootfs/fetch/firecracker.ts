/**
 * Firecracker release binaries (reference/ext4-firecracker-virtio.md §3.1).
 *
 * A release is BASE/vX.Y.Z/firecracker-vX.Y.Z-ARCH.tgz plus BASE/vX.Y.Z/firecracker-vX.Y.Z-ARCH.tgz.sha256.txt
 * (one `sha256sum` line: "<hex>  <filename>"). The tgz holds release-vX.Y.Z-ARCH/firecracker-vX.Y.Z-ARCH
 * and release-vX.Y.Z-ARCH/jailer-vX.Y.Z-ARCH, installed as DEST/bin/firecracker and DEST/bin/jailer
 * (0755). DEST/firecracker-version.json records version, arch, tarball URL and digest, and each
 * binary's digest; when it matches the request and the binaries still hash to it, nothing is fetched.
 * Trust: the .sha256.txt comes from the same base URL as the tarball (Firecracker signs nothing
 * publicly); FIRECRACKER_PINNED may pin tarball digests, which then must agree with it.
 */
import { createReadStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract } from 'tar-stream';
import { VmimgError } from '../../util/errors.js';
import { FetchCache, hashFile, parseSha256, type FetchProgress } from './cache.js';
import { httpGetBytes, type HttpOptions } from './http.js';
import { commitStaged, installText, readJsonIfAny, stage } from './install.js';

export type Arch = 'x86_64' | 'aarch64';
export const ARCHES: readonly Arch[] = ['x86_64', 'aarch64'];

export const FIRECRACKER_DEFAULT_VERSION = 'v1.16.1';
export const FIRECRACKER_DEFAULT_BASE_URL = 'https://github.com/firecracker-microvm/firecracker/releases/download';
/**
 * Tarball digests vouched for by vmimg, per version and arch: the published .sha256.txt must agree.
 * The default release's, as its .sha256.txt states them and as at least four unrelated public
 * projects pin them (docs/fetch.md "Pinned digests"); other versions trust the .sha256.txt alone.
 */
export const FIRECRACKER_PINNED: Readonly<Record<string, Partial<Record<Arch, string>>>> = {
  'v1.16.1': {
    x86_64: '382a02a869e4d6d5cb14c40577f9545e8458021ea8b0b2d3fc10ec14d9c242e6',
    aarch64: '8d0e69f6d6f9a1724551f607f18504052c16c1828ee3d4d7b6e6c73380871e0e',
  },
};

const BINARIES = ['firecracker', 'jailer'] as const;

export function hostArch(): Arch {
  return process.arch === 'arm64' ? 'aarch64' : 'x86_64';
}

export function parseArch(value: string | undefined): Arch {
  if (value === undefined) return hostArch();
  if ((ARCHES as readonly string[]).includes(value)) return value as Arch;
  throw new VmimgError('INVALID_OPTION', `Unknown architecture '${value}' (x86_64 or aarch64)`, { arch: value });
}

export function parseFirecrackerVersion(value: string): string {
  const v = value.startsWith('v') ? value : `v${value}`;
  if (!/^v\d+\.\d+\.\d+$/.test(v)) throw new VmimgError('INVALID_OPTION', `Not a Firecracker release version (vX.Y.Z): '${value}'`, { version: value });
  return v;
}

/** The digest for `filename` in `sha256sum` output ("<hex>  <name>" or "<hex> *<name>" lines). */
export function parseSha256Txt(text: string, filename: string, url: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  for (const line of lines) {
    const m = /^([0-9a-fA-F]{64})(?:\s+\*?(.+))?$/.exec(line);
    if (!m) continue;
    const name = m[2]?.split('/').pop();
    if (name === undefined ? lines.length === 1 : name === filename) return parseSha256(m[1]!);
  }
  throw new VmimgError('FETCH_FAILED', `No SHA256 for '${filename}' in '${url}'`, { url, filename });
}

export interface FirecrackerRequest extends HttpOptions {
  version: string;
  arch: Arch;
  dest: string;
  baseUrl: string;
  cache: FetchCache;
  progress?: FetchProgress;
}

export interface FirecrackerResult {
  version: string;
  arch: Arch;
  url: string;
  sha256: string;
  bin: { firecracker: string; jailer: string };
  /** 'present': already installed and verified, no network used. */
  status: 'present' | 'installed';
  downloaded: boolean;
}

interface Sidecar {
  version: string;
  arch: Arch;
  url: string;
  sha256: string;
  files: Record<string, string>;
}

export function sidecarPath(dest: string): string {
  return join(dest, 'firecracker-version.json');
}

async function installedMatches(req: FirecrackerRequest): Promise<Sidecar | undefined> {
  const side = (await readJsonIfAny(sidecarPath(req.dest))) as Sidecar | undefined;
  if (!side || side.version !== req.version || side.arch !== req.arch || typeof side.files !== 'object') return undefined;
  for (const name of BINARIES) {
    const want = side.files[name];
    if (typeof want !== 'string' || (await hashFile(join(req.dest, 'bin', name))) !== want) return undefined;
  }
  return side;
}

/** Extracts the two binaries from the verified tarball into staging files beside their targets. */
async function extractBinaries(tgz: string, url: string, req: FirecrackerRequest): Promise<Map<string, string>> {
  const { version, arch } = req;
  const wanted = new Map(BINARIES.map((b) => [`release-${version}-${arch}/${b}-${version}-${arch}`, b]));
  const staged = new Map<string, string>();
  const ex = extract();
  ex.on('entry', (header, stream, next) => {
    const name = header.name.replace(/^\.\//, '');
    const bin = wanted.get(name);
    if (bin === undefined || (header.type !== 'file' && header.type !== 'contiguous-file') || staged.has(bin)) {
      stream.on('end', next).resume();
      return;
    }
    const pass = new PassThrough();
    stream.pipe(pass);
    stage(join(req.dest, 'bin', bin), pass, 0o755).then(
      (tmp) => {
        staged.set(bin, tmp);
        next();
      },
      (e) => next(e),
    );
  });
  try {
    await pipeline(createReadStream(tgz), createGunzip(), ex);
    const missing = [...wanted.entries()].filter(([, b]) => !staged.has(b)).map(([n]) => n);
    if (missing.length) throw new VmimgError('CORRUPT_ARCHIVE', `Release tarball '${url}' lacks ${missing.join(', ')}`, { missing });
  } catch (e) {
    for (const tmp of staged.values()) await unlink(tmp).catch(() => undefined);
    if (e instanceof VmimgError) throw e;
    throw new VmimgError('CORRUPT_ARCHIVE', `Could not extract the release tarball: ${(e as Error).message}`, {}, { cause: e });
  }
  return staged;
}

/** Fetches, verifies and installs firecracker + jailer; idempotent (see the file comment). */
export async function fetchFirecracker(req: FirecrackerRequest): Promise<FirecrackerResult> {
  const { version, arch } = req;
  const bin = { firecracker: join(req.dest, 'bin', 'firecracker'), jailer: join(req.dest, 'bin', 'jailer') };
  const filename = `firecracker-${version}-${arch}.tgz`;
  const url = `${req.baseUrl.replace(/\/+$/, '')}/${version}/${filename}`;
  const present = await installedMatches(req);
  if (present) return { version, arch, url: present.url, sha256: present.sha256, bin, status: 'present', downloaded: false };

  const sumUrl = `${url}.sha256.txt`;
  const sha256 = parseSha256Txt((await httpGetBytes(sumUrl, 64 * 1024, req)).toString('utf8'), filename, sumUrl);
  const pinned = FIRECRACKER_PINNED[version]?.[arch];
  if (pinned !== undefined && pinned !== sha256) {
    throw new VmimgError('CHECKSUM_MISMATCH', `'${sumUrl}' says ${sha256} but vmimg pins ${pinned} for ${filename}`, { url: sumUrl, expected: pinned, actual: sha256 });
  }
  const { path: tgz, downloaded } = await req.cache.ensure({ ...req, url, sha256 });
  const staged = await extractBinaries(tgz, url, req);
  const files: Record<string, string> = {};
  for (const [name, tmp] of staged) files[name] = (await hashFile(tmp))!;
  await commitStaged(BINARIES.map((b) => [staged.get(b)!, bin[b]]));
  const side: Sidecar = { version, arch, url, sha256, files };
  await installText(sidecarPath(req.dest), JSON.stringify(side, null, 2) + '\n');
  return { version, arch, url, sha256, bin, status: 'installed', downloaded };
}
