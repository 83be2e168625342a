/**
 * Path rules of the tree model: entry paths are relative byte strings with '/' separators, no
 * empty, '.' or '..' components, no NUL; the root is the empty path. Archive member names are
 * untrusted: anything that could escape the tree (absolute, '..', NUL) is refused, naming the path.
 */
import { VmimgError } from '../util/errors.js';

const SLASH = 0x2f;
const DOT = 0x2e;

/** Longest path accepted from any source (Linux PATH_MAX). */
export const MAX_PATH_BYTES = 4096;

/** Printable form of a path for messages (bytes that are not UTF-8 shown as \xNN). */
export function showPath(path: Uint8Array): string {
  const text = Buffer.from(path.buffer, path.byteOffset, path.length).toString('latin1');
  // Messages are built for every entry (most never shown): printable ASCII needs no escaping.
  if (PRINTABLE.test(text)) return text;
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    out += c >= 0x20 && c < 0x7f ? text[i] : `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return out;
}

const PRINTABLE = /^[\x20-\x7e]*$/;

/**
 * Normalises an archive member name (ustar/pax `path`, `linkpath` of a hard link): strips a
 * leading "./" and trailing '/', collapses "//" and "." components. Throws UNSAFE_PATH for an
 * absolute name, a '..' component or a NUL byte (POSIX.1-2017 pax: names are untrusted input).
 * Returns the empty buffer for the root ("." or "./").
 */
export function normaliseArchivePath(name: Uint8Array, what = 'archive member'): Buffer {
  if (name.length > MAX_PATH_BYTES) {
    throw new VmimgError('UNSAFE_PATH', `${what} path is longer than ${MAX_PATH_BYTES} bytes: '${showPath(name.subarray(0, 64))}...'`, { length: name.length });
  }
  if (name.includes(0)) throw new VmimgError('UNSAFE_PATH', `${what} path '${showPath(name)}' contains a NUL byte`, { path: showPath(name) });
  if (name[0] === SLASH) throw new VmimgError('UNSAFE_PATH', `${what} path '${showPath(name)}' is absolute`, { path: showPath(name) });
  const parts: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= name.length; i++) {
    if (i < name.length && name[i] !== SLASH) continue;
    const part = name.subarray(start, i);
    start = i + 1;
    if (part.length === 0 || (part.length === 1 && part[0] === DOT)) continue;
    if (part.length === 2 && part[0] === DOT && part[1] === DOT) {
      throw new VmimgError('UNSAFE_PATH', `${what} path '${showPath(name)}' contains a '..' component`, { path: showPath(name) });
    }
    parts.push(part);
  }
  return joinParts(parts);
}

function joinParts(parts: Uint8Array[]): Buffer {
  const out: Uint8Array[] = [];
  parts.forEach((p, i) => {
    if (i > 0) out.push(Buffer.of(SLASH));
    out.push(p);
  });
  return Buffer.concat(out);
}

/** Appends a component (which must not contain '/') to a tree path. */
export function childPath(parent: Buffer, name: Uint8Array): Buffer {
  return parent.length === 0 ? Buffer.from(name) : Buffer.concat([parent, Buffer.of(SLASH), name]);
}

/** The parent of a non-root tree path ('' for a top-level name). */
export function parentPath(path: Buffer): Buffer {
  const i = path.lastIndexOf(SLASH);
  return i < 0 ? ROOT : path.subarray(0, i);
}

/** The root path, shared: a zero-length buffer has no bytes anyone could change. */
const ROOT = Buffer.alloc(0);

/** The last component of a non-root tree path. */
export function baseName(path: Buffer): Buffer {
  return path.subarray(path.lastIndexOf(SLASH) + 1);
}

/** True when `path` lies strictly below `dir` (dir '' contains every non-root path). */
export function isBelow(path: Buffer, dir: Buffer): boolean {
  if (dir.length === 0) return path.length > 0;
  return path.length > dir.length && path[dir.length] === SLASH && path.subarray(0, dir.length).equals(dir);
}

/** Byte-wise order of tree paths (memcmp, shorter prefix first): the order of every Tree. */
export function comparePaths(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

/** The key under which a path is stored in maps (latin1 keeps every byte distinct). */
export function pathKey(path: Uint8Array): string {
  return Buffer.from(path.buffer, path.byteOffset, path.length).toString('latin1');
}
