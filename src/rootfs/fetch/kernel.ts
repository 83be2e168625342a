/**
 * Firecracker CI guest kernels (reference/ext4-firecracker-virtio.md §3.2): uncompressed vmlinux
 * files in the public S3 bucket spec.ccfc.min under firecracker-ci/<ci-version>/<arch>/vmlinux-X.Y.Z.
 *
 * Firecracker publishes no checksums for them, so trust comes only from KERNEL_TABLE's pinned
 * digests or from the user's --sha256 (which wins, for mirrors of other builds). An entry whose
 * digest is null is "not yet pinned": fetching it without --sha256 fails with DIGEST_NOT_PINNED
 * before any network request. A digest is pinned only when computed from the file at that exact
 * key, and this machine cannot reach the bucket: the pins below are the digests that at least four
 * unrelated public projects record for that key (docs/fetch.md "Pinned digests"); a key with fewer
 * stays unpinned.
 *
 * The kernel lands at DEST/vmlinux-<version> (mode 0644, atomically) with DEST/vmlinux-<version>.sha256
 * beside it in `sha256sum` format; a present file that hashes to the digest is not fetched again.
 */
import { join } from 'node:path';
import { VmimgError } from '../../util/errors.js';
import { FetchCache, hashFile, parseSha256, type FetchProgress } from './cache.js';
import type { Arch } from './firecracker.js';
import type { HttpOptions } from './http.js';
import { installCopy, installText } from './install.js';

export const KERNEL_DEFAULT_BASE_URL = 'https://s3.amazonaws.com/spec.ccfc.min';
export const KERNEL_DEFAULT_VERSION = '6.1';

export interface KernelEntry {
  /** Key under the base URL, per arch. */
  key: (arch: Arch) => string;
  /** Pinned SHA256 per arch; null = not yet pinned. */
  sha256: Record<Arch, string | null>;
}

/** Keys as named in Firecracker's getting-started docs of the CI version in the path. */
export const KERNEL_TABLE: Readonly<Record<string, KernelEntry>> = {
  '5.10': { key: (a) => `firecracker-ci/v1.7/${a}/vmlinux-5.10.209`, sha256: { x86_64: null, aarch64: null } },
  '6.1': {
    key: (a) => `firecracker-ci/v1.10/${a}/vmlinux-6.1.102`,
    sha256: {
      x86_64: '49ba99a5299444ac59dda2efc3569cc2d58a5d72ea6475a6bfc37aa0bf322e54',
      aarch64: 'bb1f50912d63a8ca5e92d488984875e1177eb9283050ffa592a8cb455cada52d',
    },
  },
};

export interface KernelRequest extends HttpOptions {
  version: string;
  arch: Arch;
  dest: string;
  baseUrl: string;
  /** The user's digest (--sha256): required while the table entry is not pinned. */
  sha256?: string;
  cache: FetchCache;
  progress?: FetchProgress;
}

export interface KernelResult {
  version: string;
  arch: Arch;
  url: string;
  sha256: string;
  path: string;
  status: 'present' | 'installed';
  downloaded: boolean;
}

/** Resolves URL and digest, refusing before any network use when no digest is known. */
export function resolveKernel(req: Pick<KernelRequest, 'version' | 'arch' | 'baseUrl' | 'sha256'>): { url: string; sha256: string } {
  const entry = Object.hasOwn(KERNEL_TABLE, req.version) ? KERNEL_TABLE[req.version] : undefined;
  if (!entry) {
    throw new VmimgError('INVALID_OPTION', `Unknown guest kernel version '${req.version}' (known: ${Object.keys(KERNEL_TABLE).join(', ')})`, { version: req.version });
  }
  const url = `${req.baseUrl.replace(/\/+$/, '')}/${entry.key(req.arch)}`;
  const pinned = entry.sha256[req.arch];
  if (req.sha256 !== undefined) return { url, sha256: parseSha256(req.sha256) };
  if (pinned === null) {
    throw new VmimgError(
      'DIGEST_NOT_PINNED',
      `Guest kernel ${req.version} (${req.arch}) has no pinned SHA256 in vmimg yet, and Firecracker publishes none: ` +
        `download '${url}' once, check it, and pass its digest with --sha256 HEX`,
      { version: req.version, arch: req.arch, url },
    );
  }
  return { url, sha256: pinned };
}

export async function fetchKernel(req: KernelRequest): Promise<KernelResult> {
  const { url, sha256 } = resolveKernel(req);
  const path = join(req.dest, `vmlinux-${req.version}`);
  const base = { version: req.version, arch: req.arch, url, sha256, path };
  if ((await hashFile(path)) === sha256) return { ...base, status: 'present', downloaded: false };
  const { path: cached, downloaded } = await req.cache.ensure({ ...req, url, sha256 });
  await installCopy(cached, path, 0o644);
  await installText(`${path}.sha256`, `${sha256}  vmlinux-${req.version}\n`);
  return { ...base, status: 'installed', downloaded };
}
