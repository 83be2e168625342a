/**
 * Branded unit types and the geometry helpers between them. A byte offset, a 512-byte sector
 * number and a cluster (or grain, or block) index are all plain numbers at run time; the brands
 * make the compiler refuse one where another is expected. Convert only through these helpers.
 */

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/** A byte offset or byte length (in an image file or in the guest address space). */
export type Bytes = Brand<number, 'Bytes'>;
/** A 512-byte sector number or count. */
export type Sectors = Brand<number, 'Sectors'>;
/** A cluster / grain / block index or count, always relative to a stated cluster size. */
export type Clusters = Brand<number, 'Clusters'>;

export const SECTOR_SIZE = 512;

export const bytes = (n: number): Bytes => n as Bytes;
export const sectors = (n: number): Sectors => n as Sectors;
export const clusters = (n: number): Clusters => n as Clusters;

export const sectorsToBytes = (s: Sectors): Bytes => (s * SECTOR_SIZE) as Bytes;
/** Whole sectors covering `b` bytes (rounded up). */
export const bytesToSectorsCeil = (b: Bytes): Sectors => Math.ceil(b / SECTOR_SIZE) as Sectors;

export const clustersToBytes = (c: Clusters, clusterSize: number): Bytes => (c * clusterSize) as Bytes;
/** The cluster holding byte `b` (rounded down). */
export const clusterOf = (b: Bytes, clusterSize: number): Clusters => Math.floor(b / clusterSize) as Clusters;
/** Whole clusters covering `b` bytes (rounded up). */
export const clustersCeil = (b: Bytes, clusterSize: number): Clusters => Math.ceil(b / clusterSize) as Clusters;

/** Rounds `n` up to a multiple of `align` (align > 0). */
export function roundUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}

/** Rounds a bigint up to a multiple of `align` (align > 0). */
export function roundUpBig(n: bigint, align: bigint): bigint {
  return ((n + align - 1n) / align) * align;
}

/** Ceiling division for non-negative integers. */
export function divCeil(n: number, d: number): number {
  return Math.ceil(n / d);
}

export function divCeilBig(n: bigint, d: bigint): bigint {
  return (n + d - 1n) / d;
}

export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

/** log2 of a power of two. */
export function log2(n: number): number {
  return Math.round(Math.log2(n));
}
