/** A small pool of compression workers (one per core, at most 4), used by convert -c. */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Codec, CompressReply } from './compress-worker.js';

export class CompressPool {
  private readonly workers: Worker[] = [];
  private readonly waiting = new Map<number, { resolve: (out: Uint8Array[]) => void; reject: (e: unknown) => void }>();
  private nextId = 0;
  private turn = 0;

  constructor(private readonly codec: Codec, size = Math.min(4, Math.max(1, availableParallelism()))) {
    for (let i = 0; i < size; i++) {
      const w = new Worker(new URL('./compress-worker.js', import.meta.url));
      w.on('message', (m: CompressReply) => {
        const p = this.waiting.get(m.id);
        this.waiting.delete(m.id);
        const out: Uint8Array[] = [];
        let at = 0;
        for (const n of m.lengths) {
          out.push(m.out.subarray(at, at + n));
          at += n;
        }
        p?.resolve(out);
      });
      w.on('error', (e) => {
        for (const p of this.waiting.values()) p.reject(e);
        this.waiting.clear();
      });
      this.workers.push(w);
    }
  }

  /**
   * Compresses the units [start, length] of `data` (units shorter than `unitSize` are zero-padded
   * first). `data` is copied to the worker once; it stays usable.
   */
  compress(data: Uint8Array, units: Array<[number, number]>, unitSize: number): Promise<Uint8Array[]> {
    const id = this.nextId++;
    const worker = this.workers[this.turn++ % this.workers.length]!;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      worker.postMessage({ id, codec: this.codec, data, units, unitSize });
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
