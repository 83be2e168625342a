/**
 * raw as a convert target: data at its own offset, zero runs left as holes (the file is
 * extended with truncate, so never-written ranges stay sparse), preallocation=falloc|full
 * honoured for the whole file, length ROUND_UP(size, 512) as `create` makes it; with
 * preallocation=off or falloc the first block is written as zeros first, as `create` does (qemu-img's
 * convert creates its target the same way, so `qemu-img map` of either output starts alike).
 */
import type { Storage } from '../../storage/types.js';
import { preallocationOf } from '../options.js';
import type { CreateContext } from '../types.js';
import type { ImageWriter } from '../writer.js';
import { toSafeNumber } from '../../util/size.js';
import { roundUpBig, SECTOR_SIZE } from '../../util/units.js';
import { VmimgError } from '../../util/errors.js';
import { firstBlockLength } from './driver.js';

const ZERO_CHUNK = 4 * 1024 * 1024;

export async function createRawWriter(storage: Storage, ctx: CreateContext, compress: boolean): Promise<ImageWriter> {
  if (compress) throw new VmimgError('UNSUPPORTED_OPTION', 'Compression not supported for this file format (raw)', { format: 'raw' });
  const prealloc = preallocationOf(ctx, ['off', 'falloc', 'full']);
  const length = toSafeNumber(roundUpBig(ctx.size, BigInt(SECTOR_SIZE)), 'raw image size');
  await storage.truncate(length);
  if (prealloc === 'falloc' && storage.allocate && length > 0) await storage.allocate(0, length);
  if (prealloc !== 'full' && length > 0) await storage.write(0, new Uint8Array(firstBlockLength(length)));
  const zeros = new Uint8Array(ZERO_CHUNK);
  const writeZeros = async (offset: number, n: number): Promise<void> => {
    for (let done = 0; done < n; done += ZERO_CHUNK) {
      const k = Math.min(ZERO_CHUNK, n - done);
      await storage.write(offset + done, k === ZERO_CHUNK ? zeros : zeros.subarray(0, k));
    }
  };
  // preallocation=full writes zeros wherever no data lands: track the next unwritten offset.
  let filledTo = 0;
  const fillGap = async (upTo: number): Promise<void> => {
    if (prealloc === 'full' && upTo > filledTo) await writeZeros(filledTo, upTo - filledTo);
    filledTo = Math.max(filledTo, upTo);
  };
  return {
    virtualSize: length,
    granularity: SECTOR_SIZE,
    async write(offset, data) {
      await fillGap(offset);
      await storage.write(offset, data);
      filledTo = Math.max(filledTo, offset + data.length);
    },
    async writeZeroes(offset, n) {
      await fillGap(offset);
      await writeZeros(offset, n);
      filledTo = Math.max(filledTo, offset + n);
    },
    async finish() {
      await fillGap(length);
      await storage.flush();
    },
    // Guest byte x is file byte x; preallocation=full tracks what was written, so it goes through write().
    copyFiles:
      storage.copyFiles && prealloc !== 'full'
        ? async (files) => {
            for (const f of files) {
              if (f.offset + f.size > length) throw new VmimgError('OUT_OF_BOUNDS', `Write of ${f.size} bytes at ${f.offset} is outside the ${length}-byte raw image`, { offset: f.offset, size: f.size });
            }
            return storage.copyFiles!(files);
          }
        : undefined,
  };
}
