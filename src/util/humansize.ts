/**
 * qemu-img's human sizes (QEMU util/cutils.c size_to_str): the unit switches at 1000 of the
 * previous one, and the value prints as C's "%0.3g" followed by " B", " KiB", ... " EiB".
 * Digits are computed exactly (round-half-even on the exact binary value, as glibc does).
 */
const SUFFIXES = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei'];

export function sizeToStr(value: number | bigint): string {
  const v = BigInt(value);
  // frexp(v / (1000/1024)).exponent - 1 == floor(log2(v * 1024 / 1000)) for v > 0.
  let unit = 0;
  if (v > 0n) {
    const scaled = (v * 1024n) / 1000n;
    const log2 = scaled > 0n ? scaled.toString(2).length - 1 : 0;
    unit = Math.min(Math.floor(log2 / 10), SUFFIXES.length - 1);
  }
  return `${formatG3(v, BigInt(unit * 10))} ${SUFFIXES[unit]}B`;
}

/** C printf("%0.3g", num / 2^shift) for a non-negative integer num, computed exactly. */
export function formatG3(num: bigint, shift: bigint): string {
  if (num === 0n) return '0';
  const den = 1n << shift;
  // Find e with 10^e <= num/den < 10^(e+1).
  let e = num.toString().length - 1 - Math.floor(Number(shift) * Math.log10(2));
  while (cmpPow(num, den, e) < 0) e--;
  while (cmpPow(num, den, e + 1) >= 0) e++;
  // n = round_half_even(num/den * 10^(2-e)), a 3-digit integer (or 1000 after rounding up).
  let n = roundHalfEven(num, den, 2 - e);
  if (n === 1000n) {
    n = 100n;
    e++;
  }
  const digits = n.toString();
  if (e < -4 || e >= 3) {
    const mant = (digits[0]! + '.' + digits.slice(1)).replace(/\.?0+$/, '');
    return `${mant}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  }
  let s: string;
  if (e >= 2) s = digits;
  else if (e >= 0) s = digits.slice(0, e + 1) + '.' + digits.slice(e + 1);
  else s = '0.' + '0'.repeat(-e - 1) + digits;
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

/** Compares num/den with 10^e. */
function cmpPow(num: bigint, den: bigint, e: number): number {
  const [l, r] = e >= 0 ? [num, den * 10n ** BigInt(e)] : [num * 10n ** BigInt(-e), den];
  return l < r ? -1 : l > r ? 1 : 0;
}

function roundHalfEven(num: bigint, den: bigint, scale: number): bigint {
  const [n, d] = scale >= 0 ? [num * 10n ** BigInt(scale), den] : [num, den * 10n ** BigInt(-scale)];
  const q = n / d;
  const r = n - q * d;
  if (2n * r > d || (2n * r === d && q % 2n === 1n)) return q + 1n;
  return q;
}
