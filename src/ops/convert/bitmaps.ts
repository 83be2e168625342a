/**
 * convert --bitmaps [--skip-broken-bitmaps], as qemu-img 7.2's img_convert does it:
 *
 * - before the target exists (convert_check_bitmaps): the source must support persistent
 *   bitmaps (qcow2 v3), and an inconsistent (in_use) bitmap is an error unless
 *   --skip-broken-bitmaps; QEMU walks its bitmaps newest-loaded first, i.e. in reverse directory
 *   order, so that is the order of the error and of the warnings;
 * - the target must support them (qcow2 v3; vmimg checks the format and compat before writing
 *   anything, qemu-img after creating the target and leaves it behind);
 * - after the data (convert_copy_bitmaps): every persistent bitmap of the source, in its
 *   directory order, gets a bitmap of the same name and granularity in the target, enabled
 *   exactly when the source's is ("auto"), with the source's bits; a skipped one is warned about.
 *   With -n the existing qcow2 v3 target gets them (it must have none: vmimg does not write into
 *   images with bitmaps) and must be of the source's size.
 *
 * vmimg loads and checks every bitmap table up front (QEMU does when it opens the source), then
 * reads each bitmap again while storing it, one at a time (at most one table in memory).
 */
import type { ImageChain } from '../../chain/open.js';
import type { BitmapBits, PersistentBitmap } from '../../formats/types.js';
import type { BitmapToStore, ImageWriter } from '../../formats/writer.js';
import { splitOptionString } from '../../formats/options.js';
import { VmimgError } from '../../util/errors.js';

export interface BitmapCopyRequest {
  targetFormat?: string;
  optionStrings?: string[];
  skipBrokenBitmaps?: boolean;
  onWarning?: (message: string) => void;
}

export interface BitmapCopy {
  /** Before any data: the target must be able to hold bitmaps (a -n target may be qcow2 v2, or lack header room). */
  checkTarget(writer: ImageWriter): Promise<void>;
  /** Warns about the bitmaps skipped and hands the others to the writer (after all guest data, before finish). */
  store(writer: ImageWriter): Promise<void>;
}

export async function prepareBitmapCopy(req: BitmapCopyRequest, chain: ImageChain): Promise<BitmapCopy> {
  const top = chain.top;
  const bitmaps = top.persistentBitmaps?.();
  if (bitmaps === undefined) throw new VmimgError('UNSUPPORTED_OPTION', 'Source lacks bitmap support', { format: top.format });
  const inQemuOrder = [...bitmaps].reverse();
  const broken = inQemuOrder.filter((b) => b.inconsistent);
  if (broken.length > 0 && !req.skipBrokenBitmaps) {
    const name = broken[0]!.name;
    throw new VmimgError('INCONSISTENT_BITMAP', `Cannot copy inconsistent bitmap '${name}' (try --skip-broken-bitmaps, or use 'qemu-img bitmap --remove' to delete it)`, {
      file: top.filename,
      bitmap: name,
    });
  }
  const format = req.targetFormat ?? 'raw';
  const options = new Map<string, string>();
  for (const text of req.optionStrings ?? []) for (const [key, value] of splitOptionString(text)) options.set(key, value);
  const compat = options.get('compat');
  if (format !== 'qcow2' || compat === '0.10' || compat === 'v2') {
    throw new VmimgError('UNSUPPORTED_OPTION', `Format driver '${format}' does not support bitmaps`, { format });
  }
  const copied = bitmaps.filter((b) => !b.inconsistent);
  const load = (b: PersistentBitmap): Promise<BitmapBits> => {
    if (!top.readPersistentBitmap) throw new VmimgError('UNSUPPORTED_OPTION', `Reading bitmaps of ${top.format} images is not supported`, { format: top.format });
    return top.readPersistentBitmap(b.name, b.nameBytes);
  };
  for (const b of copied) await load(b);

  const unsupported = (): VmimgError => new VmimgError('UNSUPPORTED_OPTION', `Format driver '${format}' does not support bitmaps`, { format });
  return {
    async checkTarget(writer: ImageWriter): Promise<void> {
      if (!writer.writeBitmaps) throw unsupported();
      if (copied.length > 0) await writer.checkBitmaps?.();
    },
    async store(writer: ImageWriter): Promise<void> {
      for (const b of broken) req.onWarning?.(`Skipping inconsistent bitmap '${b.name}'`);
      if (copied.length === 0) return;
      if (!writer.writeBitmaps) throw unsupported();
      // A -n target of another size: QEMU refuses to merge (after copying the data), naming the
      // first bitmap it handles.
      if (writer.virtualSize !== top.virtualSize) {
        const name = copied[copied.length - 1]!.name;
        throw new VmimgError('SIZE_OUT_OF_RANGE', `Failed to populate bitmap ${name}: Bitmaps are of different sizes (destination size is ${writer.virtualSize}, source size is ${top.virtualSize}) and can't be merged`, {
          bitmap: name,
        });
      }
      await writer.writeBitmaps(copied.map((b): BitmapToStore => ({ name: b.name, ...(b.nameBytes ? { nameBytes: b.nameBytes } : {}), granularity: b.granularity, enabled: b.enabled ?? false, load: () => load(b) })));
    },
  };
}

type Copy = (writer: ImageWriter, zeroTarget: boolean) => Promise<void>;

/** The data copy `copy` between the bitmap steps: the target check before it, the bitmaps after. */
export function withBitmaps(copy: Copy, bitmaps: BitmapCopy | undefined): Copy {
  if (!bitmaps) return copy;
  return async (writer, zeroTarget) => {
    await bitmaps.checkTarget(writer);
    await copy(writer, zeroTarget);
    await bitmaps.store(writer);
  };
}
