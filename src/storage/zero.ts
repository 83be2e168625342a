/**
 * Making a range of a storage read as zeros the way QEMU's file driver does for a write-zeroes
 * request that may unmap (file-posix handle_aiocb_write_zeroes_unmap): punch a hole when the
 * storage can, else write zero bytes, 1 MiB at a time.
 */
import type { Storage } from './types.js';

const ZERO_CHUNK = 1024 * 1024;

export async function zeroRange(storage: Storage, offset: number, length: number): Promise<void> {
  if (length === 0) return;
  if (storage.punchHole && (await storage.punchHole(offset, length))) return;
  const zeros = new Uint8Array(Math.min(ZERO_CHUNK, length));
  for (let at = 0; at < length; at += zeros.length) await storage.write(offset + at, zeros.subarray(0, Math.min(zeros.length, length - at)));
}
