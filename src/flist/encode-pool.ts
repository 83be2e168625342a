/**
 * Encoding rfs blocks on every core: a pool of encode-worker.ts workers, each block given to the
 * worker with the fewest blocks pending (blocks differ in cost: compressible ones are cheaper). The
 * plaintext's buffer is transferred to the worker (the caller must not touch it afterwards) and
 * the encoded bytes come back transferred. close() stops the workers.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { VmimgError } from '../util/errors.js';
import type { EncodedBlock } from './codec.js';
import type { EncodeReply, EncodeRequest } from './encode-worker.js';

export class EncodePool {
  readonly #workers: Worker[] = [];
  readonly #pending: number[] = [];
  readonly #waiting = new Map<number, { worker: number; resolve: (b: EncodedBlock) => void; reject: (e: unknown) => void }>();
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
        else p.resolve({ id: Buffer.from(m.id.buffer, m.id.byteOffset, m.id.byteLength), key: Buffer.from(m.key.buffer, m.key.byteOffset, m.key.byteLength), data: Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength) });
      });
      w.on('error', (e) => {
        for (const p of this.#waiting.values()) p.reject(e);
        this.#waiting.clear();
      });
      this.#workers.push(w);
      this.#pending.push(0);
    }
  }

  /** Encodes `plain` (a view over its own, transferable ArrayBuffer). */
  encode(plain: Uint8Array): Promise<EncodedBlock> {
    const seq = this.#seq++;
    let worker = 0;
    for (let i = 1; i < this.#pending.length; i++) if (this.#pending[i]! < this.#pending[worker]!) worker = i;
    const w = this.#workers[worker]!;
    this.#pending[worker]!++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(seq, { worker, resolve, reject });
      const whole = plain.byteOffset === 0 && plain.byteLength === plain.buffer.byteLength;
      w.postMessage({ seq, plain } satisfies EncodeRequest, whole ? [plain.buffer as ArrayBuffer] : []);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}
