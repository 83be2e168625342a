/**
 * A small generator of VMware-style streamOptimized files, written from VMware's "Virtual Disk
 * Format 5.0" ("Stream-Optimized Compressed Sparse Extents") for tests — the canonical layout
 * qemu-img does not write itself:
 *
 *   sector 0         header: version 3, flags NL-detect|compressed|markers, gdOffset GD_AT_END
 *   sector 1…        the descriptor
 *   overHead…        grains, each {lba u64, size u32, zlib data} padded to a sector, in LBA
 *                    order; all-zero grains are left out (GT entry 0)
 *                    after the grains of each non-empty grain table: a GT marker sector
 *                    {val = GT sectors, size 0, type 1} and the grain table
 *                    a GD marker {val = GD sectors, size 0, type 2} and the grain directory
 *   end − 1536       footer marker {val 1, size 0, type 3}, the footer (a header copy with the
 *                    real gdOffset), the end-of-stream marker (a zero sector)
 */
import { deflateSync } from 'node:zlib';
import { COMPRESSION_DEFLATE, FLAG_COMPRESS, FLAG_MARKER, FLAG_NL_DETECT, GD_AT_END, MARKER_FOOTER, MARKER_GD, MARKER_GT } from '../../../src/formats/vmdk/constants.js';
import { DEFAULT_CHECK_BYTES, encodeSparseHeader, type SparseHeader } from '../../../src/formats/vmdk/header.js';

const SECTOR = 512;
const GRAIN_SECTORS = 128;
const GTES = 512;

export interface StreamOptions {
  /** The file name written into the extent line. */
  name: string;
  cid: number;
}

function sectorOf(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(bytes.length / SECTOR) * SECTOR);
  out.set(bytes);
  return out;
}

function le32(values: Uint32Array): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const v = new DataView(out.buffer);
  values.forEach((x, i) => v.setUint32(i * 4, x, true));
  return out;
}

function marker(val: bigint, size: number, type: number): Uint8Array {
  const m = new Uint8Array(SECTOR);
  const v = new DataView(m.buffer);
  v.setBigUint64(0, val, true);
  v.setUint32(8, size, true);
  v.setUint32(12, type, true);
  return m;
}

/** The stream for `disk` (a multiple of the 64 KiB grain). */
export function vmwareStream(disk: Uint8Array, o: StreamOptions): Uint8Array {
  const grainBytes = GRAIN_SECTORS * SECTOR;
  if (disk.length % grainBytes !== 0) throw new Error('the generator takes whole grains');
  const capacity = disk.length / SECTOR;
  const grains = disk.length / grainBytes;
  const gtCount = Math.ceil(grains / GTES);
  const gdSectors = Math.ceil((gtCount * 4) / SECTOR);
  const gtSectors = (GTES * 4) / SECTOR;
  const descriptor = new TextEncoder().encode(
    '# Disk DescriptorFile\nversion=1\nencoding="UTF-8"\n' +
      `CID=${o.cid.toString(16).padStart(8, '0')}\nparentCID=ffffffff\nisNativeSnapshot="no"\ncreateType="streamOptimized"\n\n` +
      `# Extent description\nRDONLY ${capacity} SPARSE "${o.name}"\n\n# The Disk Data Base\n#DDB\n\n` +
      `ddb.adapterType = "lsilogic"\nddb.geometry.cylinders = "${Math.floor(capacity / (255 * 63))}"\nddb.geometry.heads = "255"\n` +
      'ddb.geometry.sectors = "63"\nddb.longContentID = "0123456789abcdef0123456789abcdef"\nddb.virtualHWVersion = "4"\n',
  );
  const descSectors = Math.ceil(descriptor.length / SECTOR);
  const header: SparseHeader = {
    version: 3,
    flags: FLAG_NL_DETECT | FLAG_COMPRESS | FLAG_MARKER,
    capacity: BigInt(capacity),
    grainSize: BigInt(GRAIN_SECTORS),
    descriptorOffset: 1n,
    descriptorSize: BigInt(descSectors),
    numGTEsPerGT: GTES,
    rgdOffset: 0n,
    gdOffset: GD_AT_END,
    overhead: BigInt(GRAIN_SECTORS),
    uncleanShutdown: 0,
    checkBytes: DEFAULT_CHECK_BYTES,
    compressAlgorithm: COMPRESSION_DEFLATE,
  };
  const parts: Uint8Array[] = [sectorOf(encodeSparseHeader(header)), sectorOf(descriptor)];
  let sector = 1 + descSectors;
  const pad = GRAIN_SECTORS - sector;
  parts.push(new Uint8Array(pad * SECTOR));
  sector += pad;
  const gd = new Uint32Array(gtCount);
  for (let t = 0; t < gtCount; t++) {
    const gt = new Uint32Array(GTES);
    for (let i = 0; i < GTES && t * GTES + i < grains; i++) {
      const g = t * GTES + i;
      const data = disk.subarray(g * grainBytes, (g + 1) * grainBytes);
      if (data.every((b) => b === 0)) continue;
      const z = deflateSync(data);
      const rec = new Uint8Array(12 + z.length);
      const v = new DataView(rec.buffer);
      v.setBigUint64(0, BigInt(g * GRAIN_SECTORS), true);
      v.setUint32(8, z.length, true);
      rec.set(z, 12);
      gt[i] = sector;
      const padded = sectorOf(rec);
      parts.push(padded);
      sector += padded.length / SECTOR;
    }
    if (gt.every((e) => e === 0)) continue;
    parts.push(marker(BigInt(gtSectors), 0, MARKER_GT));
    sector++;
    gd[t] = sector;
    parts.push(le32(gt));
    sector += gtSectors;
  }
  parts.push(marker(BigInt(gdSectors), 0, MARKER_GD));
  sector++;
  const gdAt = sector;
  parts.push(sectorOf(le32(gd)));
  sector += gdSectors;
  parts.push(marker(1n, 0, MARKER_FOOTER));
  parts.push(sectorOf(encodeSparseHeader({ ...header, gdOffset: BigInt(gdAt) })));
  parts.push(new Uint8Array(SECTOR)); // end-of-stream marker
  return Buffer.concat(parts);
}
