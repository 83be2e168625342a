/**
 * apk dependency atoms (apk-package(5) "depends", "provides"; apk-tools' apk_blob_pull_dep):
 *   [!]NAME[@TAG][OP VERSION]     OP: < <= = >= > ~ <~ >~
 * NAME may be a virtual such as so:libc.musl-x86_64.so.1, cmd:sh or pc:zlib. `!` makes a
 * conflict. Repository tags (@edge) pin to tagged repositories, which vmimg does not model, so
 * they are refused by name. Checksum pins (`><Q1...`) are refused too.
 */
import { VmimgError } from '../../util/errors.js';
import { isValidVersion, operatorMask, versionMatches } from './version.js';

export interface Dep {
  name: string;
  /** Comparison mask (version.ts) or undefined for "any version". */
  mask?: number;
  version?: string;
  conflict: boolean;
  /** The atom as written, for messages. */
  text: string;
}

/**
 * Names in atoms: apk takes any run of characters up to a separator (whitespace), an operator
 * (< > = ~) or a tag (@) (package.c apk_blob_pull_dep), so provides such as `/bin/sh` occur in
 * real indexes. Control characters are refused too.
 */
const NAME = /^[^\s<>=~@!\x00-\x1f\x7f]+$/;

/**
 * Package names (P:), which also name the .apk file in a URL: Alpine's characters only, so a
 * name can never step out of `<repo>/<arch>/`.
 */
export const PACKAGE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._+-]*$/;

/** The operators apk writes (apk_version_op_string), checksum pins aside. */
const OPERATORS = new Set(['<', '<=', '=', '>=', '>', '~', '<~', '>~']);

export function parseDep(text: string, where: string): Dep {
  const bad = (why: string): never => {
    throw new VmimgError('APK_CORRUPT_INDEX', `${where}: invalid dependency '${text}': ${why}`, { dependency: text });
  };
  if (text.length === 0 || text.length > 1024) bad('empty or longer than 1024 characters');
  let rest = text;
  const conflict = rest.startsWith('!');
  if (conflict) rest = rest.slice(1);
  const m = /^([^<>=~@]+)(@[A-Za-z0-9_.-]+)?(?:([<>=~]{1,2})(.+))?$/.exec(rest);
  if (!m) return bad('not NAME[OP VERSION]');
  const [, name, tag, op, version] = m;
  if (!NAME.test(name!)) bad(`bad name '${name}'`);
  if (tag !== undefined) {
    throw new VmimgError('UNSUPPORTED_OPTION', `${where}: repository tags are not supported ('${text}'); list the tagged repository instead`, { dependency: text });
  }
  if (op === undefined) return { name: name!, conflict, text };
  const mask = OPERATORS.has(op) ? operatorMask(op) : undefined;
  if (mask === undefined) bad(`unknown operator '${op}'`);
  if (!isValidVersion(version!)) bad(`bad version '${version}'`);
  return { name: name!, mask, version: version!, conflict, text };
}

/** Space-separated atoms (D:, p:, i: fields and /etc/apk/world). */
export function parseDeps(text: string, where: string): Dep[] {
  return text
    .split(/\s+/)
    .filter((t) => t !== '')
    .map((t) => parseDep(t, where));
}

/** Does a package or provide of `version` (undefined: unversioned provide) satisfy `dep`'s version part? */
export function versionSatisfies(dep: Dep, version: string | undefined): boolean {
  if (dep.mask === undefined) return true;
  if (version === undefined) return false; // an unversioned provide never satisfies a versioned atom
  return versionMatches(version, dep.mask, dep.version!);
}
