/**
 * Zero detection for convert -S: which `block`-sized pieces of a buffer are all zeros. Compares
 * against a shared zero buffer with Buffer.compare (native memcmp), so scanning costs about as
 * much as reading.
 */
const ZEROS = Buffer.alloc(1 << 20);

function view(b: Uint8Array, start: number, end: number): Buffer {
  return Buffer.from(b.buffer, b.byteOffset + start, end - start);
}

/** True when every byte of b[start, end) is zero. */
export function isZero(b: Uint8Array, start = 0, end = b.length): boolean {
  for (let pos = start; pos < end; pos += ZEROS.length) {
    const n = Math.min(ZEROS.length, end - pos);
    if (view(b, pos, pos + n).compare(ZEROS, 0, n) !== 0) return false;
  }
  return true;
}

/** Splits b into alternating runs of zero / non-zero `block`-sized pieces (the last may be short). */
export function zeroRuns(b: Uint8Array, block: number): Array<{ start: number; length: number; zero: boolean }> {
  const runs: Array<{ start: number; length: number; zero: boolean }> = [];
  if (isZero(b)) return b.length ? [{ start: 0, length: b.length, zero: true }] : [];
  for (let pos = 0; pos < b.length; pos += block) {
    const end = Math.min(b.length, pos + block);
    const zero = isZero(b, pos, end);
    const last = runs[runs.length - 1];
    if (last && last.zero === zero) last.length += end - pos;
    else runs.push({ start: pos, length: end - pos, zero });
  }
  return runs;
}
