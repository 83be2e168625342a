/**
 * The rootfs lock file (docs/rootfs.md "Lock file"), written next to the image as
 * `<image>.lock.json`: the base artifact, the repositories, and every package installed with its
 * version, index checksum (apk C: field) and the SHA256 of the .apk file. A rebuild that finds a
 * lock pins every package to the locked version and fetches the .apk files by SHA256 from the
 * cache, so the same recipe gives the same bytes. Keys are written in a fixed order.
 */
import { readFile } from 'node:fs/promises';
import { VmimgError } from '../../util/errors.js';
import type { ApkInstalledPackage } from '../apk/index.js';
import { installText } from '../fetch/install.js';

/** A locked package: name, version, arch, index checksum (C:), .apk SHA256, size, repository. */
export type LockedPackage = Omit<ApkInstalledPackage, 'installedSize'>;

export interface RootfsLock {
  lockVersion: 1;
  recipe: string;
  arch: string;
  base: { url: string; sha256: string } | { path: string } | null;
  repositories: string[];
  /** SHA256 of each repository's APKINDEX.tar.gz as used (kept in the fetch cache). */
  indexes?: Array<{ url: string; sha256: string }>;
  /** Requested packages (world). */
  world: string[];
  /** Installed packages in install order. */
  packages: LockedPackage[];
  image: { file: string; format: string; size: number; sha256: string };
}

const MAX_LOCK_BYTES = 16 * 1024 * 1024;

function bad(path: string, why: string): never {
  throw new VmimgError('INVALID_RECIPE', `lock file '${path}' is not valid: ${why}`, { path });
}

function isStr(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= 4096;
}

/** Reads and validates a lock file; undefined when it does not exist. */
export async function readLock(path: string): Promise<RootfsLock | undefined> {
  let text: string;
  try {
    const bytes = await readFile(path);
    if (bytes.length > MAX_LOCK_BYTES) bad(path, `larger than ${MAX_LOCK_BYTES} bytes`);
    text = bytes.toString('utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    bad(path, 'not JSON');
  }
  const o = doc as Partial<RootfsLock> | null;
  if (typeof o !== 'object' || o === null || o.lockVersion !== 1) bad(path, 'lockVersion must be 1');
  if (!isStr(o.recipe) || !isStr(o.arch)) bad(path, 'recipe and arch must be strings');
  if (!Array.isArray(o.packages) || o.packages.length > 100000) bad(path, 'packages must be a list');
  if (!Array.isArray(o.repositories) || !o.repositories.every(isStr)) bad(path, 'repositories must be a list of URLs');
  for (const [i, p] of o.packages.entries()) {
    if (typeof p !== 'object' || p === null || !isStr(p.name) || !isStr(p.version) || !isStr(p.checksum) || !/^[0-9a-f]{64}$/.test(String(p.sha256))) {
      bad(path, `packages[${i}] needs name, version, checksum and a sha256`);
    }
  }
  return o as RootfsLock;
}

/** Writes `lock` atomically. */
export async function writeLock(path: string, lock: RootfsLock): Promise<void> {
  await installText(path, JSON.stringify(lock, null, 2) + '\n');
}

/** The lock path for an image path. */
export function lockPathFor(image: string): string {
  return `${image}.lock.json`;
}
