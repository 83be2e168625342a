/** A small pool of compression workers (one per core, at most 4), used by convert -c. */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Codec } from './compress-worker.js';

export class CompressPool {
  private readonly workers: Worker[] = [];
  private readonly waiting = new Map<number, { resolve: (out: Uint8Array[]) => void; reject: (e: unknown) => void }>();
  private nextId = 0;
  private turn = 0;

  constructor(private readonly codec: Codec, size = Math.min(4, Math.max(1, availableParallelism()))) {
    for (let i = 0; i < size; i++) {
      const w = new Worker(new URL('./compress-worker.js', import.meta.url));
      w.on('message', (m: { id: number; out: Uint8Array[] }) => {
        const p = this.waiting.get(m.id);
        this.waiting.delete(m.id);
        p?.resolve(m.out);
      });
      w.on('error', (e) => {
        for (const p of this.waiting.values()) p.reject(e);
        this.waiting.clear();
      });
      this.workers.push(w);
    }
  }

  /** Compresses each unit (copies are sent; the inputs stay usable). */
  compress(units: Uint8Array[]): Promise<Uint8Array[]> {
    const id = this.nextId++;
    const worker = this.workers[this.turn++ % this.workers.length]!;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      worker.postMessage({ id, codec: this.codec, units });
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
