/**
 * FileStorage.writev (src/storage/file.ts): the parts land back to back as one write of their
 * concatenation would put them, also past IOV_MAX parts (several pwritev calls) and with empty
 * parts; a read-only storage refuses it, and an out-of-range request writes nothing.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { FileStorage } from '../../src/storage/file.js';
import { tempDir } from '../helpers/oracle.js';

test('writev writes 3000 parts (some empty) where their concatenation belongs', async (t) => {
  const path = join(tempDir(t, 'vmimg-writev-'), 'f');
  writeFileSync(path, Buffer.alloc(100, 0xee));
  const parts: Uint8Array[] = [];
  for (let i = 0; i < 3000; i++) parts.push(i % 7 === 3 ? new Uint8Array(0) : new Uint8Array((i % 13) + 1).fill(i & 0xff));
  const expected = Buffer.concat(parts);
  const s = await FileStorage.open(path, { writable: true });
  try {
    await s.writev(50, parts);
  } finally {
    await s.close();
  }
  const got = readFileSync(path);
  assert.equal(got.length, 50 + expected.length);
  assert.deepEqual(got.subarray(0, 50), Buffer.alloc(50, 0xee));
  assert.ok(got.subarray(50).equals(expected));
});

test('writev refuses a read-only storage and a negative offset without writing', async (t) => {
  const path = join(tempDir(t, 'vmimg-writev-'), 'f');
  writeFileSync(path, Buffer.alloc(10));
  const ro = await FileStorage.open(path);
  await assert.rejects(ro.writev(0, [new Uint8Array(4).fill(1)]), { code: 'WRITE_FAILED' });
  await ro.close();
  const rw = await FileStorage.open(path, { writable: true });
  await assert.rejects(rw.writev(-1, [new Uint8Array(4).fill(1)]), { code: 'OUT_OF_BOUNDS' });
  await rw.close();
  assert.equal(statSync(path).size, 10);
  assert.ok(readFileSync(path).equals(Buffer.alloc(10)));
});
