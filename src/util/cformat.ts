/**
 * C printf number formatting, exact: glibc prints the exact binary value of a double rounded
 * half-to-even, while JS toFixed rounds ties up. These reproduce glibc for "%.Nf".
 */

/** The exact value of a finite double as num / 2^shift (num may be negative). */
function exactDouble(x: number): { num: bigint; shift: bigint } {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const hi = view.getUint32(0);
  const lo = view.getUint32(4);
  const sign = hi >>> 31 ? -1n : 1n;
  const exp = (hi >>> 20) & 0x7ff;
  let mant = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let e: number;
  if (exp === 0) e = -1074;
  else {
    mant |= 1n << 52n;
    e = exp - 1075;
  }
  return e >= 0 ? { num: sign * (mant << BigInt(e)), shift: 0n } : { num: sign * mant, shift: BigInt(-e) };
}

/** printf("%.<digits>f", x) as glibc prints it. */
export function cFixed(x: number, digits: number): string {
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : x < 0 ? '-inf' : 'nan';
  const { num, shift } = exactDouble(x);
  const neg = num < 0n;
  const n = (neg ? -num : num) * 10n ** BigInt(digits);
  const d = 1n << shift;
  let q = n / d;
  const r = n - q * d;
  if (2n * r > d || (2n * r === d && q % 2n === 1n)) q += 1n;
  let s = q.toString().padStart(digits + 1, '0');
  if (digits > 0) s = s.slice(0, -digits) + '.' + s.slice(-digits);
  return (neg && q !== 0n ? '-' : neg ? '-' : '') + s;
}
