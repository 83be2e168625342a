/** Reading raw images: every guest byte is the file byte at the same offset. */
import type { Storage } from '../../storage/types.js';
import { roundUp, SECTOR_SIZE } from '../../util/units.js';
import type { Extent, Image, ImageInfoFields, OpenOptions } from '../image.js';

export async function openRaw(storage: Storage, options: OpenOptions): Promise<Image> {
  const fileLength = await storage.size();
  // QEMU 7.2 works in whole sectors: a 1000-byte raw file has virtual size 1024, the tail reads as zeros.
  const virtualSize = roundUp(fileLength, SECTOR_SIZE);
  return {
    format: 'raw',
    filename: options.filename,
    storage,
    virtualSize,
    readsAsStorage: true,
    references: () => [],
    /** Data and holes of the file (SEEK_DATA/SEEK_HOLE when available); holes map as zero. */
    async map(start: number, length: number): Promise<Extent[]> {
      const out: Extent[] = [];
      for (let pos = start; pos < start + length; ) {
        const want = start + length - pos;
        const st = storage.blockStatus ? await storage.blockStatus(pos, want) : { data: true, length: want };
        const n = Math.min(Math.max(1, st.length), want);
        const prev = out[out.length - 1];
        const kind = st.data ? 'data' : 'zero';
        if (prev && prev.kind === kind) prev.length += n;
        else out.push({ kind, start: pos, length: n, storage, offset: pos });
        pos += n;
      }
      return out;
    },
    info: (): ImageInfoFields => ({}),
    close: () => storage.close(),
  };
}
