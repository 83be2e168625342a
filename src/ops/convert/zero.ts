/**
 * Zero detection for convert -S: which `block`-sized pieces of a buffer are all zeros. A piece
 * whose first, middle or last byte is set is data without further work (the common case for
 * data); otherwise it is compared against a shared zero buffer with Buffer.compare (native
 * memcmp) over one Buffer view of the whole chunk, so scanning allocates nothing per piece.
 */
const ZEROS = Buffer.alloc(1 << 20);

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.length);
}

function zeroRange(buf: Buffer, start: number, end: number): boolean {
  if (start >= end) return true;
  if (buf[start] !== 0 || buf[end - 1] !== 0 || buf[(start + end) >>> 1] !== 0) return false;
  for (let pos = start; pos < end; pos += ZEROS.length) {
    const n = Math.min(ZEROS.length, end - pos);
    if (buf.compare(ZEROS, 0, n, pos, pos + n) !== 0) return false;
  }
  return true;
}

/** True when every byte of b[start, end) is zero. */
export function isZero(b: Uint8Array, start = 0, end = b.length): boolean {
  return zeroRange(asBuffer(b), start, end);
}

/**
 * Splits b into alternating runs of zero / non-zero pieces. b holds the bytes at image offset
 * `origin`; pieces end at multiples of `block` in image offsets (so the first and last may be
 * short), as qemu-img's is_allocated_sectors aligns its zero areas to absolute offsets: a zero
 * stretch becomes a hole in a target's blocks whichever run of the source it came in.
 */
export function zeroRuns(b: Uint8Array, block: number, origin = 0): Array<{ start: number; length: number; zero: boolean }> {
  const runs: Array<{ start: number; length: number; zero: boolean }> = [];
  const buf = asBuffer(b);
  if (zeroRange(buf, 0, buf.length)) return buf.length ? [{ start: 0, length: buf.length, zero: true }] : [];
  for (let pos = 0; pos < buf.length; ) {
    const end = Math.min(buf.length, pos + block - ((origin + pos) % block));
    const zero = zeroRange(buf, pos, end);
    const last = runs[runs.length - 1];
    if (last && last.zero === zero) last.length += end - pos;
    else runs.push({ start: pos, length: end - pos, zero });
    pos = end;
  }
  return runs;
}
