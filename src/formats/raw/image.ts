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
    references: () => [],
    async map(start: number, length: number): Promise<Extent[]> {
      if (length === 0) return [];
      return [{ kind: 'data', start, length, storage, offset: start }];
    },
    info: (): ImageInfoFields => ({}),
    close: () => storage.close(),
  };
}
