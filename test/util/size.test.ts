import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { INT64_MAX, parseSize } from '../../src/util/size.js';
import { VmimgError } from '../../src/util/errors.js';

// Expected values observed from qemu-img 7.2 (`qemu-img create -f raw x SIZE`).
const ACCEPTED: Array<[string, bigint]> = [
  ['1000', 1000n],
  ['1.5G', 1610612736n],
  ['1k', 1024n],
  ['1K', 1024n],
  ['1m', 1048576n],
  ['1g', 1073741824n],
  ['1t', 1099511627776n],
  ['1p', 1125899906842624n],
  ['1E', 1152921504606846976n],
  ['0x1000', 4096n],
  ['0X10', 16n],
  ['0x1000k', 4194304n],
  ['1.5k', 1536n],
  ['1b', 1n],
  ['1B', 1n],
  [' 1G', 1073741824n],
  ['\t2k', 2048n],
  [' +1k', 1024n],
  ['+5', 5n],
  ['07', 7n],
  ['0', 0n],
  ['1.0001k', 1024n],
  ['1.', 1n],
  ['1.k', 1024n],
  ['1.5e', 1729382256910270464n],
  ['7.99999E', 9223360507639729792n],
  ['0.5G', 536870912n],
  ['1.000000000000000000001k', 1024n],
  ['9223372036854775807', INT64_MAX],
];

const REJECTED_SYNTAX = ['1.5', '-1', '1kB', '1KiB', '1G ', '', '1.9999999999b', '1e3', '1_000', '.5k', '0x', '1k5', '0x1.5k', '1.5.5k', '00x10', 'abc', '1 G'];
const REJECTED_RANGE = ['8E', '9E', '16E', '15.99E', '18446744073709551615', '18446744073709551616', '9223372036854775808'];

test('parseSize accepts what qemu-img 7.2 accepts, with the same values', () => {
  for (const [text, value] of ACCEPTED) assert.equal(parseSize(text), value, text);
});

test('parseSize rejects junk with INVALID_SIZE naming the value', () => {
  for (const text of REJECTED_SYNTAX) {
    assert.throws(() => parseSize(text), (e: unknown) => e instanceof VmimgError && e.code === 'INVALID_SIZE' && e.message.includes(`'${text}'`), text);
  }
});

test('parseSize rejects overflow and values past the bound with SIZE_OUT_OF_RANGE', () => {
  for (const text of REJECTED_RANGE) {
    assert.throws(() => parseSize(text), (e: unknown) => e instanceof VmimgError && e.code === 'SIZE_OUT_OF_RANGE', text);
  }
  assert.throws(() => parseSize('2k', { max: 1024n }), (e: unknown) => e instanceof VmimgError && e.code === 'SIZE_OUT_OF_RANGE');
});

test('parseSize: every byte count and suffixed integer round-trips (property)', () => {
  const suffixes: Array<[string, bigint]> = [['', 1n], ['k', 1n << 10n], ['M', 1n << 20n], ['G', 1n << 30n], ['T', 1n << 40n], ['P', 1n << 50n]];
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: 1n << 40n }), fc.constantFrom(...suffixes), (n, [s, mul]) => {
      const expected = n * mul;
      if (expected > INT64_MAX) return;
      assert.equal(parseSize(`${n}${s}`), expected);
    }),
    { seed: 42, numRuns: 500 },
  );
});

test('parseSize never throws anything but a VmimgError on arbitrary input (property)', () => {
  fc.assert(
    fc.property(fc.string(), (s) => {
      try {
        const v = parseSize(s);
        assert.ok(v >= 0n && v <= INT64_MAX);
      } catch (e) {
        assert.ok(e instanceof VmimgError, String(e));
      }
    }),
    { seed: 7, numRuns: 2000 },
  );
});
