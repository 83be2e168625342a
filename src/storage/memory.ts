/** In-memory Storage for tests and pure planning; grows on write like a sparse file. */
import { VmimgError } from '../util/errors.js';
import { MAX_IO_CHUNK, type Storage } from './types.js';

export class MemoryStorage implements Storage {
  readonly name: string;
  readonly writable: boolean;
  private buf: Uint8Array;
  private length: number;

  constructor(initial: Uint8Array = new Uint8Array(0), options: { name?: string; writable?: boolean } = {}) {
    this.name = options.name ?? 'memory';
    this.writable = options.writable ?? true;
    this.buf = initial.slice();
    this.length = initial.length;
  }

  /** A copy of the current contents. */
  contents(): Uint8Array {
    return this.buf.slice(0, this.length);
  }

  async size(): Promise<number> {
    return this.length;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    await this.readInto(offset, out);
    return out;
  }

  async readInto(offset: number, target: Uint8Array): Promise<void> {
    checkRange(this.name, offset, target.length);
    target.fill(0);
    if (offset < this.length) target.set(this.buf.subarray(offset, Math.min(this.length, offset + target.length)));
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (!this.writable) throw new VmimgError('WRITE_FAILED', `Storage '${this.name}' is read-only`, { name: this.name });
    checkRange(this.name, offset, data.length);
    this.ensureCapacity(offset + data.length);
    this.buf.set(data, offset);
    this.length = Math.max(this.length, offset + data.length);
  }

  async truncate(length: number): Promise<void> {
    checkRange(this.name, 0, length, Number.MAX_SAFE_INTEGER);
    if (length > this.length) this.ensureCapacity(length);
    else this.buf.fill(0, length, this.length);
    this.length = length;
  }

  async allocatedSize(): Promise<number> {
    return this.length;
  }

  async flush(): Promise<void> {}
  async close(): Promise<void> {}

  private ensureCapacity(n: number): void {
    if (n <= this.buf.length) return;
    let next: Uint8Array;
    try {
      next = new Uint8Array(Math.max(n, this.buf.length * 2));
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
      throw new VmimgError('SIZE_OUT_OF_RANGE', `Storage '${this.name}' cannot grow to ${n} bytes in memory`, { name: this.name, length: n }, { cause: e });
    }
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }
}

export function checkRange(name: string, offset: number, length: number, maxLength = MAX_IO_CHUNK): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0 || length > maxLength || offset + length > Number.MAX_SAFE_INTEGER) {
    throw new VmimgError('OUT_OF_BOUNDS', `I/O request offset=${offset} length=${length} on '${name}' is out of range`, { name, offset, length });
  }
}
