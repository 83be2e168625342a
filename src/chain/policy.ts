/**
 * The chain Policy: the only gate through which a file named *inside* an image (backing file,
 * vmdk extent, qcow2 external data file) is ever opened. This is the defence against the
 * host-file disclosure class of CVE-2024-32498 / CVE-2022-47951 (reference §3).
 *
 * - deny: nothing an image names is opened.
 * - allow-dirs (default): the name, resolved relative to the referring image's directory and
 *   with every symlink followed, must lie inside one of `allowedDirs` (default: the directory of
 *   the image the user named).
 * - allow-all: any path (the user said `--allow-any-path`).
 *
 * Depth and cycles are limited whatever the mode: a chain deeper than `maxDepth` or one that
 * revisits a file is refused.
 */
import { realpathSync } from 'node:fs';
import { dirname, relative, isAbsolute, sep } from 'node:path';
import { VmimgError } from '../util/errors.js';
import { FileStorage } from '../storage/file.js';
import type { Storage } from '../storage/types.js';
import type { FileReference } from '../formats/image.js';
import { fileIdentity, resolveReferencedPath } from './paths.js';

export type PolicyMode = 'deny' | 'allow-dirs' | 'allow-all';

export interface ChainPolicy {
  mode: PolicyMode;
  /** Absolute directories (symlinks resolved) references may point into, for allow-dirs. */
  allowedDirs: string[];
  /** Maximum number of images below the top one (backing depth). */
  maxDepth: number;
}

export const DEFAULT_MAX_DEPTH = 32;

/** The default policy for an image the user named: references stay inside its directory tree. */
export function defaultPolicy(topImagePath: string, extraDirs: string[] = []): ChainPolicy {
  const dirs = [dirname(realOrSelf(topImagePath)), ...extraDirs.map(realOrSelf)];
  return { mode: 'allow-dirs', allowedDirs: dirs, maxDepth: DEFAULT_MAX_DEPTH };
}

export const DENY_ALL: ChainPolicy = { mode: 'deny', allowedDirs: [], maxDepth: 0 };

function realOrSelf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

function inside(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || (!rel.startsWith('..' + sep) && rel !== '..' && !isAbsolute(rel));
}

/**
 * Decides whether `ref`, recorded in the image at `imagePath`, may be opened; returns the path
 * to open (symlinks resolved). Throws REFERENCE_DENIED naming the reference otherwise.
 */
export function checkReference(policy: ChainPolicy, imagePath: string, ref: FileReference): string {
  const what = ref.kind === 'backing' ? 'backing file' : ref.kind === 'extent' ? 'vmdk extent' : 'external data file';
  if (ref.name.includes('\0')) {
    throw new VmimgError('REFERENCE_DENIED', `${what} name of '${imagePath}' contains a NUL byte`, { image: imagePath, kind: ref.kind });
  }
  if (/^json:|^[a-z][a-z0-9+.-]*:\/\//i.test(ref.name)) {
    throw new VmimgError('REFERENCE_DENIED', `${what} '${ref.name}' named by '${imagePath}' is a protocol or json: pseudo-filename; vmimg only opens plain local files`, { image: imagePath, kind: ref.kind, name: ref.name });
  }
  if (policy.mode === 'deny') {
    throw new VmimgError('REFERENCE_DENIED', `${what} '${ref.name}' named by '${imagePath}' was not opened: the policy denies references to other files`, { image: imagePath, kind: ref.kind, name: ref.name });
  }
  const resolved = resolveReferencedPath(imagePath, ref.name);
  let real: string;
  try {
    real = realpathSync(resolved);
  } catch {
    // Missing files are reported by the open itself; check the lexical path meanwhile.
    real = resolved;
  }
  if (policy.mode === 'allow-dirs' && !policy.allowedDirs.some((d) => inside(d, real))) {
    throw new VmimgError(
      'REFERENCE_DENIED',
      `${what} '${ref.name}' named by '${imagePath}' resolves to '${real}', outside the allowed directories (${policy.allowedDirs.join(', ')}); use --allow-any-path or allow its directory to open it`,
      { image: imagePath, kind: ref.kind, name: ref.name, resolved: real },
    );
  }
  return real;
}

/** Opens a permitted reference read-only (or read-write) as Storage. */
export async function openReference(policy: ChainPolicy, imagePath: string, ref: FileReference, writable = false): Promise<Storage> {
  const path = checkReference(policy, imagePath, ref);
  if (writable && ref.kind === 'data-file') refuseWritableSelf(imagePath, ref, path);
  try {
    return await FileStorage.open(path, { writable, name: resolveReferencedPath(imagePath, ref.name) });
  } catch (e) {
    if (e instanceof VmimgError && ref.kind === 'backing' && e.code === 'FILE_NOT_FOUND') {
      throw new VmimgError('BACKING_NOT_FOUND', `Could not open backing file '${ref.name}' of '${imagePath}': No such file or directory`, { image: imagePath, name: ref.name, path }, { cause: e });
    }
    throw e;
  }
}

/**
 * A reference opened for writing (a qcow2 data file written in place) must not be the image
 * itself: guest data written at its guest offset would overwrite the image's own metadata.
 * QEMU refuses the same open (its image locks conflict); a read-only open is allowed, as in QEMU.
 */
function refuseWritableSelf(imagePath: string, ref: FileReference, path: string): void {
  const id = fileIdentity;
  const self = id(imagePath);
  if (self !== undefined && self === id(path)) {
    throw new VmimgError('REFERENCE_DENIED', `external data file '${ref.name}' named by '${imagePath}' is the image file itself; it cannot be opened for writing`, { image: imagePath, kind: ref.kind, name: ref.name, resolved: path });
  }
}
