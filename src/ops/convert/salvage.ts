/**
 * convert --salvage, as qemu-img 7.2's img_convert does it (qemu-img.c: convert_co_read and
 * convert_iteration_sectors with s->salvage):
 *
 * - A read that fails is retried one 512-byte sector at a time over the whole failed request;
 *   a sector that still fails reads as zeros, with the warning
 *   "error while reading offset N: <strerror>" (N: byte offset in that source).
 * - A block-status (map) query that fails is retried on a quarter of the range until it covers
 *   one sector; that sector is then taken as data (so it is read, and fails or not on its own)
 *   with the warning "error while reading block status at offset N: <strerror>". qemu-img walks
 *   the block status twice (once to count the work for -p, once while copying), so each such
 *   warning appears twice: all of them first, then each again just before its sector's read
 *   warning. With -c the copy advances a whole target cluster per step and only queries the
 *   status at cluster starts, so only bad sectors at a cluster start are reported.
 * - Warnings are not printed with -q; the exit status stays 0.
 *
 * Without --salvage the same walk locates the first sector whose status fails, and convert
 * fails with "error while reading block status at offset N: …" as qemu-img does; a failed
 * read fails with "error while reading at byte N: …" (N: the start of the failed request).
 *
 * Which errors count as read errors: a VmimgError with one of SALVAGEABLE's codes (an I/O error
 * from the storage, undecodable compressed data, a corrupt mapping, a reference outside the
 * file). Anything else (a bug, a closed file) still stops the convert.
 */
import { ImageChain } from '../../chain/open.js';
import { isVmimgError, type VmimgError } from '../../util/errors.js';
import { mapChain, type MapEntry } from '../map.js';

export const SECTOR = 512;

const SALVAGEABLE = new Set(['READ_FAILED', 'CORRUPT_IMAGE', 'OUT_OF_BOUNDS', 'SOURCE_CHANGED']);

export function isReadError(e: unknown): e is VmimgError {
  return isVmimgError(e) && SALVAGEABLE.has(e.code);
}

/** glibc's strerror text for the errnos a read can fail with; QEMU reports corruption as EIO. */
const STRERROR: Record<string, string> = {
  EIO: 'Input/output error',
  ENXIO: 'No such device or address',
  EINVAL: 'Invalid argument',
  ENOMEM: 'Cannot allocate memory',
  EFAULT: 'Bad address',
  ENODEV: 'No such device',
  EBADF: 'Bad file descriptor',
  EACCES: 'Permission denied',
  EPERM: 'Operation not permitted',
  ESTALE: 'Stale file handle',
  ETIMEDOUT: 'Connection timed out',
  EAGAIN: 'Resource temporarily unavailable',
  ENOSPC: 'No space left on device',
  EOVERFLOW: 'Value too large for defined data type',
};

/** The strerror text qemu-img would print for this read error. */
export function errorText(e: VmimgError): string {
  // vmdk_read_extent fails a grain that does not inflate with -EINVAL; qcow2 with -EIO.
  if (e.details['codec'] === 'zlib') return STRERROR['EINVAL']!;
  const errno = e.details['errno'];
  return (typeof errno === 'string' && STRERROR[errno]) || STRERROR['EIO']!;
}

/** Where a global (concatenated) offset lies: which source, and the offset inside it. */
export type Locate = (offset: number) => { source: number; offset: number };

/** A warning tied to a global offset, printed when the copy reaches that offset. */
export interface SalvageWarning {
  at: number;
  text: string;
  source: number;
  /** What failed, for the once-per-source line (see `emit`). */
  cause: VmimgError;
}

export interface SalvageOptions {
  /** Prints one warning line (the caller adds "vmimg: warning: "); undefined with -q. */
  warn?: (message: string) => void;
  /** The target's cluster when -c is given, else 512: status is queried per step of this. */
  step: number;
  /** convert -B: only the sources' top layers are asked (statusWalk's topOnly). */
  backing: boolean;
  locate: Locate;
  filenames: readonly string[];
}

/**
 * One convert --salvage: the status walks, the sector-wise retries, and the warnings in
 * qemu-img's order. The engine calls `entries` for the map, `read` for each chunk, and
 * `report` in write order (apply), so warnings come out in guest order whatever the reads'
 * completion order.
 */
export class Salvage {
  private readonly statusQueue: SalvageWarning[] = [];
  /** Sources that have had a warning (and so their cause line, if any). */
  private readonly explained = new Set<number>();

  constructor(private readonly o: SalvageOptions) {}

  /** qemu-img's first (counting) pass: every block-status warning, before anything is copied. */
  async prescan(chains: readonly ImageChain[], bases: readonly number[]): Promise<void> {
    for (const [i, chain] of chains.entries()) {
      for await (const e of statusWalk(chain, (at, err) => this.statusError(bases[i]! + at, err, false), this.o.backing)) void e;
    }
  }

  /** The copy pass's map of one source (entries at source offsets). */
  entries(chain: ImageChain, base: number): AsyncGenerator<MapEntry> {
    return statusWalk(chain, (at, err) => this.statusError(base + at, err, true), this.o.backing);
  }

  private statusError(global: number, err: VmimgError, queue: boolean): void {
    if (global % this.o.step !== 0) return; // -c: not a step's start, never queried
    const { source, offset } = this.o.locate(global);
    const w = { at: global, text: `error while reading block status at offset ${offset}: ${errorText(err)}`, source, cause: err };
    if (queue) this.statusQueue.push(w);
    else this.emit(w);
  }

  /**
   * Reads `out.length` bytes at global `offset` through `readInto`; on a read error retries
   * sector by sector, zero-filling the sectors that fail. Returns their warnings, for `report`.
   */
  async read(readInto: (offset: number, out: Uint8Array) => Promise<void>, offset: number, out: Uint8Array): Promise<SalvageWarning[]> {
    try {
      await readInto(offset, out);
      return [];
    } catch (e) {
      if (!isReadError(e)) throw e;
    }
    const failed: SalvageWarning[] = [];
    for (let pos = 0; pos < out.length; pos += SECTOR) {
      const sector = out.subarray(pos, Math.min(out.length, pos + SECTOR));
      try {
        await readInto(offset + pos, sector);
      } catch (e) {
        if (!isReadError(e)) throw e;
        sector.fill(0);
        const { source, offset: local } = this.o.locate(offset + pos);
        failed.push({ at: offset + pos, text: `error while reading offset ${local}: ${errorText(e)}`, source, cause: e });
      }
    }
    return failed;
  }

  /**
   * Prints, in guest order, the queued block-status warnings below `end` and the given read
   * warnings (a sector's status warning before its read warning).
   */
  report(failed: readonly SalvageWarning[] | undefined, end: number): void {
    const reads = failed ?? [];
    let r = 0;
    while (this.statusQueue.length > 0 && this.statusQueue[0]!.at < end) {
      const s = this.statusQueue.shift()!;
      for (; r < reads.length && reads[r]!.at < s.at; r++) this.emit(reads[r]!);
      this.emit(s);
    }
    for (; r < reads.length; r++) this.emit(reads[r]!);
  }

  /**
   * Prints a warning; before a source's first one, when its cause is not a plain OS error, one
   * line saying why (qemu-img's drivers print their own, e.g. qcow2's "Image is corrupt: …").
   */
  private emit(w: SalvageWarning): void {
    if (!this.o.warn) return;
    if (!this.explained.has(w.source) && typeof w.cause.details['errno'] !== 'string') {
      const name = this.o.filenames[w.source]!;
      const message = w.cause.fullMessage();
      this.o.warn(`${message.includes(name) ? '' : `${name}: `}${message}; further errors of this image are reported by offset only`);
    }
    this.explained.add(w.source);
    this.o.warn(w.text);
  }
}

/**
 * The chain's map, streamed; where a query fails, bad sectors are found as qemu-img finds them
 * (the query shrinks to a quarter until it succeeds or covers one sector). `onBad` gets each
 * failing sector's offset and error (and may throw to stop); that sector is yielded as data.
 * `topOnly` (convert -B): qemu-img asks the source's top layer only, so a failure in its backing
 * chain is not an error: the range is mapped through the top layer alone, and what that leaves
 * unallocated is reported at depth 1 (left to the target's backing file).
 */
export async function* statusWalk(chain: ImageChain, onBad: (offset: number, err: VmimgError) => void, topOnly = false): AsyncGenerator<MapEntry> {
  const end = chain.top.virtualSize;
  const top = topOnly && chain.layers.length > 1 ? new ImageChain([chain.top]) : undefined;
  /** The entries of [at, at+n), or the error that stops them. */
  const query = async (at: number, n: number): Promise<MapEntry[] | VmimgError> => {
    try {
      const got: MapEntry[] = [];
      for await (const e of mapChain(chain, at, n, { split: true })) got.push(e);
      return got;
    } catch (e) {
      if (!isReadError(e)) throw e;
      if (!top) return e;
    }
    try {
      const got: MapEntry[] = [];
      for await (const e of mapChain(top, at, n, { split: true })) got.push(e.present ? e : { ...e, depth: 1 });
      return got;
    } catch (e) {
      if (!isReadError(e)) throw e;
      return e;
    }
  };
  let pos = 0;
  // Right after a bad sector the next one is likely bad too: ask for it alone first (the same
  // answer the shrinking reaches, as a range fails when any sector in it does, in one query).
  let afterBad = false;
  while (pos < end) {
    if (!afterBad) {
      let reached = pos;
      try {
        for await (const e of mapChain(chain, pos, end - pos, { split: true })) {
          yield e;
          reached = e.start + e.length;
        }
        return;
      } catch (e) {
        if (!isReadError(e)) throw e;
      }
      pos = reached;
    }
    // Shrink the query at pos until it succeeds (a good stretch) or covers one sector (bad).
    for (let n = afterBad ? SECTOR : end - pos; ; n = Math.ceil(n / SECTOR / 4) * SECTOR) {
      const length = Math.min(n, end - pos);
      const got = await query(pos, length);
      if (Array.isArray(got)) {
        yield* got;
        afterBad = false;
      } else if (n <= SECTOR) {
        onBad(pos, got);
        yield { start: pos, length, depth: 0, present: true, zero: false, data: true };
        afterBad = true;
      } else continue;
      pos += length;
      break;
    }
  }
}

/**
 * Without --salvage, a failed read of [offset, offset+out.length) is reported at its first
 * unreadable sector ("error while reading at byte N"). qemu-img names the start of its read
 * request: the same offset for a compressed cluster or grain (its block status ends there),
 * up to 2 MiB earlier for a failure inside a longer run of data.
 */
export async function readOrFail(readInto: (offset: number, out: Uint8Array) => Promise<void>, offset: number, out: Uint8Array): Promise<void> {
  try {
    return await readInto(offset, out);
  } catch (e) {
    if (!isReadError(e)) throw e;
    let first: VmimgError = e;
    let at = offset;
    for (let pos = 0; pos < out.length; pos += SECTOR) {
      try {
        await readInto(offset + pos, out.subarray(pos, Math.min(out.length, pos + SECTOR)));
      } catch (s) {
        if (!isReadError(s)) throw s;
        [first, at] = [s, offset + pos];
        break;
      }
    }
    throw first.within(`error while reading at byte ${at}`);
  }
}

/** Without --salvage: the first bad sector stops the convert, named as qemu-img names it. */
export function statusFailure(locate: Locate, base: number): (offset: number, err: VmimgError) => never {
  return (offset, err) => {
    throw err.within(`error while reading block status at offset ${locate(base + offset).offset}`);
  };
}
