/**
 * Codec for POSIX.1-2017 pax extended-header records ("%d %s=%s\n", the length counting the whole
 * record) with values kept as bytes, and the record keywords the tree model uses: path, linkpath,
 * uid, gid, mtime (decimal seconds with an optional fraction), SCHILY.xattr.NAME (GNU tar and star:
 * raw value bytes) and LIBARCHIVE.xattr.NAME (bsdtar: URL-encoded name, base64 value).
 */
import { VmimgError } from '../util/errors.js';

/** Decodes the records of one pax header block; later records with the same keyword win. */
export function decodePaxRecords(buf: Uint8Array): Map<string, Buffer> {
  const records = new Map<string, Buffer>();
  let pos = 0;
  while (pos < buf.length) {
    if (buf[pos] === 0) break; // NUL padding after the last record
    let space = pos;
    while (space < buf.length && space - pos < 20 && buf[space] !== 0x20) space++;
    const lengthText = Buffer.from(buf.subarray(pos, space)).toString('latin1');
    const length = /^[0-9]+$/.test(lengthText) ? Number(lengthText) : NaN;
    if (buf[space] !== 0x20 || !Number.isSafeInteger(length) || length <= space - pos + 1 || pos + length > buf.length || buf[pos + length - 1] !== 0x0a) {
      throw new VmimgError('CORRUPT_ARCHIVE', `Malformed pax extended header record at byte ${pos}`, { offset: pos });
    }
    const body = buf.subarray(space + 1, pos + length - 1);
    const eq = body.indexOf(0x3d);
    if (eq <= 0) throw new VmimgError('CORRUPT_ARCHIVE', `pax extended header record at byte ${pos} has no keyword`, { offset: pos });
    records.set(Buffer.from(body.subarray(0, eq)).toString('utf8'), Buffer.from(body.subarray(eq + 1)));
    pos += length;
  }
  return records;
}

/** Parses a pax time value ("1700000000", "1700000000.5", "-1.25") into nanoseconds. */
export function parsePaxTime(text: string, keyword: string): bigint {
  const m = /^(-?)([0-9]{1,20})(?:\.([0-9]*))?$/.exec(text);
  if (!m) throw new VmimgError('CORRUPT_ARCHIVE', `pax '${keyword}' value '${text.slice(0, 40)}' is not a decimal time`, { keyword });
  const frac = (m[3] ?? '').slice(0, 9).padEnd(9, '0');
  const ns = BigInt(m[2]!) * 1_000_000_000n + BigInt(frac);
  return m[1] === '-' ? -ns : ns;
}

/** Parses a pax decimal id (uid, gid) within [0, 2^32). */
export function parsePaxId(text: string, keyword: string): number {
  if (!/^[0-9]{1,10}$/.test(text) || Number(text) > 0xffffffff) {
    throw new VmimgError('CORRUPT_ARCHIVE', `pax '${keyword}' value '${text.slice(0, 40)}' is not an id`, { keyword });
  }
  return Number(text);
}

/** The extended attributes carried by pax records (SCHILY.xattr.* and LIBARCHIVE.xattr.*). */
export function paxXattrs(records: ReadonlyMap<string, Buffer>): Map<string, Buffer> {
  const xattrs = new Map<string, Buffer>();
  for (const [key, value] of records) {
    if (key.startsWith('SCHILY.xattr.') && key.length > 13) {
      xattrs.set(key.slice(13), value);
    } else if (key.startsWith('LIBARCHIVE.xattr.') && key.length > 17) {
      let name: string;
      try {
        name = decodeURIComponent(key.slice(17));
      } catch {
        throw new VmimgError('CORRUPT_ARCHIVE', `pax keyword '${key.slice(0, 80)}' has a malformed xattr name`, { keyword: key });
      }
      xattrs.set(name, Buffer.from(value.toString('latin1'), 'base64'));
    }
  }
  return xattrs;
}
