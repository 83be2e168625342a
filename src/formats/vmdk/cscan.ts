/**
 * The C string handling QEMU's VMDK descriptor code relies on, reproduced over bytes so vmimg
 * reads a descriptor exactly as qemu-img 7.2 does: strings end at the first NUL, `strstr` finds
 * the first occurrence anywhere (comments included), and glibc's `sscanf` conversions skip
 * white space (newlines too, so one "line" may span several), saturate on overflow and truncate
 * to the destination width. Every scan is bounded by the end index it is given.
 */

/** C isspace in the "C" locale. */
export function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

/** Index of the first NUL at or after `start`, or `buf.length` (the end of a C string). */
export function cStringEnd(buf: Uint8Array, start = 0): number {
  const i = buf.indexOf(0, start);
  return i < 0 ? buf.length : i;
}

/** First index ≥ start of the ASCII `needle` before `end`, or -1 (C strstr on [start, end)). */
export function strstr(buf: Uint8Array, needle: string, start: number, end: number): number {
  const n = needle.length;
  outer: for (let i = start; i + n <= end; i++) {
    for (let j = 0; j < n; j++) if (buf[i + j] !== needle.charCodeAt(j)) continue outer;
    return i;
  }
  return -1;
}

const UINT64_MAX = (1n << 64n) - 1n;
const INT64_MAX = (1n << 63n) - 1n;
const INT64_MIN = -(1n << 63n);

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

export interface Scanned<T> {
  value: T;
  /** Index just past the consumed input. */
  next: number;
}

/**
 * glibc `sscanf("%x", &uint32)`: white space, an optional sign, an optional 0x/0X prefix, hex
 * digits ("0x" alone reads as 0); the value saturates at 2^64-1, a minus sign negates modulo
 * 2^64, and the result is truncated to 32 bits. Undefined when nothing converts.
 */
export function scanHex32(buf: Uint8Array, pos: number, end: number): Scanned<number> | undefined {
  let i = pos;
  while (i < end && isSpace(buf[i]!)) i++;
  let negative = false;
  if (i < end && (buf[i] === 0x2b || buf[i] === 0x2d)) negative = buf[i++] === 0x2d;
  let digits = 0;
  let value = 0n;
  if (i < end && buf[i] === 0x30 && i + 1 < end && (buf[i + 1] === 0x78 || buf[i + 1] === 0x58)) {
    i += 2;
    digits = 1; // the leading 0 counts
  }
  while (i < end && hexDigit(buf[i]!) >= 0) {
    value = value * 16n + BigInt(hexDigit(buf[i]!));
    if (value > UINT64_MAX) value = UINT64_MAX + 1n; // keep it bounded; saturates below
    digits++;
    i++;
  }
  if (digits === 0) return undefined;
  let u64 = value > UINT64_MAX ? UINT64_MAX : value;
  if (negative && value <= UINT64_MAX) u64 = (-u64) & UINT64_MAX;
  return { value: Number(u64 & 0xffffffffn), next: i };
}

/** glibc `%ld` (int64): white space, optional sign, decimal digits, saturating at the int64 range. */
export function scanDec64(buf: Uint8Array, pos: number, end: number): Scanned<bigint> | undefined {
  let i = pos;
  while (i < end && isSpace(buf[i]!)) i++;
  let negative = false;
  if (i < end && (buf[i] === 0x2b || buf[i] === 0x2d)) negative = buf[i++] === 0x2d;
  const start = i;
  let value = 0n;
  while (i < end && buf[i]! >= 0x30 && buf[i]! <= 0x39) {
    if (value <= INT64_MAX + 1n) value = value * 10n + BigInt(buf[i]! - 0x30);
    i++;
  }
  if (i === start) return undefined;
  const signed = negative ? -value : value;
  return { value: signed > INT64_MAX ? INT64_MAX : signed < INT64_MIN ? INT64_MIN : signed, next: i };
}

/** glibc `%Ns`: white space, then 1..N non-space bytes. */
export function scanWord(buf: Uint8Array, pos: number, end: number, width: number): Scanned<Uint8Array> | undefined {
  let i = pos;
  while (i < end && isSpace(buf[i]!)) i++;
  const start = i;
  while (i < end && i - start < width && !isSpace(buf[i]!)) i++;
  if (i === start) return undefined;
  return { value: buf.subarray(start, i), next: i };
}

/** Skips white space (a blank in a scanf format). */
export function skipSpace(buf: Uint8Array, pos: number, end: number): number {
  let i = pos;
  while (i < end && isSpace(buf[i]!)) i++;
  return i;
}

/** Index just after the next '\n' at or after `pos`, or `end` (QEMU's next_line). */
export function nextLine(buf: Uint8Array, pos: number, end: number): number {
  const i = buf.indexOf(0x0a, pos);
  return i < 0 || i >= end ? end : i + 1;
}

/** Bytes as a string, one char per byte (lossless; for comparisons with ASCII literals). */
export function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

/** Bytes decoded as UTF-8 (for names shown to people or used as paths). */
export function utf8(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
}
