/** Storage wrappers for crash tests. */
import type { Storage } from '../../src/storage/types.js';

/** A storage whose writes (and truncates) fail after the first `budget`: a crash at that point. */
export class CrashingStorage implements Storage {
  writes = 0;
  constructor(
    private readonly inner: Storage,
    private readonly budget: number,
  ) {}
  get name(): string {
    return this.inner.name;
  }
  get writable(): boolean {
    return this.inner.writable;
  }
  size(): Promise<number> {
    return this.inner.size();
  }
  read(offset: number, length: number): Promise<Uint8Array> {
    return this.inner.read(offset, length);
  }
  readInto(offset: number, target: Uint8Array): Promise<void> {
    return this.inner.readInto(offset, target);
  }
  async write(offset: number, data: Uint8Array): Promise<void> {
    if (++this.writes > this.budget) throw new Error('simulated crash');
    return this.inner.write(offset, data);
  }
  async truncate(length: number): Promise<void> {
    if (++this.writes > this.budget) throw new Error('simulated crash');
    return this.inner.truncate(length);
  }
  allocatedSize(): Promise<number> {
    return this.inner.allocatedSize();
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
