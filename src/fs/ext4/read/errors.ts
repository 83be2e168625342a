/** CORRUPT_IMAGE errors of the ext4 reader: the message names the structure and its number. */
import { VmimgError } from '../../../util/errors.js';

export function corrupt(what: string, details: Record<string, unknown> = {}): VmimgError {
  return new VmimgError('CORRUPT_IMAGE', `ext4: ${what}`, details);
}
