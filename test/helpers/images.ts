/** Test images made by the oracle tools, and byte-range reads and patches of files. */
import assert from 'node:assert/strict';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, run } from './oracle.js';

/** Creates a raw image of `size` (qemu SIZE syntax or bytes) at `path` and applies qemu-io `writes`. */
export function rawWithWrites(path: string, size: string | number, writes: string[]): string {
  const c = qemuImg(['create', '-q', '-f', 'raw', path, String(size)]);
  assert.equal(c.status, 0, c.stderr);
  if (writes.length > 0) {
    const r = run('qemu-io', ['-f', 'raw', ...writes.flatMap((w) => ['-c', w]), path]);
    assert.equal(r.status, 0, r.stderr);
  }
  return path;
}

/** Data runs, written zeros (4M..5M), holes and data in the last KiB of 24 MiB. */
export const PATTERN_WRITES = ['write -P 0x11 0 1M', 'write -P 0x22 3M 64k', 'write -z 4M 1M', 'write -P 0x33 6M 4k', 'write -P 0x44 9M 2M', 'write -P 0x55 24575k 1k'];

/** `dir`/src.raw: the 24 MiB pattern image. */
export function patternSource(dir: string): string {
  return rawWithWrites(join(dir, 'src.raw'), '24M', PATTERN_WRITES);
}

/** `length` bytes of the file at `offset` (zeros past its end). */
export function readRange(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, offset);
    return buf;
  } finally {
    closeSync(fd);
  }
}

/** Writes `bytes` into the file at `offset` (a test's byte patch). */
export function writeRange(path: string, offset: number, bytes: Uint8Array): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}
