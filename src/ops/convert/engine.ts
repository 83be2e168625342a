/**
 * The map-driven copy at the heart of convert: walk the sources' maps (never reading what is
 * known to be zero or unallocated), read data in large aligned chunks with several reads in
 * flight, detect zero blocks (-S), compress on worker threads (-c), and hand the writer
 * ascending runs. Mirrors qemu-img's convert_do_copy in what reaches the target.
 */
import type { ImageChain } from '../../chain/open.js';
import { ChainReader } from '../../chain/read.js';
import type { ImageWriter } from '../../formats/writer.js';
import type { MapEntry } from '../map.js';
import type { CompressPool } from './compress-pool.js';
import { classify, type Run } from './runs.js';
import { isZero, zeroRuns } from './zero.js';
import { readOrFail, Salvage, statusFailure, statusWalk, type Locate, type SalvageWarning } from './salvage.js';

export interface CopyOptions {
  /** Smallest zero run (bytes) turned into a hole; 0 = write everything (-S 0). */
  minSparse: number;
  /** The target has a backing file (-B): unallocated source ranges stay unallocated, zeros are masked. */
  backing: boolean;
  /** Zero ranges must be written explicitly (convert -n without --target-is-zero). */
  zeroTarget: boolean;
  /** Chunks in flight (qemu-img -m); without compression at most READ_AHEAD of them. */
  parallel: number;
  onProgress?: (done: number, total: number) => void;
  /**
   * --salvage: unreadable sectors become zeros, with warnings through `warn` (none with -q).
   * `compress`: -c was given (qemu-img then steps whole target clusters, even where the target
   * format writes a compressed request uncompressed, as vmdk monolithicSparse does; it also does
   * for a target that compresses without -c, vmdk streamOptimized: `writer.compression`).
   */
  salvage?: { warn?: (message: string) => void; compress: boolean };
}

/**
 * Guest bytes per read without compression. Every read and write is a round trip through
 * libuv's pool (two thread wake-ups, each an inter-processor interrupt on a VM), so fewer, larger
 * ones cost less: a 2 GiB qcow2→raw into existing pages (convert -n) took 0.39-0.46 s with 4 MiB
 * chunks against 0.43-0.54 s with 2 MiB and 0.41-0.51 s with 8 MiB (2026-11-23).
 */
const CHUNK = 4 * 1024 * 1024;

/** Guest bytes per read with compression: each chunk is split into clusters for the workers. */
const CHUNK_COMPRESSED = 2 * 1024 * 1024;

/**
 * Chunks read ahead of the writes when nothing is compressed. More only cost: with 2 MiB chunks,
 * 8 in flight ran 0.52-0.55 s for a 2 GiB qcow2→raw against 0.45-0.48 s with 2-4 (warm target
 * pages), as a chunk written soon after it was read is still in the CPU cache and fewer pool
 * threads compete for the two cores with the one that writes; with 4 MiB chunks 2 ran
 * 0.40-0.41 s, 3 0.39-0.46 s, 4 0.41-0.44 s.
 */
const READ_AHEAD = 2;

/** Reads the concatenation of several chains as one disk. */
class ConcatReader {
  private readonly readers: ChainReader[];
  readonly bases: number[] = [];
  readonly size: number;

  constructor(chains: ImageChain[]) {
    this.readers = chains.map((c) => new ChainReader(c.layers));
    let base = 0;
    for (const r of this.readers) {
      this.bases.push(base);
      base += r.virtualSize;
    }
    this.size = base;
  }

  /** The source holding global `offset`, and the offset inside it. */
  readonly locate: Locate = (offset) => {
    let i = this.bases.length - 1;
    while (i > 0 && this.bases[i]! > offset) i--;
    return { source: i, offset: offset - this.bases[i]! };
  };

  async readInto(offset: number, out: Uint8Array): Promise<void> {
    for (let i = 0; i < this.readers.length; i++) {
      const r = this.readers[i]!;
      const a = Math.max(offset, this.bases[i]!);
      const b = Math.min(offset + out.length, this.bases[i]! + r.virtualSize);
      if (a < b) await r.readInto(a - this.bases[i]!, out.subarray(a - offset, b - offset));
    }
  }
}

/** The sources' maps, one after the other; a failing status query stops or is salvaged (salvage.ts). */
async function* concatEntries(chains: ImageChain[], locate: Locate, salvage: Salvage | undefined, backing: boolean): AsyncGenerator<MapEntry> {
  let base = 0;
  for (const chain of chains) {
    const entries = salvage ? salvage.entries(chain, base) : statusWalk(chain, statusFailure(locate, base), backing);
    for await (const e of entries) yield { ...e, start: e.start + base };
    base += chain.top.virtualSize;
  }
}

interface Prepared {
  /** Writer calls for this chunk, in order. */
  apply: () => Promise<void>;
  length: number;
  /** The read buffer to recycle once applied. */
  buffer?: Uint8Array;
  /** Returns pooled compression output once applied. */
  release?: () => void;
}

export async function copyChains(chains: ImageChain[], writer: ImageWriter, o: CopyOptions): Promise<void> {
  const reader = new ConcatReader(chains);
  const total = reader.size;
  const g = writer.granularity;
  const compression = writer.compression;
  const chunkBytes = compression ? CHUNK_COMPRESSED : CHUNK;
  const chunk = Math.max(chunkBytes, g) - (Math.max(chunkBytes, g) % g);
  const detect = o.minSparse === 0 ? 0 : Math.max(g, Math.ceil(o.minSparse / g) * g);
  const salvage = o.salvage
    ? // qemu-img steps whole target clusters when it compresses: with -c, and for a target that
      // only takes compressed writes (bdi.needs_compressed_writes: vmdk streamOptimized).
      new Salvage({ warn: o.salvage.warn, step: o.salvage.compress || compression ? g : 512, backing: o.backing, locate: reader.locate, filenames: chains.map((c) => c.top.filename) })
    : undefined;
  // The worker pool (and worker_threads) loads only when something is compressed.
  const Pool = compression ? (await import('./compress-pool.js')).CompressPool : undefined;
  const pool: CompressPool | undefined = Pool && compression ? new Pool(compression.codec) : undefined;
  const ahead = compression ? o.parallel : Math.min(o.parallel, READ_AHEAD);
  let done = 0;
  const inFlight: Array<Promise<Prepared>> = [];

  const zeroWrite = async (offset: number, length: number): Promise<void> => {
    if (o.backing || o.zeroTarget) await writer.writeZeroes(offset, length);
  };

  // Read buffers are recycled: steady-state copying allocates nothing per chunk.
  const free: Uint8Array[] = [];
  // With compression they are shared with the workers, so posting a chunk copies nothing.
  const take = (n: number): Uint8Array => (free.pop() ?? (Pool ? Pool.sharedBuffer(chunk) : new Uint8Array(chunk))).subarray(0, n);
  const give = (b: Uint8Array): void => void free.push(new Uint8Array(b.buffer, b.byteOffset, chunk));

  const prepareData = async (offset: number, length: number): Promise<Prepared> => {
    const bytes = take(length);
    const failed = await read(offset, bytes);
    if (compression && pool) {
      const units: Array<[number, number]> = [];
      const zeros: Array<[number, number]> = [];
      for (let pos = 0; pos < length; pos += g) {
        const n = Math.min(length - pos, g);
        if (o.minSparse !== 0 && isZero(bytes, pos, pos + n)) zeros.push([offset + pos, n]);
        else units.push([pos, n]);
      }
      // Each unit is compressed as a whole cluster/grain (the image's tail zero-padded by the worker).
      const result = units.length ? await pool.compress(bytes, units, g) : undefined;
      const compressed = result?.outputs ?? [];
      return {
        length,
        buffer: bytes,
        release: result?.release,
        apply: async () => {
          salvage?.report(failed, offset + length);
          let zi = 0;
          for (const [i, [start, n]] of units.entries()) {
            const at = offset + start;
            while (zi < zeros.length && zeros[zi]![0] < at) await zeroWrite(...zeros[zi++]!);
            const c = compressed[i]!;
            if (c.length >= compression.maxCompressed) await writer.write(at, bytes.subarray(start, start + n));
            else await writer.writeCompressed!(at, n, c);
          }
          while (zi < zeros.length) await zeroWrite(...zeros[zi++]!);
        },
      };
    }
    const runs = detect === 0 ? [{ start: 0, length, zero: false }] : zeroRuns(bytes, detect, offset);
    return {
      length,
      buffer: bytes,
      apply: async () => {
        salvage?.report(failed, offset + length);
        for (const r of runs) {
          if (r.zero) await zeroWrite(offset + r.start, r.length);
          else await writer.write(offset + r.start, bytes.subarray(r.start, r.start + r.length));
        }
      },
    };
  };

  const prepareRun = (run: Run): Prepared => ({
    length: run.length,
    apply: async () => {
      salvage?.report(undefined, run.start + run.length);
      if (run.kind === 'mask') await writer.writeZeroes(run.start, run.length);
      else if (run.kind === 'zero' && o.zeroTarget) await writer.writeZeroes(run.start, run.length);
    },
  });

  const drain = async (keep: number): Promise<void> => {
    while (inFlight.length > keep) {
      const p = await inFlight.shift()!;
      await p.apply();
      p.release?.();
      if (p.buffer) give(p.buffer);
      done += p.length;
      o.onProgress?.(done, total);
    }
  };

  const read = async (offset: number, bytes: Uint8Array): Promise<SalvageWarning[] | undefined> => {
    const readInto = (at: number, out: Uint8Array): Promise<void> => reader.readInto(at, out);
    if (salvage) return salvage.read(readInto, offset, bytes);
    return void (await readOrFail(readInto, offset, bytes));
  };

  try {
    await salvage?.prescan(chains, reader.bases);
    const runs = classify(concatEntries(chains, reader.locate, salvage, o.backing), 0, total, g, { backing: o.backing, fullAllocation: o.minSparse === 0, yieldFrom: chunk });
    for await (const run of runs) {
      if (run.kind !== 'data') {
        inFlight.push(Promise.resolve(prepareRun(run)));
        await drain(ahead);
        continue;
      }
      for (let pos = run.start; pos < run.start + run.length; ) {
        const next = Math.min(run.start + run.length, pos - (pos % chunk) + chunk);
        const p = prepareData(pos, next - pos);
        p.catch(() => undefined); // awaited in order by drain(); this only marks it handled meanwhile
        inFlight.push(p);
        await drain(ahead);
        pos = next;
      }
    }
    await drain(0);
    salvage?.report(undefined, Infinity);
  } finally {
    // Settle anything still in flight before closing the pool (errors are already propagating).
    await Promise.allSettled(inFlight);
    await pool?.close();
  }
}
