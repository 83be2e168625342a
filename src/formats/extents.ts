/**
 * Small helpers for drivers building map() answers (the Extent contract in image.ts): request
 * bounds, and merging adjacent extents that read the same way.
 */
import { VmimgError } from '../util/errors.js';
import type { Extent } from './image.js';

/**
 * Appends `e` to `out`, merging it into the previous extent when it starts where that one ends,
 * has the same kind and reads on contiguously: data from the same storage at the next offset,
 * zeros with the same flags and unallocated ranges (each with the next host offset when they carry one).
 * Compressed extents are never merged.
 */
export function pushExtent(out: Extent[], e: Extent): void {
  const prev = out[out.length - 1];
  if (prev && prev.start + prev.length === e.start) {
    if (prev.kind === 'unallocated' && e.kind === 'unallocated' && prev.storage === e.storage) {
      if (prev.offset === undefined ? e.offset === undefined : e.offset === prev.offset + prev.length) {
        prev.length += e.length;
        return;
      }
    }
    if (prev.kind === 'zero' && e.kind === 'zero' && prev.data === e.data && prev.storage === e.storage) {
      if (prev.offset === undefined ? e.offset === undefined : e.offset === prev.offset + prev.length) {
        prev.length += e.length;
        return;
      }
    }
    if (prev.kind === 'data' && e.kind === 'data' && prev.storage === e.storage && prev.offset + prev.length === e.offset) {
      prev.length += e.length;
      return;
    }
  }
  out.push(e);
}

/** Throws OUT_OF_BOUNDS unless [start, start+length) is a valid map() request for the image. */
export function checkMapRange(format: string, filename: string, virtualSize: number, start: number, length: number): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(length) || start < 0 || length < 0 || start + length > virtualSize) {
    throw new VmimgError('OUT_OF_BOUNDS', `${format} map of '${filename}' at ${start}+${length} is outside the image (virtual size ${virtualSize})`, { start, length });
  }
}
