/**
 * apk's script and trigger databases, extended with newly installed packages so apk inside the
 * guest runs their deinstall/upgrade scripts and triggers later (apk-tools database.c):
 * - /lib/apk/db/scripts.tar: an uncompressed tar with one regular file per script, named
 *   `NAME-VERSION.Q1<base64 SHA1 of the control section>.ACTION`, mode 0755, mtime = build time
 *   (apk_db_scriptdb_write); apk attaches each to the installed package with that checksum.
 * - /lib/apk/db/triggers: one line per package with a .trigger script: `Q1<checksum> DIR DIR...`
 *   from .PKGINFO `triggers` (apk_db_triggers_write).
 * The base's files are kept as they are and the new entries appended.
 */
import { pack } from 'tar-stream';
import { VmimgError } from '../../util/errors.js';
import type { IndexPackage } from './apkindex.js';
import type { ScriptFile } from './package.js';

/** Largest base scripts.tar accepted, and its entry count. */
const MAX_SCRIPTS_TAR = 64 * 1024 * 1024;
const MAX_SCRIPT_ENTRIES = 100_000;

/** Byte length of a tar's entries before its end-of-archive blocks (bounded walk over the headers). */
export function tarEntriesLength(tar: Buffer, what: string): number {
  if (tar.length > MAX_SCRIPTS_TAR) throw new VmimgError('APK_CORRUPT_PACKAGE', `${what} is larger than ${MAX_SCRIPTS_TAR} bytes`, { file: what });
  let pos = 0;
  for (let n = 0; pos + 512 <= tar.length; n++) {
    const h = tar.subarray(pos, pos + 512);
    if (h.every((b) => b === 0)) return pos;
    if (n >= MAX_SCRIPT_ENTRIES) throw new VmimgError('APK_CORRUPT_PACKAGE', `${what} has more than ${MAX_SCRIPT_ENTRIES} entries`, { file: what });
    const sizeText = h.subarray(124, 136).toString('latin1').replace(/[\0 ]+$/g, '').trim();
    if (!/^[0-7]{0,11}$/.test(sizeText)) throw new VmimgError('APK_CORRUPT_PACKAGE', `${what}: bad tar size field at byte ${pos}`, { file: what, offset: pos });
    const size = sizeText === '' ? 0 : parseInt(sizeText, 8);
    const next = pos + 512 + Math.ceil(size / 512) * 512;
    if (next > tar.length) throw new VmimgError('APK_CORRUPT_PACKAGE', `${what}: entry at byte ${pos} runs past the end`, { file: what, offset: pos });
    pos = next;
  }
  if (pos !== tar.length) throw new VmimgError('APK_CORRUPT_PACKAGE', `${what}: trailing bytes after the last entry`, { file: what });
  return pos;
}

/** scripts.tar: the base's entries, then one entry per new script, then the end blocks. */
export async function scriptsTar(base: Buffer | undefined, added: Array<{ pkg: IndexPackage; scripts: ScriptFile[] }>): Promise<Buffer> {
  const head = base ? base.subarray(0, tarEntriesLength(base, '/lib/apk/db/scripts.tar')) : Buffer.alloc(0);
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => void chunks.push(c as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    p.on('end', resolve);
    p.on('error', reject);
  });
  for (const { pkg, scripts } of added) {
    for (const s of scripts) {
      p.entry({ name: `${pkg.name}-${pkg.version}.${pkg.checksum}.${s.action}`, size: s.data.length, mode: 0o755, mtime: new Date(pkg.buildTime * 1000), uid: 0, gid: 0, type: 'file' }, s.data);
    }
  }
  p.finalize();
  await done;
  return Buffer.concat([head, ...chunks]);
}

/** triggers: the base text, then `Q1... DIR...` for each new package with a trigger script and trigger dirs. */
export function triggersText(base: string, added: Array<{ pkg: IndexPackage; scripts: ScriptFile[]; triggers: string[] }>): string {
  let out = base === '' || base.endsWith('\n') ? base : `${base}\n`;
  for (const { pkg, scripts, triggers } of added) {
    if (triggers.length > 0 && scripts.some((s) => s.action === 'trigger')) out += `${pkg.checksum} ${triggers.join(' ')}\n`;
  }
  return out;
}
