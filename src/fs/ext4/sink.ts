/**
 * The builder's output: ascending byte writes coalesced into aligned windows for an ImageWriter
 * (src/formats/writer.ts), whose contract wants ascending, granularity-aligned writes. Bytes
 * never written read as zeros, so gaps are simply skipped.
 */
import { VmimgError } from '../../util/errors.js';
import type { ImageWriter } from '../../formats/writer.js';

const WINDOW = 1024 * 1024;
/** Zero runs shorter than this are written rather than skipped. */
const MIN_ZERO_GAP = 64 * 1024;

export class AlignedSink {
  readonly #w: ImageWriter;
  readonly #unit: number;
  readonly #window: number;
  #start = -1;
  #buf: Buffer | undefined;
  #lo = 0;
  #hi = 0;
  #last = 0;
  #zero: Buffer = Buffer.alloc(0);
  /**
   * The write of the last full window, still in flight while the next one fills (double
   * buffering: the writer still sees one call at a time, in ascending order).
   */
  #inflight: Promise<void> | undefined;
  /** The window buffer `#inflight` writes from, and one spare to reuse once it is written. */
  #inflightBuf: Buffer | undefined;
  #spare: Buffer | undefined;

  constructor(writer: ImageWriter) {
    this.#w = writer;
    this.#unit = Math.max(writer.granularity, 512);
    this.#window = Math.ceil(Math.max(WINDOW, this.#unit) / this.#unit) * this.#unit;
  }

  /** Writes `data` at `offset`; offsets must not go backwards. */
  async write(offset: number, data: Uint8Array): Promise<void> {
    if (offset < this.#last) throw new VmimgError('INTERNAL', `ext4 output went backwards (${offset} < ${this.#last})`, { offset });
    this.#last = offset + data.length;
    if (offset + data.length > this.#w.virtualSize) throw new VmimgError('INTERNAL', `ext4 output past the image end (${offset + data.length} > ${this.#w.virtualSize})`, { offset });
    let pos = 0;
    while (pos < data.length) {
      const at = offset + pos;
      if (this.#buf === undefined || at >= this.#start + this.#window) {
        await this.flush();
        // A long aligned run goes straight through, without copying.
        const whole = Math.floor((data.length - pos) / this.#window) * this.#window;
        if (at % this.#unit === 0 && whole > 0) {
          await this.#settle();
          await this.#writeNonZero(at, data.subarray(pos, pos + whole));
          pos += whole;
          continue;
        }
        this.#start = Math.floor(at / this.#window) * this.#window;
        this.#buf = this.#spare?.fill(0) ?? Buffer.alloc(this.#window);
        this.#spare = undefined;
        this.#lo = at - this.#start;
        this.#hi = this.#lo;
      }
      const off = at - this.#start;
      const n = Math.min(data.length - pos, this.#window - off);
      this.#buf.set(data.subarray(pos, pos + n), off);
      this.#hi = off + n;
      pos += n;
    }
  }

  /** Writes the pending window (aligned out to whole units, cut at the image end). */
  async flush(): Promise<void> {
    const buf = this.#buf;
    if (buf === undefined) return;
    this.#buf = undefined;
    const lo = Math.floor(this.#lo / this.#unit) * this.#unit;
    const hi = Math.min(Math.ceil(this.#hi / this.#unit) * this.#unit, this.#w.virtualSize - this.#start);
    if (hi > lo) {
      await this.#settle();
      const p = this.#writeNonZero(this.#start + lo, buf.subarray(lo, hi));
      p.catch(() => undefined); // awaited by the next #settle(); this only marks it handled meanwhile
      this.#inflight = p;
      this.#inflightBuf = buf;
    }
  }

  /** Flushes the pending window and waits until every write has completed. */
  async close(): Promise<void> {
    await this.flush();
    await this.#settle();
  }

  async #settle(): Promise<void> {
    const p = this.#inflight;
    this.#inflight = undefined;
    const buf = this.#inflightBuf;
    this.#inflightBuf = undefined;
    await p;
    if (buf) this.#spare = buf;
  }

  /**
   * Writes the runs of `data` (unit-aligned at `at`) that are not whole zero units, keeping zero
   * gaps shorter than MIN_ZERO_GAP inside a run: each write is a thread-pool round trip, and
   * splitting at every zero unit (the tails of small files) cost more than the bytes saved.
   */
  async #writeNonZero(at: number, data: Uint8Array): Promise<void> {
    const u = this.#unit;
    if (this.#zero.length !== u) this.#zero = Buffer.alloc(u);
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.length);
    const minGap = Math.max(MIN_ZERO_GAP, u);
    let runStart = -1;
    let runEnd = -1; // end of the last non-zero unit of the current run
    for (let p = 0; p < bytes.length; p += u) {
      const end = Math.min(bytes.length, p + u);
      // A set first or last byte settles most data units without a compare call.
      const zero = end - p === u && bytes[p] === 0 && bytes[end - 1] === 0 && bytes.compare(this.#zero, 0, u, p, end) === 0;
      if (zero) {
        if (runStart >= 0 && end - runEnd >= minGap) {
          await this.#w.write(at + runStart, bytes.subarray(runStart, runEnd));
          runStart = -1;
        }
        continue;
      }
      if (runStart < 0) runStart = p;
      runEnd = end;
    }
    if (runStart >= 0) await this.#w.write(at + runStart, bytes.subarray(runStart, runEnd));
  }
}
