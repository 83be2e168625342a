/**
 * Splitting a concatenation of gzip members (RFC 1952) into the byte ranges of each member, as
 * apk v2 files need: the signature, control and data sections are separate members, and the
 * signature and checksums cover a member's compressed bytes. Each member's header is parsed
 * (FEXTRA, FNAME, FCOMMENT, FHCRC), its deflate stream inflated to find where it ends (RFC 1951),
 * and the 8-byte trailer (CRC32, ISIZE) checked against the inflated bytes.
 */
import { inflateRawSync } from 'node:zlib';
import CRC32 from 'crc-32';
import { VmimgError } from '../../util/errors.js';

export interface GzipMember {
  /** Byte range of the whole member (header through trailer) in the input. */
  start: number;
  end: number;
  /** The decompressed bytes. */
  data: Buffer;
}

const FHCRC = 2;
const FEXTRA = 4;
const FNAME = 8;
const FCOMMENT = 16;

/** Reads the one member starting at `start`; `maxOutput` bounds its inflated size. */
export function readGzipMember(bytes: Buffer, start: number, what: string, maxOutput: number): GzipMember {
  const fail = (why: string, at: number): never => {
    throw new VmimgError('APK_CORRUPT_PACKAGE', `${what}: ${why} at byte ${at}`, { file: what, offset: at });
  };
  let pos = start;
  if (bytes.length - pos < 18 || bytes[pos] !== 0x1f || bytes[pos + 1] !== 0x8b || bytes[pos + 2] !== 8) fail('not a gzip member', pos);
  const flags = bytes[pos + 3]!;
  pos += 10;
  if (flags & FEXTRA) {
    if (pos + 2 > bytes.length) fail('truncated FEXTRA', pos);
    pos += 2 + bytes.readUInt16LE(pos);
  }
  for (const f of [FNAME, FCOMMENT]) {
    if (flags & f) {
      const nul = bytes.indexOf(0, pos);
      if (nul < 0) fail('unterminated header string', pos);
      pos = nul + 1;
    }
  }
  if (flags & FHCRC) pos += 2;
  if (pos >= bytes.length) fail('truncated header', start);
  let data: Buffer;
  let used: number;
  try {
    const r = inflateRawSync(bytes.subarray(pos), { info: true, maxOutputLength: Math.max(1, maxOutput) }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
    data = r.buffer;
    used = r.engine.bytesWritten;
  } catch (e) {
    return fail(`bad deflate data (${(e as Error).message})`, pos);
  }
  pos += used;
  if (pos + 8 > bytes.length) fail('truncated gzip trailer', pos);
  if (bytes.readUInt32LE(pos) !== CRC32.buf(data) >>> 0 || bytes.readUInt32LE(pos + 4) !== (data.length >>> 0)) fail('gzip CRC or length mismatch', pos);
  return { start, end: pos + 8, data };
}

/**
 * Splits `bytes` into members. `maxMembers` bounds the count and `maxOutput` the total inflated
 * size (a zip bomb is APK_CORRUPT_PACKAGE before memory runs out). `what` names the file.
 */
export function splitGzipMembers(bytes: Buffer, what: string, limits: { maxMembers: number; maxOutput: number }): GzipMember[] {
  const members: GzipMember[] = [];
  let pos = 0;
  let total = 0;
  while (pos < bytes.length) {
    if (members.length >= limits.maxMembers) {
      throw new VmimgError('APK_CORRUPT_PACKAGE', `${what}: more than ${limits.maxMembers} gzip members at byte ${pos}`, { file: what, offset: pos });
    }
    const m = readGzipMember(bytes, pos, what, limits.maxOutput - total);
    total += m.data.length;
    members.push(m);
    pos = m.end;
  }
  return members;
}
