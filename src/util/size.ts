/**
 * qemu-style SIZE parsing (the grammar of qemu_strtosz in QEMU 7.2, util/cutils.c), checked
 * against qemu-img 7.2's behaviour:
 *
 *   SIZE    := WS* '+'? (HEX | DEC FRACTION?) SUFFIX?
 *   HEX     := '0' [xX] hexdigit+            (a suffix is accepted, a fraction is not)
 *   DEC     := digit+
 *   FRACTION:= '.' digit*                    (non-zero fractions need a suffix other than B)
 *   SUFFIX  := one of B K M G T P E, either case, powers of 1024
 *
 * "1.5G" → 1610612736, "1.0001k" → 1024 (fraction × unit truncated), "1." → 1;
 * "1.5", "-1", "1kB", "1e3", "1G " are rejected. Values must fit in 64 bits; callers give
 * their own upper bound (qemu-img create: INT64_MAX).
 */
import { VmimgError } from './errors.js';

const UINT64_MAX = (1n << 64n) - 1n;
export const INT64_MAX = (1n << 63n) - 1n;

const SUFFIX_SHIFT: Record<string, bigint> = { B: 0n, K: 10n, M: 20n, G: 30n, T: 40n, P: 50n, E: 60n };

const SIZE_RE = /^[ \t\n\v\f\r]*\+?(?:0[xX]([0-9a-fA-F]+)|([0-9]+)(?:\.([0-9]*))?)([bBkKmMgGtTpPeE])?$/;

export interface ParseSizeOptions {
  /** Inclusive upper bound; default INT64_MAX. */
  max?: bigint;
  /** What the value is, for messages: "image size", "cluster_size". */
  what?: string;
}

export const SIZE_SUFFIX_HINT = 'You may use k, M, G, T, P or E suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.';

/** Parses a qemu-style size. Throws INVALID_SIZE for syntax errors, SIZE_OUT_OF_RANGE past `max`. */
export function parseSize(text: string, options: ParseSizeOptions = {}): bigint {
  const what = options.what ?? 'size';
  const max = options.max ?? INT64_MAX;
  const m = SIZE_RE.exec(text);
  if (!m) {
    throw new VmimgError('INVALID_SIZE', `Invalid ${what} '${text}'. ${SIZE_SUFFIX_HINT}`, { value: text, what });
  }
  const [, hex, dec, frac, suffix] = m;
  const shift = suffix ? SUFFIX_SHIFT[suffix.toUpperCase()]! : 0n;
  const mul = 1n << shift;
  const whole = hex !== undefined ? BigInt('0x' + hex) : BigInt(dec!);
  let fracPart = 0n;
  if (frac !== undefined && frac.length > 0) {
    // QEMU computes (uint64_t)(strtod(".digits") * mul) in double precision; so do we.
    const f = Number('0.' + frac);
    if (f !== 0 && mul === 1n) {
      throw new VmimgError('INVALID_SIZE', `Invalid ${what} '${text}': a fraction needs a unit suffix (k, M, G, T, P or E)`, { value: text, what });
    }
    fracPart = BigInt(Math.trunc(f * Number(mul)));
  }
  if (whole > (UINT64_MAX - fracPart) / mul) {
    throw new VmimgError('SIZE_OUT_OF_RANGE', `Invalid ${what} '${text}': must be between 0 and ${max}`, { value: text, what, max: max.toString() });
  }
  const value = whole * mul + fracPart;
  if (value > max) {
    throw new VmimgError('SIZE_OUT_OF_RANGE', `Invalid ${what} '${text}': must be between 0 and ${max}`, { value: text, what, max: max.toString() });
  }
  return value;
}

/** bigint → number, refusing values past 2^53 (offsets we can address with a JS number). */
export function toSafeNumber(value: bigint, what: string): number {
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new VmimgError('SIZE_OUT_OF_RANGE', `${what} ${value} is outside 0..${Number.MAX_SAFE_INTEGER}`, { value: value.toString(), what });
  }
  return Number(value);
}
