/**
 * Rewriting both VHDX headers (spec §2.2.2; QEMU's vhdx_update_headers): the non-current header
 * first with sequence number + 1, then the current one with + 2, so a valid current header exists
 * at every moment and the second write becomes the current header again.
 */
import type { Storage } from '../../storage/types.js';
import { encodeHeader, HEADER1_OFFSET, HEADER2_OFFSET, type VhdxHeader } from './structs.js';

/**
 * Writes `next` (its sequence number ignored) over both headers after `current` (header slot
 * `index`); `barrier` runs after each write. Returns the header now current (in slot `index`).
 */
export async function writeHeaderPair(storage: Storage, current: VhdxHeader, index: 0 | 1, next: VhdxHeader, barrier: () => Promise<void>): Promise<VhdxHeader> {
  const [first, second] = index === 0 ? [HEADER2_OFFSET, HEADER1_OFFSET] : [HEADER1_OFFSET, HEADER2_OFFSET];
  await storage.write(first, encodeHeader({ ...next, sequenceNumber: current.sequenceNumber + 1n }));
  await barrier();
  const now = { ...next, sequenceNumber: current.sequenceNumber + 2n };
  await storage.write(second, encodeHeader(now));
  await barrier();
  return now;
}
