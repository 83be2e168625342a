/**
 * Seeded mutation fuzzing of the read side: take a valid image, corrupt it, and feed it to
 * open → info → check → map → read. The only acceptable failure is a VmimgError; anything
 * else (TypeError, RangeError, an allocation failure, a hang) is a bug. Every case runs on
 * in-memory storage with all references denied, so nothing outside the case is ever touched.
 */
import { ChainReader } from '../../src/chain/read.js';
import { openImageFromStorage } from '../../src/chain/open.js';
import { DENY_ALL } from '../../src/chain/policy.js';
import { imageInfo } from '../../src/ops/info.js';
import { MemoryStorage } from '../../src/storage/memory.js';
import { isVmimgError } from '../../src/util/errors.js';

/** xorshift32: small, seedable, deterministic. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s;
  }
  below(n: number): number {
    return this.next() % n;
  }
}

const INTERESTING_32 = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x200, 0x1000, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

/** Returns a corrupted copy of `image`: byte flips, interesting 32-bit values, truncation or growth. */
export function mutate(image: Uint8Array, rng: Rng): Uint8Array {
  let out: Uint8Array = image.slice();
  const hot = Math.min(out.length, 1 << 16); // headers and first tables live here
  const edits = 1 + rng.below(8);
  for (let i = 0; i < edits && out.length > 0; i++) {
    const where = rng.below(4) === 0 ? rng.below(out.length) : rng.below(Math.max(1, hot));
    switch (rng.below(5)) {
      case 0:
        out[where] = rng.below(256);
        break;
      case 1:
        out[where] = out[where]! ^ (1 << rng.below(8));
        break;
      case 2: {
        const v = INTERESTING_32[rng.below(INTERESTING_32.length)]!;
        const at = Math.min(where, Math.max(0, out.length - 4));
        const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
        if (out.length >= 4) dv.setUint32(at, v, rng.below(2) === 0);
        break;
      }
      case 3:
        if (rng.below(4) === 0) out = out.slice(0, rng.below(out.length + 1));
        break;
      case 4:
        if (rng.below(8) === 0) {
          const grown = new Uint8Array(out.length + rng.below(1 << 16));
          grown.set(out);
          out = grown;
        }
        break;
    }
  }
  return out;
}

export interface CaseResult {
  /** What the image did: 'rejected' (a VmimgError) or 'accepted'. */
  outcome: 'rejected' | 'accepted';
  /** A non-VmimgError escaped: the bug, with its stack. */
  bug?: string;
  ms: number;
}

/** Maximum guest bytes read per case (spread over the disk). */
const READ_BUDGET = 4 * 1024 * 1024;

/** Runs one (possibly corrupt) image through every read-side operation. */
export async function runCase(bytes: Uint8Array, format: string | undefined): Promise<CaseResult> {
  const started = performance.now();
  const done = (outcome: CaseResult['outcome'], bug?: string): CaseResult => ({ outcome, bug, ms: performance.now() - started });
  let image;
  try {
    image = (await openImageFromStorage(new MemoryStorage(bytes, { writable: false }), 'fuzz.img', { format, policy: DENY_ALL })).image;
  } catch (e) {
    return isVmimgError(e) ? done('rejected') : done('rejected', String((e as Error)?.stack ?? e));
  }
  try {
    await imageInfo(image);
    image.references();
    image.safetyIssues?.();
    if (image.check) await image.check({ leaks: false, errors: false }, () => undefined);
    const size = image.virtualSize;
    // Map the whole disk in windows, bounded in count.
    const window = Math.max(1 << 20, Math.ceil(size / 64));
    for (let pos = 0, n = 0; pos < size && n < 256; pos += window, n++) await image.map(pos, Math.min(window, size - pos));
    const reader = new ChainReader([image]);
    const chunk = 64 * 1024;
    const samples = Math.min(64, Math.ceil(size / chunk));
    for (let i = 0; i < samples && i * chunk < READ_BUDGET; i++) {
      const at = Math.floor((size / samples) * i);
      const offset = Math.max(0, Math.min(at - (at % 512), size - chunk));
      await reader.read(offset, Math.min(chunk, size - offset));
    }
    return done('accepted');
  } catch (e) {
    return isVmimgError(e) ? done('rejected') : done('rejected', String((e as Error)?.stack ?? e));
  } finally {
    await image.close().catch(() => undefined);
  }
}
