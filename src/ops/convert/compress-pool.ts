/**
 * A small pool of compression workers (one per core, at most 4), used by convert -c.
 *
 * Memory contract: nothing is allocated per request once the pool is warm. Input chunks should
 * live in SharedArrayBuffers (the engine reads into such buffers), so posting them copies
 * nothing; outputs are written by the worker into recycled shared buffers and handed back as
 * views, valid until `release()` is called. Per-request ArrayBuffers would otherwise pile up as
 * garbage in each worker until V8's external-memory limit forces a GC (~64 MiB per worker).
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Codec, CompressReply, CompressRequest } from './compress-worker.js';

/** Room for one compressed unit: above zlib's deflateBound and zstd's compressBound. */
export function unitBound(unitSize: number): number {
  return unitSize + (unitSize >> 7) + 1024;
}

export interface Compressed {
  /** One view per unit, in order, into a shared output buffer. */
  outputs: Uint8Array[];
  /** Returns the output buffer to the pool; the views must not be used afterwards. */
  release(): void;
}

export class CompressPool {
  private readonly workers: Worker[] = [];
  private readonly waiting = new Map<number, { out: Uint8Array; resolve: (c: Compressed) => void; reject: (e: unknown) => void }>();
  private readonly freeOutputs: Uint8Array[] = [];
  private nextId = 0;
  private turn = 0;

  constructor(private readonly codec: Codec, size = Math.min(4, Math.max(1, availableParallelism()))) {
    for (let i = 0; i < size; i++) {
      const w = new Worker(new URL('./compress-worker.js', import.meta.url));
      w.on('message', (m: CompressReply) => {
        const p = this.waiting.get(m.id);
        if (!p) return;
        this.waiting.delete(m.id);
        if (m.error !== undefined) {
          this.freeOutputs.push(p.out);
          p.reject(new Error(m.error));
          return;
        }
        const outputs: Uint8Array[] = [];
        let at = 0;
        for (const n of m.lengths) {
          outputs.push(p.out.subarray(at, at + n));
          at += n;
        }
        p.resolve({ outputs, release: () => void this.freeOutputs.push(p.out) });
      });
      w.on('error', (e) => {
        for (const p of this.waiting.values()) p.reject(e);
        this.waiting.clear();
      });
      this.workers.push(w);
    }
  }

  /** A shared buffer of at least `length` bytes for input chunks. */
  static sharedBuffer(length: number): Uint8Array {
    return new Uint8Array(new SharedArrayBuffer(length));
  }

  /**
   * Compresses the units [start, length] of `data` (units shorter than `unitSize` are zero-padded
   * first). `data` must stay unchanged until the promise settles.
   */
  compress(data: Uint8Array, units: Array<[number, number]>, unitSize: number): Promise<Compressed> {
    const id = this.nextId++;
    const worker = this.workers[this.turn++ % this.workers.length]!;
    const need = units.length * unitBound(unitSize);
    let out = this.freeOutputs.pop();
    if (!out || out.length < need) out = CompressPool.sharedBuffer(need);
    const request: CompressRequest = { id, codec: this.codec, data, units, unitSize, out };
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { out: out!, resolve, reject });
      worker.postMessage(request);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
