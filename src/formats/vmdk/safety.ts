/**
 * OpenStack format_inspector's vmdk safety rules (oslo.utils oslo_utils/imageutils/
 * format_inspector.py, VMDKInspector; reference §3.2), applied to the image's own bytes. They
 * are stricter than QEMU on purpose: an image from a stranger may only be a single-file
 * monolithicSparse or streamOptimized disk whose descriptor contains nothing unexpected.
 *
 * - A file without the "KDMV" magic is a text descriptor only if its first 512 bytes are
 *   printable ASCII or white space ("Signature KDMV not found" otherwise); its descriptor is the
 *   first 1 MiB − 1 bytes. A sparse file's version must be 1–3 and its descriptor must start at
 *   byte 0x200 ("Wrong descriptor location"); the descriptor is min(descriptorSize × 512,
 *   1 MiB − 1) bytes there, cut at the first NUL.
 * - The descriptor must decode as ASCII and be non-empty ("No descriptor found"); it is read
 *   case-insensitively; createType must be monolithicSparse or streamOptimized
 *   ("Unsupported subformat"); every stripped line must be blank, a '#' comment, a `ddb…` line,
 *   a `key=value` header (no space before the '='), or an extent line whose first word is
 *   rw/rdonly/noaccess ("Invalid VMDK descriptor data"); no extent line may contain '/'
 *   ("Invalid extent filenames found"); there must be an extent ("No extents found").
 * - With gdOffset = GD_AT_END, the last 1536 bytes of the file (the real end, not QEMU's
 *   sector-rounded one) must hold a footer marker (size 0, type 3, zero padding), a header copy
 *   with the same magic, version and descriptor location whose gdOffset is not GD_AT_END, and an
 *   all-zero end-of-stream marker.
 *
 * The descriptor and footer rules are separate checks: both may report.
 */
import type { Storage } from '../../storage/types.js';
import { GD_AT_END, MARKER_EOS, MARKER_FOOTER, MAX_DESCRIPTOR_READ, SPARSE_DESC_BYTE_OFFSET, VMDK4_HEADER_BYTES, VMDK4_MAGIC } from './constants.js';
import { decodeSparseHeader, FOOTER_BYTES, magicOf } from './header.js';

/** Python's str.strip() white space over ASCII. */
function isPySpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
}

function pyStrip(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isPySpace(s.charCodeAt(a))) a++;
  while (b > a && isPySpace(s.charCodeAt(b - 1))) b--;
  return s.slice(a, b);
}

/** Python's str.isprintable() or str.isspace() for one ASCII character. */
function isTextByte(c: number): boolean {
  return (c >= 0x20 && c < 0x7f) || isPySpace(c);
}

/** The format_inspector issues of a vmdk whose file is `storage` (`length` bytes). */
export async function vmdkSafetyIssues(storage: Storage, length: number): Promise<string[]> {
  const head = await storage.read(0, Math.min(length, 512));
  if (magicOf(head) !== VMDK4_MAGIC) {
    if (!head.every(isTextByte)) return ['Signature KDMV not found: the file is neither a monolithicSparse/streamOptimized disk nor a text descriptor'];
    return descriptorIssues(await storage.read(0, Math.min(length, MAX_DESCRIPTOR_READ)));
  }
  const issues: string[] = [];
  const header = decodeSparseHeader(await storage.read(0, VMDK4_HEADER_BYTES));
  if (header.version < 1 || header.version > 3) return [`Unsupported format version ${header.version}`];
  if (header.descriptorOffset * 512n !== BigInt(SPARSE_DESC_BYTE_OFFSET)) {
    issues.push(`Wrong descriptor location (descriptorOffset ${header.descriptorOffset}, expected sector 1)`);
  } else {
    const size = header.descriptorSize * 512n < BigInt(MAX_DESCRIPTOR_READ) ? Number(header.descriptorSize * 512n) : MAX_DESCRIPTOR_READ;
    const area = await storage.read(SPARSE_DESC_BYTE_OFFSET, size);
    const nul = area.indexOf(0);
    issues.push(...descriptorIssues(nul < 0 ? area : area.subarray(0, nul)));
  }
  if (header.gdOffset === GD_AT_END) issues.push(...(await footerIssues(storage, length, head)));
  return issues;
}

/** check_descriptor: the descriptor text's own rules (at most one issue, the first found). */
export function descriptorIssues(bytes: Uint8Array): string[] {
  if (bytes.some((c) => c > 0x7f)) return ['No descriptor found (the descriptor is not ASCII text)'];
  const text = Buffer.from(bytes).toString('latin1').toLowerCase();
  if (text.length === 0) return ['No descriptor found'];
  const key = 'createtype="';
  const at = text.indexOf(key);
  let type = 'formatnotfound';
  if (at >= 0) {
    const start = at + key.length;
    const end = text.indexOf('"', start);
    // Python: find() gives -1 without a closing quote, so the slice runs to the last character but one.
    if (end < 0) type = text.slice(start, text.length - 1);
    else if (end - start < 64) type = text.slice(start, end);
  }
  if (type !== 'monolithicsparse' && type !== 'streamoptimized') return [`Unsupported subformat ('${type}')`];
  let extents = 0;
  for (const raw of text.split('\n')) {
    const line = pyStrip(raw);
    if (line === '' || line.startsWith('#') || line.startsWith('ddb')) continue;
    if (line.includes('=') && !line.split('=')[0]!.includes(' ')) continue;
    if (['rw', 'rdonly', 'noaccess'].includes(line.split(' ')[0]!)) {
      if (line.includes('/')) return [`Invalid extent filenames found (${JSON.stringify(line)})`];
      extents++;
      continue;
    }
    return [`Invalid VMDK descriptor data (line ${JSON.stringify(line.slice(0, 80))})`];
  }
  return extents === 0 ? ['No extents found'] : [];
}

/** check_footer, for a header saying GD_AT_END. */
async function footerIssues(storage: Storage, length: number, head: Uint8Array): Promise<string[]> {
  if (length < FOOTER_BYTES) return ['Footer is missing (the file is shorter than a footer)'];
  const f = await storage.read(length - FOOTER_BYTES, FOOTER_BYTES);
  const h = decodeSparseHeader(head.length >= VMDK4_HEADER_BYTES ? head : await storage.read(0, VMDK4_HEADER_BYTES));
  const copy = f.subarray(512, 512 + VMDK4_HEADER_BYTES);
  const fh = decodeSparseHeader(copy);
  if (magicOf(copy) !== VMDK4_MAGIC) return ['Header and footer signature do not match'];
  if (fh.version !== h.version) return ['Header and footer versions do not match'];
  if (fh.descriptorOffset !== h.descriptorOffset || fh.descriptorSize !== h.descriptorSize) return ['Footer specifies a different descriptor than header'];
  if (fh.gdOffset === GD_AT_END) return ['Footer indicates another footer'];
  const v = new DataView(f.buffer, f.byteOffset, f.byteLength);
  const zeroPad = (at: number): boolean => f.subarray(at + 16, at + 512).every((b) => b === 0);
  if (v.getUint32(8, true) !== 0 || v.getUint32(12, true) !== MARKER_FOOTER || !zeroPad(0)) return ['Footer marker is invalid'];
  if (v.getBigUint64(1024, true) !== 0n || v.getUint32(1032, true) !== 0 || v.getUint32(1036, true) !== MARKER_EOS || !zeroPad(1024)) {
    return ['End-of-stream marker is invalid'];
  }
  return [];
}
