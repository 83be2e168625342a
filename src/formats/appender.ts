/**
 * Staged appending for the streaming writers (src/formats/writer.ts): their data lands at
 * ascending file offsets, mostly back to back, so it is staged and written ~4 MiB at a time
 * instead of one write per cluster or grain. Callers must flush() before anything else writes
 * the staged range, and before finishing.
 */
import type { Storage } from '../storage/types.js';

const STAGE_BYTES = 4 * 1024 * 1024;

export interface AppenderOptions {
  /** A gap shorter than this before the next piece is staged as zeros rather than flushed (0: always flush). */
  stageGapsBelow?: number;
  /** Pieces at least this long go straight to the file, unstaged (default: the stage size). */
  directWrite?: number;
}

export class Appender {
  private readonly stage = new Uint8Array(STAGE_BYTES);
  private start = 0;
  private length = 0;
  private readonly gapLimit: number;
  private readonly direct: number;

  constructor(
    private readonly storage: Storage,
    options: AppenderOptions = {},
  ) {
    this.gapLimit = options.stageGapsBelow ?? 0;
    this.direct = Math.min(options.directWrite ?? STAGE_BYTES, STAGE_BYTES);
  }

  /** Writes `data` at file offset `at` (at or after everything appended before). */
  async append(at: number, data: Uint8Array): Promise<void> {
    if (this.length > 0 && at !== this.start + this.length) {
      const gap = at - (this.start + this.length);
      if (gap > 0 && gap < this.gapLimit && this.length + gap + data.length <= this.stage.length) {
        this.stage.fill(0, this.length, this.length + gap);
        this.length += gap;
      } else {
        await this.flush();
      }
    }
    if (data.length >= this.direct) {
      await this.flush();
      return this.storage.write(at, data);
    }
    if (data.length > this.stage.length - this.length) await this.flush();
    if (this.length === 0) this.start = at;
    this.stage.set(data, this.length);
    this.length += data.length;
  }

  async flush(): Promise<void> {
    if (this.length === 0) return;
    await this.storage.write(this.start, this.stage.subarray(0, this.length));
    this.length = 0;
  }
}
