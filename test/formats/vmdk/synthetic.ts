/**
 * Builders of small synthetic sparse vmdk files for tests, with any geometry QEMU accepts:
 * a VMDK4 ("KDMV") file with chosen grain size, GTEs per GT and per-grain states, and an ESX
 * COWD file. Every data sector holds its guest sector number and a byte derived from it, so a
 * read shows where each byte came from. `model` says what each grain is.
 */
import { CHECK_BYTES, COMPRESSION_NONE, FLAG_NL_DETECT, FLAG_ZERO_GRAIN, VMDK3_MAGIC } from '../../../src/formats/vmdk/constants.js';
import { encodeSparseHeader } from '../../../src/formats/vmdk/header.js';

const SECTOR = 512;

export type GrainKind = 'unallocated' | 'zero' | 'data';

export interface SyntheticSparse {
  bytes: Uint8Array;
  /** Per grain: its kind and, for data, its first sector in the file. */
  model: Array<{ kind: GrainKind; host?: number }>;
  grainSectors: number;
  capacitySectors: number;
}

/** The content of guest sector `s`: its number (u32 LE), then a byte pattern from it. */
export function sectorContent(s: number): Uint8Array {
  const b = new Uint8Array(SECTOR).fill((s * 31 + 7) & 0xff);
  new DataView(b.buffer).setUint32(0, s >>> 0, true);
  return b;
}

export interface SparseSpec {
  capacitySectors: number;
  grainSectors: number;
  gtesPerGt: number;
  zeroGrain: boolean;
  /** Kind of each grain (length ≥ grains; extra ignored). */
  kinds: GrainKind[];
  /** Host order of the data grains: a permutation of their indices among data grains (default: guest order). */
  order?: number[];
  cid?: number;
}

/** A VMDK4 file with the primary GD at sector 21 and no redundant GD, like a qemu-img file without RGD. */
export function buildVmdk4(spec: SparseSpec): SyntheticSparse {
  const grains = Math.ceil(spec.capacitySectors / spec.grainSectors);
  const gtCount = Math.ceil(grains / spec.gtesPerGt);
  const gtSectors = Math.ceil((spec.gtesPerGt * 4) / SECTOR);
  const gdSectors = Math.ceil((gtCount * 4) / SECTOR);
  const gdOffset = 21;
  const firstGt = gdOffset + gdSectors;
  const overhead = Math.ceil((firstGt + gtCount * gtSectors) / spec.grainSectors) * spec.grainSectors;
  const dataGrains = spec.kinds.slice(0, grains).flatMap((k, g) => (k === 'data' ? [g] : []));
  const order = spec.order ?? dataGrains.map((_, i) => i);
  const model: SyntheticSparse['model'] = spec.kinds.slice(0, grains).map((kind) => ({ kind }));
  order.forEach((which, slot) => (model[dataGrains[which]!]!.host = overhead + slot * spec.grainSectors));
  const file = new Uint8Array((overhead + dataGrains.length * spec.grainSectors) * SECTOR);
  const version = spec.zeroGrain ? 2 : 1;
  file.set(
    encodeSparseHeader({
      version,
      flags: FLAG_NL_DETECT | (spec.zeroGrain ? FLAG_ZERO_GRAIN : 0),
      capacity: BigInt(spec.capacitySectors),
      grainSize: BigInt(spec.grainSectors),
      descriptorOffset: 1n,
      descriptorSize: 20n,
      numGTEsPerGT: spec.gtesPerGt,
      rgdOffset: 0n,
      gdOffset: BigInt(gdOffset),
      overhead: BigInt(overhead),
      uncleanShutdown: 0,
      checkBytes: CHECK_BYTES,
      compressAlgorithm: COMPRESSION_NONE,
    }),
  );
  file.set(new TextEncoder().encode(descriptorText(spec.cid ?? 0x5eed, 'monolithicSparse', spec.capacitySectors, 'synthetic.vmdk')), SECTOR);
  const dv = new DataView(file.buffer);
  for (let t = 0; t < gtCount; t++) dv.setUint32(gdOffset * SECTOR + t * 4, firstGt + t * gtSectors, true);
  for (const [g, m] of model.entries()) {
    const gte = m.kind === 'zero' ? 1 : m.kind === 'data' ? m.host! : 0;
    const t = Math.floor(g / spec.gtesPerGt);
    dv.setUint32((firstGt + t * gtSectors) * SECTOR + (g % spec.gtesPerGt) * 4, gte, true);
    if (m.kind === 'data') {
      for (let i = 0; i < spec.grainSectors; i++) file.set(sectorContent(g * spec.grainSectors + i), (m.host! + i) * SECTOR);
    }
  }
  return { bytes: file, model, grainSectors: spec.grainSectors, capacitySectors: spec.capacitySectors };
}

export function descriptorText(cid: number, createType: string, sectors: number, name: string): string {
  return `# Disk DescriptorFile\nversion=1\nCID=${cid.toString(16)}\nparentCID=ffffffff\ncreateType="${createType}"\n\n# Extent description\nRW ${sectors} SPARSE "${name}"\n`;
}

/** A COWD (ESX vmfsSparse) file: 4096 GTEs per GT, the given grains allocated in guest order. */
export function buildCowd(capacitySectors: number, granularity: number, dataGrains: number[], cid = 0xabcdef01): SyntheticSparse {
  const gtes = 4096;
  const grains = Math.ceil(capacitySectors / granularity);
  const l1Size = Math.ceil(grains / gtes);
  const l1Offset = 4;
  const gtSectors = (gtes * 4) / SECTOR;
  const firstGt = l1Offset + Math.ceil((l1Size * 4) / SECTOR);
  const dataStart = firstGt + l1Size * gtSectors;
  const file = new Uint8Array((dataStart + dataGrains.length * granularity) * SECTOR);
  const dv = new DataView(file.buffer);
  dv.setUint32(0, VMDK3_MAGIC, false);
  for (const [i, v] of [1, 3, capacitySectors, granularity, l1Offset, l1Size, dataStart + dataGrains.length * granularity].entries()) dv.setUint32(4 + i * 4, v, true);
  // QEMU reads CID and parentCID at byte 0x200 of a sparse file, whatever its kind.
  file.set(new TextEncoder().encode(`# COWD\nCID=${cid.toString(16)}\nparentCID=ffffffff\n`), SECTOR);
  for (let t = 0; t < l1Size; t++) dv.setUint32(l1Offset * SECTOR + t * 4, firstGt + t * gtSectors, true);
  const model: SyntheticSparse['model'] = Array.from({ length: grains }, () => ({ kind: 'unallocated' as GrainKind }));
  dataGrains.forEach((g, slot) => {
    const host = dataStart + slot * granularity;
    model[g] = { kind: 'data', host };
    dv.setUint32((firstGt + Math.floor(g / gtes) * gtSectors) * SECTOR + (g % gtes) * 4, host, true);
    for (let i = 0; i < granularity; i++) file.set(sectorContent(g * granularity + i), (host + i) * SECTOR);
  });
  return { bytes: file, model, grainSectors: granularity, capacitySectors };
}
