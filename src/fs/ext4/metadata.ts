/**
 * Group metadata from a plan: the used-block map, per-group block and inode bitmaps with their
 * checksums (checksums.rst "Bitmaps": crc32c(fs seed, bitmap) over clusters_per_group/8 and
 * inodes_per_group/8 bytes), descriptors, and the superblock fields that count free space.
 * Bits past the end of the filesystem and past inodes_per_group are set, as e2fsck requires.
 */
import { BLOCKS_PER_GROUP, BLOCK_SIZE, BG_INODE_ZEROED, COMPAT_DIR_INDEX, COMPAT_EXT_ATTR, COMPAT_HAS_JOURNAL, INCOMPAT_64BIT, INCOMPAT_EXTENTS, INCOMPAT_FILETYPE, INCOMPAT_FLEX_BG, RO_COMPAT_DIR_NLINK, RO_COMPAT_EXTRA_ISIZE, RO_COMPAT_HUGE_FILE, RO_COMPAT_LARGE_FILE, RO_COMPAT_METADATA_CSUM, RO_COMPAT_SPARSE_SUPER } from './constants.js';
import { ext4Crc } from './csum.js';
import { groupBlocks } from './geometry.js';
import type { Ext4Plan } from './plan.js';
import type { GroupDesc, SuperFields } from './super.js';

export interface GroupMetadata {
  blockBitmaps: Buffer[];
  inodeBitmaps: Buffer[];
  descs: GroupDesc[];
  freeBlocks: number;
  freeInodes: number;
}

function setRange(bits: Uint8Array, from: number, to: number): void {
  for (let i = from; i < to; i++) bits[i >> 3]! |= 1 << (i & 7);
}

/** Marks every block the plan uses (reserved copies, bitmaps, tables, journal, inode blocks). */
function usedBlocks(plan: Ext4Plan): Uint8Array {
  const { geo, placement: p } = plan;
  const bits = new Uint8Array(geo.groups * (BLOCKS_PER_GROUP / 8));
  const mark = (start: number, length: number): void => setRange(bits, start, start + length);
  for (const g of geo.backupGroups) mark(g * BLOCKS_PER_GROUP, 1 + geo.gdtBlocks);
  for (const b of p.blockBitmaps) mark(b, 1);
  for (const b of p.inodeBitmaps) mark(b, 1);
  for (const b of p.inodeTables) mark(b, geo.itableBlocks);
  for (const r of p.journal) mark(r.start, r.length);
  for (const b of p.journalNodes) mark(b, 1);
  for (const i of p.inodes) {
    for (const r of i.runs) mark(r.start, r.length);
    for (const b of i.nodeBlocks) mark(b, 1);
    if (i.xattrBlock !== undefined) mark(i.xattrBlock, 1);
  }
  mark(geo.blocksCount, geo.groups * BLOCKS_PER_GROUP - geo.blocksCount); // padding of the last group
  return bits;
}

function popcount(bytes: Uint8Array): number {
  let n = 0;
  for (let b of bytes) {
    while (b) {
      b &= b - 1;
      n++;
    }
  }
  return n;
}

export function groupMetadata(plan: Ext4Plan): GroupMetadata {
  const { geo, placement: p, seed } = plan;
  const used = usedBlocks(plan);
  const ipg = geo.inodesPerGroup;
  const lastIno = plan.table.lastIno;
  const dirsPerGroup = new Array<number>(geo.groups).fill(0);
  for (const i of p.inodes) if (i.model.kind === 'dir') dirsPerGroup[Math.floor((i.model.ino - 1) / ipg)]!++;
  const out: GroupMetadata = { blockBitmaps: [], inodeBitmaps: [], descs: [], freeBlocks: 0, freeInodes: 0 };
  for (let g = 0; g < geo.groups; g++) {
    const bb = Buffer.alloc(BLOCK_SIZE);
    bb.set(used.subarray(g * BLOCK_SIZE, (g + 1) * BLOCK_SIZE));
    const freeBlocks = groupBlocks(geo, g) - (popcount(bb) - (BLOCKS_PER_GROUP - groupBlocks(geo, g)));
    const ib = Buffer.alloc(BLOCK_SIZE);
    const usedInodes = Math.max(0, Math.min(ipg, lastIno - g * ipg));
    setRange(ib, 0, usedInodes);
    setRange(ib, ipg, BLOCK_SIZE * 8);
    out.blockBitmaps.push(bb);
    out.inodeBitmaps.push(ib);
    out.descs.push({
      blockBitmap: p.blockBitmaps[g]!,
      inodeBitmap: p.inodeBitmaps[g]!,
      inodeTable: p.inodeTables[g]!,
      freeBlocks,
      freeInodes: ipg - usedInodes,
      usedDirs: dirsPerGroup[g]!,
      flags: seed !== undefined ? BG_INODE_ZEROED : 0,
      blockBitmapCsum: seed !== undefined ? ext4Crc(seed, bb.subarray(0, BLOCKS_PER_GROUP / 8)) : 0,
      inodeBitmapCsum: seed !== undefined ? ext4Crc(seed, ib.subarray(0, ipg / 8)) : 0,
      itableUnused: seed !== undefined ? ipg - usedInodes : 0,
    });
    out.freeBlocks += freeBlocks;
    out.freeInodes += ipg - usedInodes;
  }
  return out;
}

/** Feature words of the plan (super.rst "s_feature_*"). */
export function featureWords(plan: Ext4Plan): { compat: number; incompat: number; roCompat: number } {
  const f = plan.features;
  let compat = 0;
  if (f.journal) compat |= COMPAT_HAS_JOURNAL;
  if (f.extAttr) compat |= COMPAT_EXT_ATTR;
  if (f.dirIndex) compat |= COMPAT_DIR_INDEX;
  let incompat = INCOMPAT_FILETYPE | INCOMPAT_EXTENTS | INCOMPAT_FLEX_BG;
  if (f.bit64) incompat |= INCOMPAT_64BIT;
  let roCompat = 0;
  if (f.sparseSuper) roCompat |= RO_COMPAT_SPARSE_SUPER;
  if (f.largeFile) roCompat |= RO_COMPAT_LARGE_FILE;
  if (f.hugeFile) roCompat |= RO_COMPAT_HUGE_FILE;
  if (f.dirNlink) roCompat |= RO_COMPAT_DIR_NLINK;
  if (f.extraIsize) roCompat |= RO_COMPAT_EXTRA_ISIZE;
  if (f.metadataCsum) roCompat |= RO_COMPAT_METADATA_CSUM;
  return { compat, incompat, roCompat };
}

/** Superblock fields except the journal backup. */
export function superFields(plan: Ext4Plan, meta: GroupMetadata): SuperFields {
  const { geo } = plan;
  let logFlex = 4; // mke2fs's default flex group of 16
  while (1 << logFlex < geo.groups && logFlex < 31) logFlex++;
  return {
    inodesCount: geo.inodesPerGroup * geo.groups,
    blocksCount: geo.blocksCount,
    freeBlocks: meta.freeBlocks,
    freeInodes: meta.freeInodes,
    inodesPerGroup: geo.inodesPerGroup,
    time: plan.time,
    ...featureWords(plan),
    uuid: plan.uuid,
    label: plan.label,
    hashSeed: plan.hashSeed, // also without dir_index, as mke2fs: tune2fs -O dir_index then finds a complete setup
    descSize: geo.descSize,
    logGroupsPerFlex: logFlex,
    csum: plan.seed !== undefined,
  };
}
