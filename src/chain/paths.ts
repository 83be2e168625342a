/**
 * How a file name recorded inside an image is turned into a path to open: relative names are
 * relative to the directory of the image that records them (QEMU's
 * bdrv_get_full_backing_filename_from_filename); absolute names stay as they are.
 */
import { dirname, isAbsolute, join } from 'node:path';

export function resolveReferencedPath(imagePath: string, recordedName: string): string {
  return isAbsolute(recordedName) ? recordedName : join(dirname(imagePath), recordedName);
}
