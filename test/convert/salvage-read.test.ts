/**
 * Salvage.read on its own, with an OS error (EIO, as FileStorage reports a failing device) on
 * some sectors: exactly those sectors become zeros, each warned at its offset within its source
 * with strerror's text, no cause line (the errno says it all), and -q (no warn) prints nothing.
 * salvage-device.test.ts does this over a real device where device-mapper exists.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Salvage } from '../../src/ops/convert/salvage.js';
import { errnoError } from '../../src/storage/native.js';

const EIO = 5;

function fakeSource(bytes: Uint8Array, bad: (sector: number) => boolean): (offset: number, out: Uint8Array) => Promise<void> {
  return async (offset, out) => {
    for (let s = offset >> 9; s < (offset + out.length) >> 9; s++) if (bad(s)) throw errnoError(EIO, '/dev/fake', 'read');
    out.set(bytes.subarray(offset, offset + out.length));
  };
}

test('Salvage.read: failing sectors become zeros, with qemu-img warnings in guest order', async () => {
  const bytes = new Uint8Array(8192).map((_, i) => (i % 251) + 1);
  const lines: string[] = [];
  // Two sources of 4 KiB each: the second starts at global 4096.
  const salvage = new Salvage({
    warn: (m) => void lines.push(m),
    step: 512,
    backing: false,
    locate: (o) => (o < 4096 ? { source: 0, offset: o } : { source: 1, offset: o - 4096 }),
    filenames: ['a', 'b'],
  });
  const out = new Uint8Array(8192);
  const failed = await salvage.read(fakeSource(bytes, (s) => s === 3 || s === 4 || s === 9), 0, out);
  salvage.report(failed, 8192);
  const expected = bytes.slice();
  for (const s of [3, 4, 9]) expected.fill(0, s * 512, s * 512 + 512);
  assert.deepEqual(out, expected);
  assert.deepEqual(lines, [
    'error while reading offset 1536: Input/output error',
    'error while reading offset 2048: Input/output error',
    'error while reading offset 512: Input/output error',
  ]);

  const quiet = new Salvage({ step: 512, backing: false, locate: (o) => ({ source: 0, offset: o }), filenames: ['a'] });
  const again = new Uint8Array(8192);
  quiet.report(await quiet.read(fakeSource(bytes, (s) => s === 0), 0, again), 8192);
  assert.ok(again.subarray(0, 512).every((b) => b === 0));
  assert.deepEqual(again.subarray(512), bytes.subarray(512));
});
