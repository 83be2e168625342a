/**
 * Writes into a new file on ext4 allocate their blocks first (FileStorage.createExclusive,
 * native writeAllocating): the file must come out byte-identical to, and allocated exactly like,
 * the same writes made with plain pwrite — holes stay holes, partial blocks are not rounded out
 * further than a write would — and a failing write still fails with the errno named. close()
 * waits for a native write still running (else its descriptor number could be reused by the next
 * open and the write land there), and a write after close fails as a VmimgError.
 */
import assert from 'node:assert/strict';
import { openSync, closeSync, readFileSync, readSync, statSync, writeSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { FileStorage } from '../../src/storage/file.js';
import { native } from '../../src/storage/native.js';
import { tempDir } from '../helpers/oracle.js';

/** Writes of several sizes and alignments, with holes between them, one of them past 2 GiB. */
function pattern(): Array<{ offset: number; data: Uint8Array }> {
  const out: Array<{ offset: number; data: Uint8Array }> = [];
  let seed = 7;
  const fill = (n: number): Uint8Array => {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
    return b;
  };
  out.push({ offset: 0, data: fill(2 * 1024 * 1024) });
  out.push({ offset: 3 * 1024 * 1024 + 513, data: fill(100 * 1024 + 7) });
  out.push({ offset: 8 * 1024 * 1024, data: fill(65536) });
  out.push({ offset: 9 * 1024 * 1024, data: fill(4096) }); // below the threshold: a plain write
  out.push({ offset: 2 ** 31 + 12345, data: fill(300 * 1024) });
  return out;
}

function readRange(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(length);
    assert.equal(readSync(fd, b, 0, length, offset), length);
    return b;
  } finally {
    closeSync(fd);
  }
}

/** SEEK_DATA/SEEK_HOLE extents of a file. */
function dataExtents(path: string): Array<[number, number]> {
  const fd = openSync(path, 'r');
  try {
    const size = statSync(path).size;
    const out: Array<[number, number]> = [];
    for (let at = 0; at < size; ) {
      const d = native!.seekData(fd, at);
      if (d < 0) break;
      const h = native!.seekHole(fd, d);
      out.push([d, h]);
      at = h;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

test('a new file on ext4 written with allocating writes equals one written with plain writes, content and allocation', async (t) => {
  const dir = tempDir(t, 'vmimg-allocw-');
  if ((await statfs(dir)).type !== 0xef53 || !native?.writeAllocating) return t.skip('needs ext4 under the temporary directory and the native helpers');
  const writes = pattern();
  const viaStorage = join(dir, 'storage');
  const s = await FileStorage.createExclusive(viaStorage);
  try {
    assert.equal(s.allocatesWrites, true);
    for (const w of writes) await s.write(w.offset, w.data);
  } finally {
    await s.close();
  }
  const plain = join(dir, 'plain');
  const fd = openSync(plain, 'wx');
  for (const w of writes) writeSync(fd, w.data, 0, w.data.length, w.offset);
  closeSync(fd);

  assert.equal(statSync(viaStorage).size, statSync(plain).size);
  // Equal extents (below) leave only the written ranges to compare: the rest is holes.
  for (const w of writes) assert.ok(readRange(viaStorage, w.offset, w.data.length).equals(w.data));
  assert.equal(statSync(viaStorage).blocks, statSync(plain).blocks);
  assert.deepEqual(dataExtents(viaStorage), dataExtents(plain));
  // Five separate allocated ranges, the holes between them kept.
  assert.equal(dataExtents(viaStorage).length, 5);
});

test('an allocating write that fails reports the errno and the file name; storages opened, not created, never allocate ahead', async (t) => {
  const dir = tempDir(t, 'vmimg-allocw-');
  if (!native?.writeAllocating) return t.skip('needs the native helpers');
  const path = join(dir, 'f');
  const fd = openSync(path, 'wx');
  closeSync(fd);
  const ro = openSync(path, 'r');
  try {
    const [writeErrno, allocateErrno] = await native.writeAllocating(ro, new Uint8Array(65536), 0);
    assert.equal(writeErrno, 9); // EBADF: the descriptor is read-only
    assert.equal(allocateErrno, 9);
  } finally {
    closeSync(ro);
  }
  assert.equal(statSync(path).size, 0);
  const opened = await FileStorage.open(path, { writable: true });
  try {
    assert.equal(opened.allocatesWrites, false);
  } finally {
    await opened.close();
  }
  assert.throws(() => native!.writeAllocating!(-1, new Uint8Array(1), 0), TypeError);
  assert.throws(() => native!.writeAllocating!(3, new Uint8Array(1), -5), TypeError);
});

test('close() waits for an allocating write in flight; a write after close fails as WRITE_FAILED', async (t) => {
  const dir = tempDir(t, 'vmimg-allocw-');
  if ((await statfs(dir)).type !== 0xef53 || !native?.writeAllocating) return t.skip('needs ext4 under the temporary directory and the native helpers');
  const data = new Uint8Array(32 << 20).fill(0x5a);
  for (let round = 0; round < 20; round++) {
    const a = join(dir, `a${round}`);
    const b = join(dir, `b${round}`);
    const s = await FileStorage.createExclusive(a);
    assert.equal(s.allocatesWrites, true);
    const pending = s.write(0, data);
    await s.close();
    // The descriptor number is free again: the next open may get it.
    const fd = openSync(b, 'w+');
    try {
      await pending; // finished before close() returned
    } finally {
      closeSync(fd);
    }
    assert.equal(statSync(b).size, 0, `round ${round}: the write landed in another file`);
    assert.equal(statSync(a).size, data.length);
    assert.ok(readFileSync(a).equals(Buffer.from(data.buffer)), `round ${round}`);
    await assert.rejects(s.write(0, data), { code: 'WRITE_FAILED' });
    await assert.rejects(s.write(0, new Uint8Array(16)), { code: 'WRITE_FAILED' });
  }
});
