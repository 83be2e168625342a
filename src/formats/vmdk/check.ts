/**
 * `check` for vmdk: qemu-img 7.2's vmdk_co_check first, then checks of vmimg's own where QEMU
 * is silent.
 *
 * QEMU's walk (block/vmdk.c vmdk_co_check): sector s from 0 to the disk's end, stepping by the
 * current extent's grain (a flat extent's whole size); for each s the grain's host offset is
 * looked up and, if allocated, compared with the extent file's length rounded up to a sector.
 * An offset at or past it prints "ERROR: cluster offset for sector S points after EOF" and the
 * check fails (qemu-img: "Check failed: Invalid argument", status 1, nothing on stdout); a
 * lookup failure (GD index past the directory) prints "ERROR: could not get cluster_offset for
 * sector S" and fails ("Operation not permitted"). Repairs are not supported ("This image
 * format does not support checks", status 63).
 *
 * vmimg then checks each sparse extent file's structure and counts every problem as a
 * corruption (qemu-img would report "No errors were found" for these):
 *   - the grain directory, the redundant one and every grain table they point at lie within
 *     the file;
 *   - no two of these overlap each other or a grain, the header, the embedded descriptor or the
 *     stream footer, and no two grains overlap (a compressed grain spans its marker and data,
 *     rounded up to a sector; a grain table is GTEs × 4 bytes).
 * Grains are collected as 32-bit sector numbers (4 bytes each) and sorted; past MAX_GRAINS
 * grains in one extent the overlap pass is skipped with a note.
 */
import { VmimgError } from '../../util/errors.js';
import { SECTOR_SIZE } from '../../util/units.js';
import { emptyCheckResult, type CheckFix, type CheckResult } from '../image.js';
import type { VmdkExtent } from './extents.js';
import type { VmdkImage } from './image.js';
import { denied } from './image.js';
import { GRAIN_MARKER_BYTES, GTE_ZEROED, readU32Table, type MetadataRegion, type SparseExtent } from './sparse-extent.js';

/** Largest number of grains of one extent the overlap pass collects (64 MiB of sector numbers). */
const MAX_GRAINS = 1 << 24;

export async function checkVmdk(image: VmdkImage, fix: CheckFix, report: (line: string) => void): Promise<CheckResult> {
  if (fix.leaks || fix.errors) {
    throw new VmimgError('UNSUPPORTED_IMAGE', 'This image format does not support checks', { format: 'vmdk', status: 63 });
  }
  await qemuWalk(image, report);
  const result = emptyCheckResult();
  for (const e of image.extents) {
    if (e.kind === 'sparse') result.corruptions += await structureCheck(e, report);
  }
  return result;
}

async function qemuWalk(image: VmdkImage, report: (line: string) => void): Promise<void> {
  const total = image.virtualSize / SECTOR_SIZE;
  let index = 0;
  for (let sector = 0; sector < total; ) {
    while (sector >= endOf(image.extents[index]!)) index++;
    const e = image.extents[index]!;
    if (e.kind === 'denied') throw denied(e);
    const fileSectors = Math.ceil((await (await image.extentStorage(index)).size()) / SECTOR_SIZE);
    if (e.kind === 'flat') {
      if (BigInt.asUintN(64, e.flatStart) >= BigInt(fileSectors * SECTOR_SIZE)) pastEof(sector, report);
      sector += e.sectors;
      continue;
    }
    sector = await walkSparse(e, sector, fileSectors, report);
  }
}

function endOf(e: VmdkExtent): number {
  return e.startSector + e.sectors;
}

/** Walks one sparse extent from guest `sector`; returns the first walk position past it. */
async function walkSparse(e: VmdkExtent & { kind: 'sparse' }, sector: number, fileSectors: number, report: (line: string) => void): Promise<number> {
  const sp = e.sparse;
  const step = sp.geometry.grainSectors;
  const end = endOf(e);
  while (sector < end) {
    const rel = sector - e.startSector;
    let state;
    try {
      state = await sp.grainAt(rel, end - e.startSector);
    } catch (err) {
      if (!(err instanceof VmimgError) || err.code !== 'CORRUPT_IMAGE') throw err;
      report(`ERROR: could not get cluster_offset for sector ${sector}`);
      throw new VmimgError('CORRUPT_IMAGE', `Operation not permitted (${err.message})`, { sector });
    }
    if (state.skipTo !== undefined) {
      // Every walk position before the GD entry's end is unallocated: jump to the first one after.
      sector += Math.max(1, Math.ceil((state.skipTo - rel) / step)) * step;
      continue;
    }
    if (state.kind === 'allocated' && state.sector >= fileSectors) pastEof(sector, report);
    sector += step;
  }
  return sector;
}

function pastEof(sector: number, report: (line: string) => void): never {
  report(`ERROR: cluster offset for sector ${sector} points after EOF`);
  throw new VmimgError('CORRUPT_IMAGE', 'Invalid argument', { sector });
}

/** A byte range the overlap sweep tracks. */
interface Region {
  offset: number;
  end: number;
  what: string;
}

/** Most problems one extent reports line by line (all are counted). */
const MAX_REPORTED = 1000;

/** vmimg's structure checks of one sparse extent file; returns the number of problems found. */
async function structureCheck(e: VmdkExtent & { kind: 'sparse' }, report: (line: string) => void): Promise<number> {
  const sp = e.sparse;
  const g = sp.geometry;
  const file = `'${sp.storage.name}'`;
  let problems = 0;
  const problem = (text: string): void => {
    if (++problems <= MAX_REPORTED) report(`ERROR: ${text} in ${file}`);
  };
  const fixed: Region[] = g.metadata.map((m: MetadataRegion) => ({ offset: m.offset, end: m.offset + m.length, what: m.what }));
  const gdBytes = g.l1Size * 4;
  const tables: Uint32Array[] = [];
  let primary: Uint32Array = new Uint32Array(0);
  for (const [what, at] of [['grain directory', g.l1OffsetBytes], ['redundant grain directory', g.rgdOffsetBytes]] as const) {
    if (what === 'redundant grain directory' && at === 0) continue;
    if (at + gdBytes > sp.fileLength) problem(`the ${what} at byte ${at} (${g.l1Size} entries) extends past the end of the file (${sp.fileLength} bytes)`);
    fixed.push({ offset: at, end: at + gdBytes, what: `the ${what}` });
    const { unique, repeats } = await directoryTables(sp, at);
    if (repeats > 0) problem(`${repeats} entries of the ${what} point at grain tables that other entries already use`);
    tables.push(unique);
    if (what === 'grain directory') primary = unique;
  }
  const gtBytes = g.gtesPerGt * 4;
  const gtSectors = concatSorted(tables);
  for (const gt of gtSectors) {
    if (gt * SECTOR_SIZE + gtBytes > sp.fileLength) problem(`the grain table at byte ${gt * SECTOR_SIZE} extends past the end of the file (${sp.fileLength} bytes)`);
  }
  const grains = await collectGrains(sp, primary);
  if (!grains) {
    report(`note: ${file} has more than ${MAX_GRAINS} grains; vmimg skipped its overlap check`);
    return problems;
  }
  fixed.sort((a, b) => a.offset - b.offset);
  // One sweep over three sorted sources; `owner` is the region reaching furthest so far.
  let owner: Region | undefined;
  let fi = 0;
  let ti = 0;
  let gi = 0;
  for (;;) {
    const f = fixed[fi];
    const t = ti < gtSectors.length ? gtSectors[ti]! * SECTOR_SIZE : Infinity;
    const gr = gi < grains.length ? grains[gi]! * SECTOR_SIZE : Infinity;
    let next: Region;
    if (f && f.offset <= t && f.offset <= gr) {
      next = f;
      fi++;
    } else if (t !== Infinity && t <= gr) {
      next = { offset: t, end: t + gtBytes, what: `the grain table at byte ${t}` };
      ti++;
    } else if (gr !== Infinity) {
      next = { offset: gr, end: gr + (await grainLength(sp, gr)), what: `the grain at byte ${gr}` };
      gi++;
    } else {
      break;
    }
    if (next.end <= next.offset) continue;
    if (owner && next.offset < owner.end) problem(`${next.what} overlaps ${owner.what}`);
    if (!owner || next.end > owner.end) owner = next;
  }
  if (problems > MAX_REPORTED) report(`ERROR: ${problems - MAX_REPORTED} further problems in ${file} not listed`);
  return problems;
}

const GD_CHUNK = 16384;

/** The distinct non-zero entries (grain table sectors) of the directory at `at`, sorted, and how many entries repeat one. */
async function directoryTables(sp: SparseExtent, at: number): Promise<{ unique: Uint32Array; repeats: number }> {
  let all = new Uint32Array(Math.min(sp.geometry.l1Size, GD_CHUNK));
  let n = 0;
  for (let first = 0; first < sp.geometry.l1Size; first += GD_CHUNK) {
    const chunk = await readU32Table(sp.storage, sp.fileLength, at + first * 4, Math.min(GD_CHUNK, sp.geometry.l1Size - first));
    for (const v of chunk) {
      if (v === 0) continue;
      if (n === all.length) {
        const grown = new Uint32Array(Math.min(sp.geometry.l1Size, n * 2));
        grown.set(all);
        all = grown;
      }
      all[n++] = v;
    }
  }
  const sorted = all.subarray(0, n).sort();
  let u = 0;
  for (let i = 0; i < n; i++) if (i === 0 || sorted[i] !== sorted[i - 1]) sorted[u++] = sorted[i]!;
  return { unique: sorted.slice(0, u), repeats: n - u };
}

function concatSorted(parts: Uint32Array[]): Uint32Array {
  const out = new Uint32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out.sort();
}

/** Bytes a grain occupies in its file: a whole grain, or a compressed grain's marker and data. */
async function grainLength(sp: SparseExtent, at: number): Promise<number> {
  if (!sp.geometry.compressed) return sp.grainBytes;
  if (!sp.geometry.hasMarker) return SECTOR_SIZE;
  const size = await sp.markerSize(at);
  return Math.ceil((GRAIN_MARKER_BYTES + size) / SECTOR_SIZE) * SECTOR_SIZE;
}

/** Sorted sectors of the grains in the grain tables `gts` that start inside the file, or undefined past MAX_GRAINS. */
async function collectGrains(sp: SparseExtent, gts: Uint32Array): Promise<Uint32Array | undefined> {
  const g = sp.geometry;
  let out = new Uint32Array(1024);
  let n = 0;
  for (const gt of gts) {
    const table = await sp.grainTable(gt);
    if (table.allZero) continue;
    for (const gte of table.entries) {
      if (gte === 0 || (gte === GTE_ZEROED && g.zeroGrain) || gte * SECTOR_SIZE >= sp.fileLength) continue;
      if (n === out.length) {
        if (n >= MAX_GRAINS) return undefined;
        const grown = new Uint32Array(Math.min(MAX_GRAINS, n * 2));
        grown.set(out);
        out = grown;
      }
      out[n++] = gte;
    }
  }
  return out.subarray(0, n).sort();
}
