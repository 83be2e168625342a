/**
 * A read-only ext4 (and ext2/ext3) reader over any BlockSource — a raw file, or any image format
 * through its chain — for `vmimg rootfs verify` and `vmimg fs` (docs/ext4-read.md). Structures
 * per the kernel's Documentation/filesystems/ext4 (super.rst, group_descr.rst, inodes.rst,
 * ifork.rst, directory.rst, attributes.rst, checksums.rst).
 *
 * Safety contract: the image is untrusted. Every count, size and block number read from it is
 * checked against the filesystem's geometry before it sizes a read or a loop (superblock.ts,
 * mapping.ts, dir.ts, xattr.ts); group descriptors are read one at a time as needed; file data
 * streams in chunks of at most READ_CHUNK; reads are capped by the caller (FS_TOO_LARGE);
 * symlinks are followed at most 40 times and never leave the filesystem's root. With
 * metadata_csum the superblock, group descriptor, inode, extent block, directory block and xattr
 * block checksums are verified. Failures are CORRUPT_IMAGE naming the structure and its number;
 * features the reader cannot interpret are UNSUPPORTED_IMAGE naming them.
 */
import { VmimgError } from '../../../util/errors.js';
import type { BlockSource } from '../../packagefs/source.js';
import { ROOT_INO } from '../constants.js';
import { groupDescCsum, inodeSeed } from '../csum.js';
import { parseDirBlock, parseEntries, type DirEntry } from './dir.js';
import { corrupt } from './errors.js';
import { decodeInode, EA_INODE_FL, EXTENTS_FL, INDEX_FL, INLINE_DATA_FL, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type Ext4Inode } from './inode.js';
import { fileRuns, type MapContext } from './mapping.js';
import { INCOMPAT_EA_INODE, INCOMPAT_INLINE_DATA, parseSuperblock, type Geometry } from './superblock.js';
import { MAX_XATTR_VALUE, parseInodeXattrs, parseXattrBlock, xattrName, type EaInodeReader, type RawXattr } from './xattr.js';

export { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type Ext4Inode, type DirEntry };

export const MAX_SYMLINKS = 40;
/** Largest directory the reader lists (bytes of directory data). */
export const MAX_DIR_BYTES = 64 * 1024 * 1024;
/** Largest symlink target (PATH_MAX - 1). */
const MAX_LINK = 4095;
/** File data is read and yielded in chunks of at most this many bytes. */
const READ_CHUNK = 1024 * 1024;
/** Group descriptors kept decoded. */
const GROUP_CACHE = 4096;
/** Directory listings kept for lookups (by inode), and the entries they may hold in all. */
const DIR_CACHE = 16;
const DIR_CACHE_ENTRIES = 200_000;
/** Components one lookup may walk, symlink expansions included (4095-byte targets × 40 hops fit). */
const MAX_LOOKUP_STEPS = 1 << 17;

export interface LookupResult {
  inode: Ext4Inode;
  /** The canonical path (symlinks resolved) inside the filesystem. */
  path: string;
}

export class Ext4Reader {
  readonly geometry: Geometry;
  readonly blockSize: number;
  readonly inodeSize: number;
  readonly inodesPerGroup: number;
  readonly inodesCount: number;
  readonly blocksCount: number;
  readonly groups: number;
  readonly #source: BlockSource;
  readonly #tables = new Map<number, number>();
  /** Recent directory listings for lookup, most recent last. */
  readonly #dirs = new Map<number, DirEntry[]>();

  private constructor(source: BlockSource, g: Geometry) {
    this.#source = source;
    this.geometry = g;
    this.blockSize = g.blockSize;
    this.inodeSize = g.inodeSize;
    this.inodesPerGroup = g.inodesPerGroup;
    this.inodesCount = g.inodesCount;
    this.blocksCount = g.blocksCount;
    this.groups = g.groups;
  }

  /** Opens the filesystem on `source`: superblock checks (and its checksum), nothing else yet. */
  static async open(source: BlockSource): Promise<Ext4Reader> {
    if (source.size < 2048) throw corrupt(`image of ${source.size} bytes is too small to hold a superblock`, { structure: 'superblock' });
    const sb = Buffer.from(await source.read(1024, 1024));
    const reader = new Ext4Reader(source, parseSuperblock(sb, source.size));
    await reader.#inodeTable(0);
    return reader;
  }

  async #bytes(offset: number, length: number): Promise<Buffer> {
    return Buffer.from(await this.#source.read(offset, length));
  }

  /** `count` blocks from block `n`, checked to lie inside the filesystem. */
  async readBlocks(n: number, count = 1): Promise<Buffer> {
    if (!Number.isSafeInteger(n) || n < 0 || count < 1 || n + count > this.blocksCount) throw corrupt(`block ${n} (+${count}) is outside the filesystem (${this.blocksCount} blocks)`, { structure: 'block', block: n });
    return this.#bytes(n * this.blockSize, count * this.blockSize);
  }

  /**
   * Byte offset of group `g`'s descriptor: in the table after the superblock, or with meta_bg
   * (group_descr.rst "meta_bg") past s_first_meta_bg, in the first group of its meta group, after
   * that group's superblock backup if it has one.
   */
  #descOffset(g: number): number {
    const { descSize, gdtOffset, firstMetaBg, blocksPerGroup, firstDataBlock } = this.geometry;
    const perBlock = this.blockSize / descSize;
    const meta = Math.floor(g / perBlock);
    if (meta < firstMetaBg) return gdtOffset + g * descSize;
    const first = meta * perBlock;
    const block = firstDataBlock + first * blocksPerGroup + (this.geometry.hasSuper(first) ? 1 : 0);
    if (block >= this.blocksCount) throw corrupt(`group descriptor ${g}: meta_bg block ${block} lies outside the filesystem`, { structure: 'group descriptor', group: g });
    return block * this.blockSize + (g % perBlock) * descSize;
  }

  /** Group `g`'s inode table block, from its descriptor (checksum verified with metadata_csum). */
  async #inodeTable(g: number): Promise<number> {
    const cached = this.#tables.get(g);
    if (cached !== undefined) return cached;
    const { descSize, bit64, csum, seed, inodesPerGroup, inodeSize, firstDataBlock } = this.geometry;
    const d = await this.#bytes(this.#descOffset(g), descSize);
    if (csum && groupDescCsum(seed, g, d) !== d.readUInt16LE(0x1e)) throw corrupt(`group descriptor ${g} checksum mismatch`, { structure: 'group descriptor', group: g });
    const table = d.readUInt32LE(8) + (bit64 ? d.readUInt32LE(0x28) * 2 ** 32 : 0);
    if (table <= firstDataBlock || table + Math.ceil((inodesPerGroup * inodeSize) / this.blockSize) > this.blocksCount) {
      throw corrupt(`group descriptor ${g}: inode table at block ${table} lies outside the filesystem`, { structure: 'group descriptor', group: g });
    }
    if (this.#tables.size >= GROUP_CACHE) this.#tables.clear();
    this.#tables.set(g, table);
    return table;
  }

  async inode(ino: number): Promise<Ext4Inode> {
    if (!Number.isSafeInteger(ino) || ino < 1 || ino > this.inodesCount) throw corrupt(`inode number ${ino} is out of range 1..${this.inodesCount}`, { structure: 'inode', ino });
    const g = Math.floor((ino - 1) / this.inodesPerGroup);
    const idx = (ino - 1) % this.inodesPerGroup;
    const table = await this.#inodeTable(g);
    const raw = await this.#bytes(table * this.blockSize + idx * this.inodeSize, this.inodeSize);
    const inode = decodeInode(ino, raw, this.geometry.csum ? this.geometry.seed : undefined, this.blockSize);
    if (inode.mode === 0 && ino !== ROOT_INO && ino >= 11) throw corrupt(`inode ${ino} is not in use (mode 0)`, { structure: 'inode', ino });
    return inode;
  }

  #mapContext(inode: Ext4Inode): MapContext {
    return {
      blockSize: this.blockSize,
      blocksCount: this.blocksCount,
      readBlocks: (n, c) => this.readBlocks(n, c),
      ...(this.geometry.csum ? { inodeSeed: inodeSeed(this.geometry.seed, inode.ino, inode.generation) } : {}),
    };
  }

  #eaInode(): EaInodeReader | undefined {
    if (!(this.geometry.incompat & INCOMPAT_EA_INODE)) return undefined;
    return async (ino, size) => {
      const node = await this.inode(ino);
      if (!(node.flags & EA_INODE_FL) || node.size !== size) throw corrupt(`inode ${ino} is not an EA inode holding ${size} bytes`, { structure: 'xattr', ino });
      return this.readAll(node, MAX_XATTR_VALUE);
    };
  }

  /** Raw xattr entries of an inode: in-inode first, then its xattr block. */
  async #rawXattrs(inode: Ext4Inode, withBlock = true): Promise<RawXattr[]> {
    const out: RawXattr[] = [];
    await parseInodeXattrs(inode.xattrArea, inode.ino, this.#eaInode(), out);
    if (withBlock && inode.fileAcl !== 0) {
      const block = await this.readBlocks(inode.fileAcl);
      await parseXattrBlock(block, inode.fileAcl, inode.ino, this.geometry.csum ? this.geometry.seed : undefined, this.#eaInode(), out);
    }
    return out;
  }

  /** Extended attributes by full name (user.x, security.selinux, system.posix_acl_access, ...). */
  async xattrs(inode: Ext4Inode): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>();
    for (const x of await this.#rawXattrs(inode)) {
      const name = xattrName(x);
      if (name !== undefined && !(x.index === 7 && name === 'system.data')) out.set(name, x.value);
    }
    return out;
  }

  /** The bytes past i_block of an inline-data inode (the system.data xattr). */
  async #inlineTail(inode: Ext4Inode): Promise<Buffer> {
    if (!(this.geometry.incompat & INCOMPAT_INLINE_DATA)) throw corrupt(`inode ${inode.ino} has inline data but the filesystem has no inline_data feature`, { structure: 'inode', ino: inode.ino });
    const hit = (await this.#rawXattrs(inode, false)).find((x) => x.index === 7 && x.name.toString() === 'data');
    return hit?.value ?? Buffer.alloc(0);
  }

  /**
   * The file's bytes in order as chunks of at most 1 MiB; a size beyond `max` is FS_TOO_LARGE
   * before anything is read (bounds memory for callers that collect).
   */
  async *read(inode: Ext4Inode, max = Number.MAX_SAFE_INTEGER): AsyncGenerator<Buffer> {
    if (inode.size > max) throw new VmimgError('FS_TOO_LARGE', `ext4: inode ${inode.ino} is ${inode.size} bytes, more than the ${max} this read allows`, { ino: inode.ino, size: inode.size, max });
    yield* this.#range(inode, 0, inode.size);
  }

  /** Bytes [offset, offset+length) of the file (clipped to its size), streamed. */
  async *#range(inode: Ext4Inode, offset: number, length: number): AsyncGenerator<Buffer> {
    const end = Math.min(inode.size, offset + length);
    if (offset >= end) return;
    if (inode.flags & INLINE_DATA_FL) {
      if (inode.size > 60 + MAX_XATTR_VALUE) throw corrupt(`inode ${inode.ino}: inline data of ${inode.size} bytes cannot fit an inode`, { structure: 'inode', ino: inode.ino });
      const all = Buffer.concat([inode.iblock, await this.#inlineTail(inode)]);
      if (all.length < inode.size) throw corrupt(`inode ${inode.ino}: inline data holds ${all.length} bytes, less than its size ${inode.size}`, { structure: 'inode', ino: inode.ino });
      yield all.subarray(offset, end);
      return;
    }
    const bs = this.blockSize;
    const perChunk = READ_CHUNK / bs;
    for await (const run of fileRuns(this.#mapContext(inode), inode)) {
      const runStart = run.logical * bs;
      const runEnd = Math.min((run.logical + run.count) * bs, end);
      if (runEnd <= offset) continue;
      for (let pos = Math.max(runStart, Math.floor(offset / bs) * bs); pos < runEnd; ) {
        const blocks = Math.min(Math.ceil((runEnd - pos) / bs), perChunk);
        const data = run.zero ? Buffer.alloc(blocks * bs) : await this.readBlocks(run.physical + (pos - runStart) / bs, blocks);
        yield data.subarray(Math.max(offset, pos) - pos, Math.min(runEnd, pos + blocks * bs) - pos);
        pos += blocks * bs;
      }
      if (runEnd >= end) return;
    }
  }

  /** Bytes [offset, offset+length) of the file, clipped to its size; length ≤ 16 MiB. */
  async readRange(inode: Ext4Inode, offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0 || length > 16 * 1024 * 1024) {
      throw new VmimgError('OUT_OF_BOUNDS', `ext4: read of ${length} bytes at ${offset} is out of range (at most 16 MiB)`, { offset, length });
    }
    const parts: Buffer[] = [];
    for await (const p of this.#range(inode, offset, length)) parts.push(p);
    return Buffer.concat(parts);
  }

  /** The whole file in memory; FS_TOO_LARGE past `max` bytes. */
  async readAll(inode: Ext4Inode, max: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const p of this.read(inode, max)) parts.push(p);
    return Buffer.concat(parts);
  }

  /** A directory's entries, "." and ".." included (as stored), in on-disk order. */
  async readDir(inode: Ext4Inode): Promise<DirEntry[]> {
    if ((inode.mode & S_IFMT) !== S_IFDIR) throw new VmimgError('FS_WRONG_TYPE', `ext4: inode ${inode.ino} is not a directory`, { ino: inode.ino });
    const ctx = {
      ino: inode.ino,
      blockSize: this.blockSize,
      inodesCount: this.inodesCount,
      indexed: (inode.flags & INDEX_FL) !== 0,
      ...(this.geometry.csum ? { inodeSeed: inodeSeed(this.geometry.seed, inode.ino, inode.generation) } : {}),
    };
    const out: DirEntry[] = [];
    if (inode.flags & INLINE_DATA_FL) {
      // Inline directory (inline_data.rst): i_block holds the parent's inode number, then records.
      out.push({ name: Buffer.from('.'), ino: inode.ino, type: 2 }, { name: Buffer.from('..'), ino: inode.iblock.readUInt32LE(0), type: 2 });
      parseEntries(inode.iblock, 4, 60, ctx, 'inline data', out);
      const tail = await this.#inlineTail(inode);
      parseEntries(tail, 0, tail.length, ctx, 'inline data (system.data)', out);
      return out;
    }
    if (inode.size > MAX_DIR_BYTES) throw new VmimgError('FS_TOO_LARGE', `ext4: directory inode ${inode.ino} is ${inode.size} bytes, beyond the reader's ${MAX_DIR_BYTES}`, { ino: inode.ino });
    if (inode.size % this.blockSize !== 0) throw corrupt(`directory inode ${inode.ino}: size ${inode.size} is not a multiple of the block size`, { structure: 'inode', ino: inode.ino });
    let logical = 0;
    let pending: Buffer = Buffer.alloc(0);
    for await (const chunk of this.read(inode)) {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      let p = 0;
      for (; p + this.blockSize <= pending.length; p += this.blockSize) parseDirBlock(pending.subarray(p, p + this.blockSize), logical++, ctx, out);
      pending = pending.subarray(p);
    }
    return out;
  }

  /** The target of a symlink inode (fast: in i_block; slow: in data blocks; or inline). */
  async readLink(inode: Ext4Inode): Promise<Buffer> {
    if ((inode.mode & S_IFMT) !== S_IFLNK) throw new VmimgError('FS_WRONG_TYPE', `ext4: inode ${inode.ino} is not a symlink`, { ino: inode.ino });
    if (inode.size > MAX_LINK) throw corrupt(`symlink inode ${inode.ino} has a ${inode.size}-byte target`, { structure: 'inode', ino: inode.ino });
    // ext4_inode_is_fast_symlink: no data blocks beyond an xattr block.
    const eaBlocks = inode.fileAcl !== 0 ? this.blockSize / 512 : 0;
    const fast = !(inode.flags & (EXTENTS_FL | INLINE_DATA_FL)) && inode.size < 60 && inode.blocks512 - eaBlocks === 0;
    const target = fast ? Buffer.from(inode.iblock.subarray(0, inode.size)) : await this.readAll(inode, MAX_LINK);
    if (target.length === 0 || target.includes(0)) throw corrupt(`symlink inode ${inode.ino} has an empty or NUL-containing target`, { structure: 'inode', ino: inode.ino });
    return target;
  }

  /**
   * Resolves a path from the root (inode 2): intermediate symlinks always followed, the last
   * one only with `follow`. Relative targets resolve from the link's directory, absolute ones
   * from the filesystem's root, and `..` stops at the root, so resolution never leaves the
   * image. Returns undefined when a component is missing or a non-directory is traversed; more
   * than 40 links is CORRUPT_IMAGE (details.eloop).
   */
  async lookup(path: string, follow = true): Promise<LookupResult | undefined> {
    const split = (p: string): string[] => p.split('/').filter((c) => c !== '' && c !== '.');
    let pending = split(path);
    const stack: Ext4Inode[] = [await this.inode(ROOT_INO)];
    const names: string[] = [];
    let hops = 0;
    let steps = 0;
    while (pending.length > 0) {
      const part = pending.shift()!;
      const dir = stack[stack.length - 1]!;
      if (part === '..') {
        if (stack.length > 1) {
          stack.pop();
          names.pop();
        }
        continue;
      }
      if ((dir.mode & S_IFMT) !== S_IFDIR) return undefined;
      if (++steps > MAX_LOOKUP_STEPS) throw corrupt(`resolving '${path}' takes more than ${MAX_LOOKUP_STEPS} steps`, { structure: 'symlink', path });
      const want = Buffer.from(part);
      const hit = (await this.#cachedDir(dir)).find((e) => e.name.equals(want));
      if (!hit) return undefined;
      const node = await this.inode(hit.ino);
      if ((node.mode & S_IFMT) === S_IFLNK && (pending.length > 0 || follow)) {
        if (++hops > MAX_SYMLINKS) throw corrupt(`more than ${MAX_SYMLINKS} symlinks resolving '${path}' (a loop?)`, { structure: 'symlink', path, eloop: true });
        const target = (await this.readLink(node)).toString('utf8');
        if (target.startsWith('/')) {
          stack.length = 1;
          names.length = 0;
        }
        pending = [...split(target), ...pending];
        continue;
      }
      stack.push(node);
      names.push(part);
    }
    return { inode: stack[stack.length - 1]!, path: '/' + names.join('/') };
  }

  async #cachedDir(dir: Ext4Inode): Promise<DirEntry[]> {
    const hit = this.#dirs.get(dir.ino);
    if (hit) {
      this.#dirs.delete(dir.ino);
      this.#dirs.set(dir.ino, hit);
      return hit;
    }
    const entries = await this.readDir(dir);
    if (entries.length <= DIR_CACHE_ENTRIES / DIR_CACHE) {
      if (this.#dirs.size >= DIR_CACHE) this.#dirs.delete(this.#dirs.keys().next().value!);
      this.#dirs.set(dir.ino, entries);
    }
    return entries;
  }

  /** lookup() that fails with NOT_FOUND naming the path. */
  async stat(path: string, follow = true): Promise<LookupResult> {
    const hit = await this.lookup(path, follow);
    if (!hit) throw new VmimgError('FS_PATH_NOT_FOUND', `ext4: '${path}' does not exist in the filesystem`, { path });
    return hit;
  }

  /** A regular file's whole content by path (symlinks followed); FS_TOO_LARGE past `max`. */
  async readFile(path: string, max: number): Promise<Buffer> {
    const { inode } = await this.stat(path, true);
    if ((inode.mode & S_IFMT) !== S_IFREG) throw new VmimgError('FS_WRONG_TYPE', `ext4: '${path}' is not a regular file`, { path });
    return this.readAll(inode, max);
  }
}
