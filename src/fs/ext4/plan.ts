/**
 * Planning: Tree + options → everything but the bytes of file content. Identity (UUID, hash
 * seed) comes from the options or from a sha256 of the tree's metadata; the size is explicit
 * or found by growing a candidate until the placement fits with the wanted free share.
 */
import { createHash } from 'node:crypto';
import { resolveSourceDateEpoch } from '../../tree/normalise.js';
import type { Tree } from '../../tree/types.js';
import { VmimgError } from '../../util/errors.js';
import { BLOCKS_PER_GROUP, BLOCK_SIZE } from './constants.js';
import { fsSeed } from './csum.js';
import { makeGeometry, type Geometry } from './geometry.js';
import { assignInodes, type InodeTable } from './inodes.js';
import { inodeNeeds, place, type InodeNeeds, type Placement } from './layout.js';
import { checkInt, parseFeatures, parseUuid, type Ext4Options, type FeatureSet } from './options.js';
import { placeXattrs, xattrEntries } from './xattr.js';
import { showPath } from '../../tree/path.js';

export interface Ext4Plan {
  tree: Tree;
  features: FeatureSet;
  table: InodeTable;
  geo: Geometry;
  placement: Placement;
  journalBlocks: number;
  uuid: Uint8Array;
  hashSeed: Uint8Array;
  /** metadata_csum seed, when on. */
  seed: number | undefined;
  label: Buffer;
  time: number;
  /** Image length in bytes (blocksCount × 4096, or the explicit size rounded down to 4 KiB). */
  imageSize: number;
}

/** mke2fs's default journal size for a filesystem of `blocks` 4 KiB blocks (lib/ext2fs/mkjournal.c ext2fs_default_journal_size). */
export function defaultJournalBlocks(blocks: number): number {
  if (blocks < 2048) return -1;
  if (blocks < 32768) return 1024;
  if (blocks < 256 * 1024) return 4096;
  if (blocks < 512 * 1024) return 8192;
  if (blocks < 4096 * 1024) return 16384;
  if (blocks < 8192 * 1024) return 32768;
  if (blocks < 16384 * 1024) return 65536;
  if (blocks < 32768 * 1024) return 131072;
  return 262144;
}

/** sha256 over the tree's metadata (not file content: identity must be known before content streams). */
function treeDigest(tree: Tree, options: Ext4Options): Buffer {
  const h = createHash('sha256');
  h.update(JSON.stringify({ v: 1, label: options.label ?? '', features: options.features ?? '', journal: !!options.journal, size: options.size ?? null }));
  for (const e of tree.entries) {
    h.update(`${e.path.length}:`).update(e.path);
    h.update(`|${e.type}|${e.mode}|${e.uid}|${e.gid}|${e.mtimeNs}|${e.size}|${e.linkGroup ?? ''}|${e.rdev ? `${e.rdev.major}:${e.rdev.minor}` : ''}|`);
    if (e.symlinkTarget) h.update(`${e.symlinkTarget.length}:`).update(e.symlinkTarget);
    for (const [k, v] of e.xattrs) h.update(`${k.length}:${k}${v.length}:`).update(v);
  }
  return h.digest();
}

/** 16 digest bytes shaped as an RFC 4122 version-4 UUID. */
function uuidFrom(bytes: Uint8Array): Uint8Array {
  const u = Uint8Array.from(bytes.subarray(0, 16));
  u[6] = (u[6]! & 0x0f) | 0x40;
  u[8] = (u[8]! & 0x3f) | 0x80;
  return u;
}

/**
 * The default superblock time: the newest entry mtime that is not after `nowSec`. Later ones are
 * skipped, because e2fsck flags a superblock written "in the future" (a tree may carry 2100 or
 * 2300 mtimes); the result stays a pure function of the tree while its times are in the past.
 */
export function maxMtimeSeconds(tree: Tree, nowSec = Math.floor(Date.now() / 1000)): number {
  const limit = BigInt(nowSec) * 1_000_000_000n;
  let max: bigint | undefined;
  for (const e of tree.entries) if (e.mtimeNs <= limit && (max === undefined || e.mtimeNs > max)) max = e.mtimeNs;
  return max === undefined || max < 0n ? 0 : Number(max / 1_000_000_000n);
}

interface Attempt {
  geo: Geometry;
  placement: Placement;
  journalBlocks: number;
}

/** Plans the filesystem for `tree`; throws FS_TOO_SMALL naming the needed size when `size` is too small. */
export function planExt4(tree: Tree, options: Ext4Options = {}): Ext4Plan {
  const features = parseFeatures(options.features);
  if (options.journal) features.journal = true;
  const label = Buffer.from(options.label ?? '', 'utf8');
  if (label.length > 16) throw new VmimgError('INVALID_OPTION', `ext4 label '${options.label}' is longer than 16 bytes`, { label: options.label });
  const time = options.timestamp ?? resolveSourceDateEpoch(undefined) ?? maxMtimeSeconds(tree);
  checkInt(time, 'ext4 superblock time (--mtime / SOURCE_DATE_EPOCH, seconds)', 0, 2 ** 32 - 1);
  const digest = treeDigest(tree, options);
  const uuid = options.uuid !== undefined ? parseUuid(options.uuid, 'ext4 UUID') : uuidFrom(digest);
  const hashSeed = options.hashSeed !== undefined ? parseUuid(options.hashSeed, 'ext4 hash seed') : uuidFrom(digest.subarray(16));
  const seed = features.metadataCsum ? fsSeed(uuid) : undefined;
  const table = assignInodes(tree.entries);
  const needs: InodeNeeds[] = table.inodes.map((m) => {
    const xattrs = m.entry?.xattrs ?? new Map<string, Buffer>();
    // Named only in messages about xattrs, so only built for inodes that have some.
    const what = xattrs.size > 0 ? `'${showPath(m.entry?.path ?? Buffer.from('lost+found'))}'` : '';
    if (xattrs.size > 0 && !features.extAttr) throw new VmimgError('UNSUPPORTED_OPTION', `${what} has extended attributes but ext_attr is turned off`, { path: what });
    return inodeNeeds(m, seed !== undefined, placeXattrs(xattrEntries(xattrs, what), what));
  });
  const descSize = features.bit64 ? 64 : 32;
  const free = options.freePercent ?? 10;
  checkInt(free, 'ext4 free space percentage', 0, 95);
  const ratio = checkInt(options.inodeRatio ?? 16384, 'ext4 bytes per inode', 1024, 64 * 1024 * 1024);
  if (options.inodes !== undefined) checkInt(options.inodes, 'ext4 inode count', table.lastIno, 2 ** 32 - 1);

  const attempt = (blocks: number, headroom: number, explicit: boolean): Attempt => {
    const inodes = options.inodes ?? Math.max(table.lastIno + headroom, Math.floor((blocks * BLOCK_SIZE) / ratio));
    const geo = makeGeometry(blocks, inodes, descSize, features.sparseSuper);
    let journalBlocks = 0;
    if (features.journal) {
      journalBlocks = options.journalBlocks ?? defaultJournalBlocks(geo.blocksCount);
      if (journalBlocks < 0 && explicit) throw new VmimgError('FS_TOO_SMALL', `a journal needs a filesystem of at least ${2048 * BLOCK_SIZE} bytes, not ${options.size ?? geo.blocksCount * BLOCK_SIZE}`, { size: geo.blocksCount * BLOCK_SIZE });
      if (journalBlocks < 0) journalBlocks = 1024;
      checkInt(journalBlocks, 'ext4 journal size (blocks)', 1024, 10_240_000);
    }
    return { geo, placement: place(needs, geo, journalBlocks), journalBlocks };
  };
  /** Grows a candidate until everything fits with `freePct` of the blocks left free. */
  const autoSize = (freePct: number): Attempt => {
    const headroom = Math.ceil((table.lastIno * freePct) / 100) + 16;
    // Start near the answer (data + inode tables + a little), so placement runs once or twice.
    const data = needs.reduce((n, x) => n + x.dataBlocks + (x.xattrs.block ? 1 : 0), 0);
    const guess = (data + Math.ceil(((table.lastIno + headroom) * 256) / BLOCK_SIZE) + 64) / (1 - freePct / 100);
    let blocks = Math.max(256, Math.floor(guess / 256) * 256);
    for (let i = 0; i < 64; i++) {
      const a = attempt(blocks, headroom, false);
      const want = Math.ceil(a.placement.end / (1 - freePct / 100));
      if (a.placement.end <= a.geo.blocksCount && a.geo.blocksCount >= want) return a;
      let next = Math.max(want, blocks + 256);
      next = Math.ceil(next / 256) * 256; // whole MiB
      if (next > BLOCKS_PER_GROUP && next % BLOCKS_PER_GROUP < 256) next = Math.floor(next / BLOCKS_PER_GROUP) * BLOCKS_PER_GROUP + 256;
      blocks = next;
    }
    throw new VmimgError('INTERNAL', 'ext4 automatic sizing did not converge', {});
  };

  let chosen: Attempt;
  let imageSize: number;
  if (options.size !== undefined) {
    checkInt(options.size, 'ext4 size', 0, 2 ** 52);
    const blocks = Math.floor(options.size / BLOCK_SIZE);
    const a = blocks >= 16 ? attempt(blocks, 0, true) : undefined;
    if (!a || a.placement.end > a.geo.blocksCount) {
      const needed = autoSize(0).geo.blocksCount * BLOCK_SIZE;
      throw new VmimgError('FS_TOO_SMALL', `the tree does not fit in an ext4 filesystem of ${options.size} bytes; it fits in ${needed} bytes (${Math.ceil(needed / 1048576)} MiB, the automatic size with no free space)`, { needed, size: options.size });
    }
    chosen = a;
    imageSize = blocks * BLOCK_SIZE;
  } else {
    chosen = autoSize(free);
    imageSize = chosen.geo.blocksCount * BLOCK_SIZE;
  }
  if (chosen.geo.blocksCount >= 2 ** 32 && !features.bit64) throw new VmimgError('FS_TOO_LARGE', `a filesystem of ${chosen.geo.blocksCount * BLOCK_SIZE} bytes has ${chosen.geo.blocksCount} blocks; more than 2^32 blocks need the 64bit feature`, { blocks: chosen.geo.blocksCount });
  return { tree, features, table, ...chosen, uuid, hashSeed, seed, label, time, imageSize };
}
