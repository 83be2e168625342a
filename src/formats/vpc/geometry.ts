/**
 * VHD disk geometry (cylinders × heads × sectors per track) and the size rounding qemu-img 7.2
 * applies when it creates an image.
 *
 * The VHD spec (appendix "CHS Calculation") derives a geometry from a sector count, rounding
 * down; QEMU lifts the 16-head limit only in that it lets sizes past 127 GiB use the maximum
 * geometry 65535 × 16 × 255 and then trusts the footer's current size. To make sure a converted
 * disk is never smaller than its source, qemu-img searches upward from the requested sector
 * count until the geometry's product covers it, and the image gets exactly that product as its
 * size. QEMU does the search in C integer types (heads is a uint8_t, cylinders a uint16_t); the
 * same truncations are applied here.
 */

export interface Chs {
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
}

export const CHS_MAX_CYLINDERS = 65535;
export const CHS_MAX_HEADS = 16;
export const CHS_MAX_SECTORS = 255;
/** 65535 × 16 × 255 sectors: the geometry that means "use the footer's current size". */
export const MAX_GEOMETRY_SECTORS = CHS_MAX_CYLINDERS * CHS_MAX_HEADS * CHS_MAX_SECTORS;
/** 0xff000000 sectors = 2040 GiB, the largest disk QEMU creates or opens. */
export const VHD_MAX_SECTORS = 0xff00_0000;

export const MAX_CHS: Chs = { cylinders: CHS_MAX_CYLINDERS, heads: CHS_MAX_HEADS, sectorsPerTrack: CHS_MAX_SECTORS };

export function chsSectors(chs: Chs): number {
  return chs.cylinders * chs.heads * chs.sectorsPerTrack;
}

/** The spec's geometry for `totalSectors` (rounded down; capped at the maximum geometry). */
export function calculateGeometry(totalSectors: number): Chs {
  const total = Math.min(totalSectors, MAX_GEOMETRY_SECTORS);
  let spt: number;
  let heads: number;
  let cth: number;
  if (total >= CHS_MAX_CYLINDERS * 16 * 63) {
    spt = 255;
    heads = 16;
    cth = Math.floor(total / spt);
  } else {
    spt = 17;
    cth = Math.floor(total / spt);
    heads = Math.ceil(cth / 1024) & 0xff;
    if (heads < 4) heads = 4;
    if (cth >= heads * 1024 || heads > 16) {
      spt = 31;
      heads = 16;
      cth = Math.floor(total / spt);
    }
    if (cth >= heads * 1024) {
      spt = 63;
      heads = 16;
      cth = Math.floor(total / spt);
    }
  }
  return { cylinders: Math.floor(cth / heads) & 0xffff, heads, sectorsPerTrack: spt };
}

/**
 * qemu-img's upward search: the first geometry, trying `requested`, `requested + 1`, ..., whose
 * product is at least `requested` (capped at the maximum geometry). Returns a zero geometry for
 * zero sectors. Terminates: at the cap the product is MAX_GEOMETRY_SECTORS ≥ the capped request.
 */
export function searchGeometry(requestedSectors: number): Chs {
  const target = Math.min(requestedSectors, MAX_GEOMETRY_SECTORS);
  let chs: Chs = { cylinders: 0, heads: 0, sectorsPerTrack: 0 };
  for (let i = 0; target > chsSectors(chs); i++) chs = calculateGeometry(target + i);
  return chs;
}

export interface RoundedSize {
  chs: Chs;
  /** The virtual size in sectors the image records (orig/current size / 512). */
  sectors: number;
}

/**
 * The geometry and size qemu-img 7.2 gives a new image of `sectors` sectors (the requested byte
 * size already rounded up to a sector). With `forceSize` the geometry is the maximum and the
 * size is kept. Returns undefined when the size is past VHD_MAX_SECTORS (QEMU: EFBIG).
 */
export function roundedImageSize(sectors: bigint, forceSize: boolean): RoundedSize | undefined {
  const capped = Number(sectors < BigInt(MAX_GEOMETRY_SECTORS) ? sectors : BigInt(MAX_GEOMETRY_SECTORS));
  const chs = forceSize ? MAX_CHS : searchGeometry(capped);
  if (chsSectors(chs) === MAX_GEOMETRY_SECTORS) {
    if (sectors > BigInt(VHD_MAX_SECTORS)) return undefined;
    return { chs, sectors: Number(sectors) };
  }
  return { chs, sectors: chsSectors(chs) };
}
