/**
 * The VMDK text descriptor (VMware "Virtual Disk Format 5.0", "The Descriptor File"): the
 * exact text qemu-img 7.2 writes on create, and the pieces QEMU 7.2 reads back (block/vmdk.c),
 * with QEMU's own parsing rules so vmimg accepts and rejects the same descriptors:
 *
 * - CID / parentCID: the first occurrence of the name anywhere in the first DESC_SIZE-1 bytes
 *   (so "parentCID" satisfies a search for "CID"), one character skipped after it, then `%x`.
 * - createType: the first occurrence, two characters skipped (`="`), up to the next '"'.
 * - parentFileNameHint: the first occurrence, `="` skipped, up to the next '"' (≤ 4095 bytes).
 * - Extent lines: `sscanf("%10s %ld %10s \"%511[^\n\r\"]\" %ld")` from each line start.
 *
 * Descriptor bytes are handled as bytes; names are UTF-8.
 */
import { VmimgError } from '../../util/errors.js';
import { DESC_SIZE, EXTENT_TYPES, MAX_EXTENT_NAME, MAX_EXTENTS, MAX_PARENT_HINT_BYTES, PARENT_LINE_BUFFER } from './constants.js';
import { cStringEnd, latin1, nextLine, scanDec64, scanHex32, scanWord, skipSpace, strstr, utf8 } from './cscan.js';

// ---------------------------------------------------------------- formatting (create)

export interface DescriptorFields {
  cid: number;
  parentCid: number;
  /** "monolithicSparse" or "streamOptimized" (the subformat's canonical name). */
  createType: string;
  /** The backing file name exactly as given to -b; undefined without a backing file. */
  parentFileNameHint?: string;
  extents: Array<{ sectors: bigint; type: 'SPARSE'; fileName: string }>;
  hwVersion: string;
  cylinders: bigint;
  heads: number;
  adapterType: string;
  toolsVersion: string;
}

const enc = (s: string): Buffer => Buffer.from(s, 'utf8');

/**
 * The parentFileNameHint line as QEMU formats it: `parentFileNameHint="NAME"` cut to 4095 bytes
 * (snprintf into a 4096-byte buffer), with no newline of its own.
 */
export function parentHintLine(name: string): Uint8Array {
  return enc(`parentFileNameHint="${name}"`).subarray(0, PARENT_LINE_BUFFER - 1);
}

/**
 * The descriptor exactly as qemu-img 7.2 writes it (vmdk_co_do_create's template): CIDs in
 * lower-case hex without padding, the hint line (if any) directly after createType so that no
 * blank line precedes "# Extent description", and the DDB in a fixed order.
 */
export function formatDescriptor(f: DescriptorFields): Uint8Array {
  const parts: Uint8Array[] = [
    enc(`# Disk DescriptorFile\nversion=1\nCID=${(f.cid >>> 0).toString(16)}\nparentCID=${(f.parentCid >>> 0).toString(16)}\ncreateType="${f.createType}"\n`),
  ];
  if (f.parentFileNameHint !== undefined) parts.push(parentHintLine(f.parentFileNameHint));
  parts.push(enc('\n# Extent description\n'));
  for (const e of f.extents) parts.push(enc(`RW ${e.sectors} ${e.type} "${e.fileName}"\n`));
  parts.push(
    enc(
      '\n# The Disk Data Base\n#DDB\n\n' +
        `ddb.virtualHWVersion = "${f.hwVersion}"\n` +
        `ddb.geometry.cylinders = "${f.cylinders}"\n` +
        `ddb.geometry.heads = "${f.heads}"\n` +
        'ddb.geometry.sectors = "63"\n' +
        `ddb.adapterType = "${f.adapterType}"\n` +
        `ddb.toolsVersion = "${f.toolsVersion}"\n`,
    ),
  );
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------- reading

/**
 * The CID (or parentCID) QEMU's vmdk_read_cid finds in `area`, the DESC_SIZE bytes read at the
 * descriptor offset (0x200 for sparse files, 0 for descriptor files). Undefined when QEMU's
 * read fails (name absent, or no hex number after it), which makes QEMU's open fail.
 */
export function readCid(area: Uint8Array, which: 'CID' | 'parentCID'): number | undefined {
  const buf = area.length >= DESC_SIZE ? area.slice(0, DESC_SIZE) : padTo(area, DESC_SIZE);
  buf[DESC_SIZE - 1] = 0;
  const at = strstr(buf, which, 0, cStringEnd(buf));
  if (at < 0) return undefined;
  const from = at + which.length + 1;
  if (from >= buf.length) return undefined;
  return scanHex32(buf, from, cStringEnd(buf, from))?.value;
}

export type HintResult = { ok: true; name?: string } | { ok: false; reason: string };

/** vmdk_parent_open's reading of parentFileNameHint from the DESC_SIZE bytes at the descriptor offset. */
export function readParentHint(area: Uint8Array): HintResult {
  const buf = padTo(area.subarray(0, DESC_SIZE), DESC_SIZE + 1);
  const end = cStringEnd(buf);
  const at = strstr(buf, 'parentFileNameHint', 0, end);
  if (at < 0) return { ok: true };
  const start = at + 'parentFileNameHint'.length + 2;
  const close = start <= end ? buf.indexOf(0x22, start) : -1;
  if (close < 0 || close >= end) return { ok: false, reason: 'parentFileNameHint has no closing quote' };
  if (close - start > MAX_PARENT_HINT_BYTES) {
    return { ok: false, reason: `parentFileNameHint is ${close - start} bytes long (at most ${MAX_PARENT_HINT_BYTES})` };
  }
  return { ok: true, name: utf8(buf.subarray(start, close)) };
}

/** vmdk_parse_description(desc, "createType"): the value, or undefined when QEMU finds none. */
export function readCreateType(desc: Uint8Array): string | undefined {
  const end = cStringEnd(desc);
  const at = strstr(desc, 'createType', 0, end);
  if (at < 0) return undefined;
  const start = at + 'createType'.length + 2;
  if (start >= end) return undefined;
  const close = desc.indexOf(0x22, start);
  if (close < 0 || close >= end || close - start + 1 > 128) return undefined;
  return latin1(desc.subarray(start, close));
}

export type ExtentType = (typeof EXTENT_TYPES)[number];

export interface ExtentLine {
  access: 'RW';
  /** Size in sectors as the descriptor states it (> 0). */
  sectors: bigint;
  type: ExtentType;
  /** The extent file name as written (relative names are relative to the descriptor). */
  fileName: string;
  /** FLAT extents: the start sector within the file; VMFS: 0. */
  flatOffset?: bigint;
}

/**
 * The extents QEMU's vmdk_parse_extents would open, in order. Lines that are not RW, scan fewer
 * than four fields, have sectors ≤ 0 or an unknown type are skipped, as QEMU skips them; a FLAT
 * line without a non-negative offset, a VMFS line with one, or another type with a fifth field
 * is CORRUPT_IMAGE "Invalid extent line: …", QEMU's message. `desc` ends at its first NUL.
 * Like QEMU, an extent line preceded by blank lines counts once per blank line too (each scan
 * from a blank line start skips the newlines and reads the next line). More than MAX_EXTENTS
 * extents is UNSUPPORTED_IMAGE (QEMU has no limit; it opens one file per extent).
 */
export function parseExtentLines(desc: Uint8Array): ExtentLine[] {
  const end = cStringEnd(desc);
  const extents: ExtentLine[] = [];
  // sscanf's first conversion skips white space, so the scan from a line start equals the scan
  // from the first non-space byte after it. Scanning each such byte once (and remembering the
  // white-space run last skipped) keeps a megabyte of blank lines linear instead of quadratic.
  // q only grows with p, so one remembered scan suffices.
  let runStart = -1;
  let runEnd = -1;
  let m: ExtentFields = { count: 0 };
  for (let p = 0; p < end; p = nextLine(desc, p, end)) {
    const q = p >= runStart && p < runEnd ? runEnd : skipSpace(desc, p, end);
    if (q !== runEnd || runStart < 0) m = scanExtentFields(desc, q, end);
    runStart = p;
    runEnd = q;
    if (m.count < 4 || m.access !== 'RW') continue;
    if (m.type === 'FLAT') {
      if (m.count !== 5 || m.flatOffset! < 0n) throw invalidLine(desc, p, end);
    } else if (m.type === 'VMFS') {
      if (m.count !== 4) throw invalidLine(desc, p, end);
    } else if (m.count !== 4) {
      throw invalidLine(desc, p, end);
    }
    if (m.sectors! <= 0n || !(EXTENT_TYPES as readonly string[]).includes(m.type!)) continue;
    const line: ExtentLine = { access: 'RW', sectors: m.sectors!, type: m.type as ExtentType, fileName: utf8(m.fileName!) };
    if (m.type === 'FLAT') line.flatOffset = m.flatOffset!;
    else if (m.type === 'VMFS') line.flatOffset = 0n;
    if (extents.length >= MAX_EXTENTS) {
      throw new VmimgError('UNSUPPORTED_IMAGE', `vmdk descriptor has more than ${MAX_EXTENTS} extents (vmimg's limit)`, { max: MAX_EXTENTS });
    }
    extents.push(line);
  }
  return extents;
}

interface ExtentFields {
  count: number;
  access?: string;
  sectors?: bigint;
  type?: string;
  fileName?: Uint8Array;
  flatOffset?: bigint;
}

/** `sscanf(p, "%10s %ld %10s \"%511[^\n\r\"]\" %ld", ...)`; count = conversions made. */
function scanExtentFields(buf: Uint8Array, p: number, end: number): ExtentFields {
  const r: ExtentFields = { count: 0 };
  const access = scanWord(buf, p, end, 10);
  if (!access) return r;
  r.access = latin1(access.value);
  r.count = 1;
  const sectors = scanDec64(buf, access.next, end);
  if (!sectors) return r;
  r.sectors = sectors.value;
  r.count = 2;
  const type = scanWord(buf, sectors.next, end, 10);
  if (!type) return r;
  r.type = latin1(type.value);
  r.count = 3;
  let i = skipSpace(buf, type.next, end);
  if (i >= end || buf[i] !== 0x22) return r;
  i++;
  const start = i;
  while (i < end && i - start < MAX_EXTENT_NAME && buf[i] !== 0x0a && buf[i] !== 0x0d && buf[i] !== 0x22) i++;
  if (i === start) return r;
  r.fileName = buf.subarray(start, i);
  r.count = 4;
  if (i >= end || buf[i] !== 0x22) return r;
  const offset = scanDec64(buf, i + 1, end);
  if (!offset) return r;
  r.flatOffset = offset.value;
  r.count = 5;
  return r;
}

function invalidLine(buf: Uint8Array, p: number, end: number): VmimgError {
  let np = nextLine(buf, p, end);
  if (np > p && buf[np - 1] === 0x0a) np--;
  const line = utf8(buf.subarray(p, np));
  return new VmimgError('CORRUPT_IMAGE', `Invalid extent line: ${line}`, { line });
}

function padTo(bytes: Uint8Array, length: number): Uint8Array {
  const out = new Uint8Array(Math.max(length, bytes.length));
  out.set(bytes);
  return out;
}
