/**
 * The sections of an apk v2 file or APKINDEX.tar.gz (apk-v2(5)): gzip members that together form
 * one tar stream — signatures (`.SIGN.<ALG>.<keyname>` files) first, then the control section
 * (.PKGINFO and scripts; for an index: APKINDEX and DESCRIPTION), then for packages the data.
 * The tar stream of each section ends without end-of-archive blocks, so each member is read as
 * a sequence of 512-byte headers here (ustar and PAX 'x' records), bounded in count and size.
 */
import { constants, createPublicKey, verify } from 'node:crypto';
import { VmimgError } from '../../util/errors.js';
import type { GzipMember } from './gzip.js';

export interface TarFile {
  name: string;
  /** ustar type flag ('0' file, '5' dir, 'x' pax, ...). */
  type: string;
  data: Buffer;
}

function field(h: Buffer, at: number, len: number): string {
  const raw = h.subarray(at, at + len);
  const nul = raw.indexOf(0);
  return raw.subarray(0, nul < 0 ? len : nul).toString('utf8');
}

/** The regular files of a small tar fragment (no end marker needed), at most `maxFiles`. */
export function smallTarFiles(tar: Buffer, what: string, maxFiles: number): TarFile[] {
  const files: TarFile[] = [];
  let pos = 0;
  let paxPath: string | undefined;
  while (pos + 512 <= tar.length) {
    const h = tar.subarray(pos, pos + 512);
    if (h.every((b) => b === 0)) break;
    if (files.length >= maxFiles) throw new VmimgError('APK_CORRUPT_PACKAGE', `${what}: more than ${maxFiles} entries in a section`, { file: what });
    const sizeText = field(h, 124, 12).trim();
    if (!/^[0-7]*$/.test(sizeText)) throw new VmimgError('APK_CORRUPT_PACKAGE', `${what}: bad tar size field '${sizeText}' at byte ${pos}`, { file: what });
    const size = sizeText === '' ? 0 : parseInt(sizeText, 8);
    const type = String.fromCharCode(h[156]!) === '\0' ? '0' : String.fromCharCode(h[156]!);
    const prefix = field(h, 345, 155);
    const name = paxPath ?? (prefix ? `${prefix}/${field(h, 0, 100)}` : field(h, 0, 100));
    const dataStart = pos + 512;
    if (dataStart + size > tar.length) throw new VmimgError('APK_CORRUPT_PACKAGE', `${what}: tar entry '${name}' runs past its section`, { file: what });
    const data = tar.subarray(dataStart, dataStart + size);
    paxPath = undefined;
    if (type === 'x') {
      const m = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(data.toString('utf8'));
      if (m) paxPath = m[1];
    } else {
      files.push({ name, type, data: Buffer.from(data) });
    }
    pos = dataStart + Math.ceil(size / 512) * 512;
  }
  return files;
}

export interface Signature {
  /** Hash of the signature scheme: RSA = SHA-1, RSA256 = SHA-256, RSA512 = SHA-512. */
  hash: 'sha1' | 'sha256' | 'sha512';
  keyName: string;
  signature: Buffer;
}

const ALGS: Record<string, Signature['hash']> = { RSA: 'sha1', RSA256: 'sha256', RSA512: 'sha512' };

/** The `.SIGN.*` entries of the first section (none when the file is unsigned). */
export function readSignatures(first: TarFile[]): Signature[] {
  const out: Signature[] = [];
  for (const f of first) {
    const m = /^\.SIGN\.([A-Z0-9]+)\.(.+)$/.exec(f.name);
    if (!m) continue;
    const hash = ALGS[m[1]!];
    if (hash) out.push({ hash, keyName: m[2]!, signature: f.data });
  }
  return out;
}

/**
 * Verifies `signed` with the first signature whose key is trusted. No trusted key at all is
 * APK_UNTRUSTED_KEY; a trusted key whose signature does not verify is APK_BAD_SIGNATURE.
 */
export function verifySigned(sigs: Signature[], signed: Buffer, keys: ReadonlyMap<string, string>, what: string): string {
  if (sigs.length === 0) throw new VmimgError('APK_UNTRUSTED_KEY', `${what} is not signed`, { file: what });
  const trusted = sigs.filter((s) => keys.has(s.keyName));
  if (trusted.length === 0) {
    throw new VmimgError('APK_UNTRUSTED_KEY', `${what} is signed by ${sigs.map((s) => `'${s.keyName}'`).join(', ')}, which is not among the trusted keys (${[...keys.keys()].join(', ') || 'none'})`, {
      file: what,
      keys: sigs.map((s) => s.keyName),
    });
  }
  for (const s of trusted) {
    let ok = false;
    try {
      ok = verify(s.hash, signed, { key: createPublicKey(keys.get(s.keyName)!), padding: constants.RSA_PKCS1_PADDING }, s.signature);
    } catch {
      ok = false;
    }
    if (ok) return s.keyName;
  }
  throw new VmimgError('APK_BAD_SIGNATURE', `${what}: the signature by '${trusted[0]!.keyName}' does not verify`, { file: what, key: trusted[0]!.keyName });
}

/** The signature section is present when the first member holds only `.SIGN.*` files. */
export function hasSignatureSection(members: GzipMember[], what: string): boolean {
  if (members.length === 0) throw new VmimgError('APK_CORRUPT_PACKAGE', `${what} is empty`, { file: what });
  const files = smallTarFiles(members[0]!.data, what, 64);
  return files.length > 0 && files.every((f) => f.name.startsWith('.SIGN.'));
}
