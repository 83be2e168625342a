/**
 * Encoding rfs blocks on every core: a pool of encode-worker.ts workers, each block given to the
 * worker with the fewest blocks pending (blocks differ in cost: compressible ones are cheaper).
 * Buffers travel by transfer, never by copy: the plaintext's ArrayBuffer (and an optional output
 * ArrayBuffer) go to the worker and come back with the result — the plaintext's as `plain`, the
 * output as the buffer of `data` — so the caller can reuse them. close() stops the workers.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { VmimgError } from '../util/errors.js';
import type { EncodedBlock } from './codec.js';
import type { EncodeReply, EncodeRequest } from './encode-worker.js';

/** An encoded block plus the plaintext's ArrayBuffer, handed back for reuse. */
export interface PoolResult extends EncodedBlock {
  plain: ArrayBuffer;
}

export class EncodePool {
  readonly #workers: Worker[] = [];
  readonly #pending: number[] = [];
  readonly #waiting = new Map<number, { worker: number; resolve: (b: PoolResult) => void; reject: (e: unknown) => void }>();
  #seq = 0;

  constructor(size = Math.max(1, Math.min(8, availableParallelism()))) {
    for (let i = 0; i < size; i++) {
      const w = new Worker(new URL('./encode-worker.js', import.meta.url));
      w.on('message', (m: EncodeReply) => {
        const p = this.#waiting.get(m.seq);
        if (!p) return;
        this.#waiting.delete(m.seq);
        this.#pending[p.worker]!--;
        if ('error' in m) p.reject(new VmimgError('INTERNAL', `block encoding failed: ${m.error}`, {}));
        else p.resolve({ id: Buffer.from(m.id.buffer, m.id.byteOffset, m.id.byteLength), key: Buffer.from(m.key.buffer, m.key.byteOffset, m.key.byteLength), data: Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength), plain: m.plain });
      });
      w.on('error', (e) => {
        for (const p of this.#waiting.values()) p.reject(e);
        this.#waiting.clear();
      });
      this.#workers.push(w);
      this.#pending.push(0);
    }
  }

  /**
   * Encodes `plain`, a view over an ArrayBuffer the pool takes over until the result comes back
   * (transferred: the caller's views of it are detached). `out`, when given, is taken over the
   * same way and holds the stored bytes if at least maxStoredLength(plain.length) long.
   */
  encode(plain: Uint8Array, out?: ArrayBuffer): Promise<PoolResult> {
    const seq = this.#seq++;
    let worker = 0;
    for (let i = 1; i < this.#pending.length; i++) if (this.#pending[i]! < this.#pending[worker]!) worker = i;
    const w = this.#workers[worker]!;
    this.#pending[worker]!++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(seq, { worker, resolve, reject });
      const transfer = [plain.buffer as ArrayBuffer];
      if (out) transfer.push(out);
      w.postMessage({ seq, plain, ...(out ? { out } : {}) } satisfies EncodeRequest, transfer);
    });
  }

  /** Number of workers. */
  get size(): number {
    return this.#workers.length;
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}
