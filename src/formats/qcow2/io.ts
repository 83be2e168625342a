/**
 * Metadata I/O for the qcow2 reader: bounded, chunked reads of table bytes, and a small LRU for
 * table slices. Reads of a range that lies (partly) past the end of the file, or at an offset no
 * file can have (above 2^53), return zeros there, as QEMU's file driver does past EOF; so a
 * hostile offset can never make us allocate more than the caller's bounded length.
 */
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';

/** Largest single metadata read we issue. */
export const META_CHUNK = 4 * 1024 * 1024;

/**
 * Reads `length` bytes at `offset` (a number, possibly unsafe, or a bigint header field).
 * `length` is bounded by the caller (a table size validated against QEMU's limits).
 */
export async function readAt(storage: Storage, offset: number | bigint, length: number): Promise<Uint8Array> {
  if (!Number.isSafeInteger(length) || length < 0 || length > 256 * 1024 * 1024) {
    throw new VmimgError('INTERNAL', `qcow2 metadata read of ${length} bytes`, { length });
  }
  const out = new Uint8Array(length);
  const start = typeof offset === 'bigint' ? (offset <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(offset) : Infinity) : offset;
  if (!Number.isSafeInteger(start) || start < 0 || start + length > Number.MAX_SAFE_INTEGER) return out;
  const fileSize = await storage.size();
  const available = Math.max(0, Math.min(length, fileSize - start));
  for (let done = 0; done < available; done += META_CHUNK) {
    const n = Math.min(META_CHUNK, available - done);
    await storage.readInto(start + done, out.subarray(done, done + n));
  }
  return out;
}

export function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A least-recently-used map bounded by total bytes of its values. */
export class ByteLru<K> {
  private readonly entries = new Map<K, Uint8Array>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get(key: K): Uint8Array | undefined {
    const v = this.entries.get(key);
    if (v) {
      this.entries.delete(key);
      this.entries.set(key, v);
    }
    return v;
  }

  set(key: K, value: Uint8Array): void {
    const old = this.entries.get(key);
    if (old) {
      this.bytes -= old.length;
      this.entries.delete(key);
    }
    this.entries.set(key, value);
    this.bytes += value.length;
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.maxBytes || this.entries.size <= 1) break;
      this.entries.delete(k);
      this.bytes -= v.length;
    }
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }
}
