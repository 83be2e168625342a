/**
 * A read-only ext4 (and ext2/ext3) reader over any BlockSource — a raw file or any image format
 * through its chain — for `vmimg rootfs verify` (docs/ext4-read.md). Structures per the kernel's
 * Documentation/filesystems/ext4 (super.rst, group_descr.rst, inodes.rst, ifork.rst,
 * directory.rst, checksums.rst).
 *
 * Safety contract: the image is untrusted. Every count, size and block number read from it is
 * checked against the filesystem's geometry before it sizes a read or a loop; extent trees are
 * depth-bounded; directory records are bounds-checked; symlinks are followed at most 40 times
 * and never leave the filesystem. With metadata_csum the superblock, group descriptor, inode and
 * extent-block checksums are verified. Failures are CORRUPT_IMAGE naming the structure; features
 * the reader cannot interpret are UNSUPPORTED_IMAGE naming them.
 */
import { VmimgError } from '../../../util/errors.js';
import type { BlockSource } from '../../packagefs/source.js';
import { ext4Crc, fsSeed, groupDescCsum, inodeSeed } from '../csum.js';

const MAGIC = 0xef53;
const INCOMPAT_FILETYPE = 0x2;
const INCOMPAT_RECOVER = 0x4;
const INCOMPAT_EXTENTS = 0x40;
const INCOMPAT_64BIT = 0x80;
const INCOMPAT_MMP = 0x100;
const INCOMPAT_FLEX_BG = 0x200;
const INCOMPAT_EA_INODE = 0x400;
const INCOMPAT_CSUM_SEED = 0x2000;
const INCOMPAT_LARGEDIR = 0x4000;
/** What the reader interprets; anything else in s_feature_incompat is refused by name. */
const SUPPORTED_INCOMPAT = INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_MMP | INCOMPAT_FLEX_BG | INCOMPAT_EA_INODE | INCOMPAT_CSUM_SEED | INCOMPAT_LARGEDIR;
const INCOMPAT_NAMES: Record<number, string> = { 0x1: 'compression', 0x8: 'journal_dev', 0x10: 'meta_bg', 0x1000: 'dirdata', 0x8000: 'inline_data', 0x10000: 'encrypt', 0x20000: 'casefold' };
const RO_COMPAT_METADATA_CSUM = 0x400;
const EXTENTS_FL = 0x80000;
const INLINE_DATA_FL = 0x10000000;
const EXTENT_MAGIC = 0xf30a;
const MAX_EXTENT_DEPTH = 5;
const MAX_SYMLINKS = 40;

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;

export interface Ext4Inode {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  links: number;
  mtime: number;
  flags: number;
  generation: number;
  /** The 60 bytes of i_block (extent root, block map or fast symlink target). */
  iblock: Buffer;
}

export interface DirEntry {
  name: Buffer;
  ino: number;
  /** dirent file type (0 when the filesystem has no filetype feature). */
  type: number;
}

function corrupt(what: string, details: Record<string, unknown> = {}): VmimgError {
  return new VmimgError('CORRUPT_IMAGE', `ext4: ${what}`, details);
}

interface Extent {
  logical: number;
  length: number;
  physical: number;
  uninit: boolean;
}

export class Ext4Reader {
  readonly blockSize: number;
  readonly inodeSize: number;
  readonly inodesPerGroup: number;
  readonly inodesCount: number;
  readonly blocksCount: number;
  readonly groups: number;
  readonly #source: BlockSource;
  readonly #csum: boolean;
  readonly #seed: number;
  readonly #inodeTables: number[];

  private constructor(source: BlockSource, f: { blockSize: number; inodeSize: number; ipg: number; inodes: number; blocks: number; groups: number; csum: boolean; seed: number; tables: number[] }) {
    this.#source = source;
    this.blockSize = f.blockSize;
    this.inodeSize = f.inodeSize;
    this.inodesPerGroup = f.ipg;
    this.inodesCount = f.inodes;
    this.blocksCount = f.blocks;
    this.groups = f.groups;
    this.#csum = f.csum;
    this.#seed = f.seed;
    this.#inodeTables = f.tables;
  }

  static async open(source: BlockSource): Promise<Ext4Reader> {
    if (source.size < 2048) throw corrupt(`image of ${source.size} bytes is too small to hold a superblock`);
    const sb = Buffer.from(await source.read(1024, 1024));
    if (sb.readUInt16LE(56) !== MAGIC) throw corrupt(`no ext2/3/4 superblock (magic 0x${sb.readUInt16LE(56).toString(16)} at byte 1080)`, { magic: sb.readUInt16LE(56) });
    const logBlock = sb.readUInt32LE(24);
    if (logBlock > 6) throw corrupt(`block size 1024 << ${logBlock} is beyond 64 KiB`);
    const blockSize = 1024 << logBlock;
    const incompat = sb.readUInt32LE(96);
    const roCompat = sb.readUInt32LE(100);
    const unknown = incompat & ~SUPPORTED_INCOMPAT;
    if (unknown !== 0) {
      const names = Object.entries(INCOMPAT_NAMES).filter(([bit]) => unknown & Number(bit)).map(([, n]) => n);
      throw new VmimgError('UNSUPPORTED_IMAGE', `ext4: incompatible feature(s) ${names.join(', ') || ''}${names.length ? ' ' : ''}(0x${unknown.toString(16)}) are not supported by vmimg's reader`, { incompat: unknown });
    }
    const csum = (roCompat & RO_COMPAT_METADATA_CSUM) !== 0;
    if (csum && (ext4Crc(0xffffffff, sb.subarray(0, 0x3fc)) >>> 0) !== sb.readUInt32LE(0x3fc)) throw corrupt('superblock checksum mismatch');
    const rev = sb.readUInt32LE(76);
    const inodeSize = rev === 0 ? 128 : sb.readUInt16LE(88);
    if (inodeSize < 128 || inodeSize > blockSize || (inodeSize & (inodeSize - 1)) !== 0) throw corrupt(`inode size ${inodeSize} is invalid`);
    const bit64 = (incompat & INCOMPAT_64BIT) !== 0;
    const blocks = sb.readUInt32LE(4) + (bit64 ? sb.readUInt32LE(0x150) * 2 ** 32 : 0);
    const firstData = sb.readUInt32LE(20);
    const bpg = sb.readUInt32LE(32);
    const ipg = sb.readUInt32LE(40);
    const inodes = sb.readUInt32LE(0);
    if (bpg === 0 || bpg > 8 * blockSize || ipg === 0 || ipg > 8 * blockSize || firstData >= blocks) throw corrupt(`geometry is invalid (blocks per group ${bpg}, inodes per group ${ipg}, first data block ${firstData})`);
    if (blocks * blockSize > source.size) throw corrupt(`the filesystem claims ${blocks} blocks of ${blockSize} bytes, more than the ${source.size}-byte image`);
    const groups = Math.ceil((blocks - firstData) / bpg);
    if (groups * ipg < inodes || groups > 1 << 22) throw corrupt(`${inodes} inodes do not fit ${groups} groups of ${ipg}`);
    const descSize = bit64 ? sb.readUInt16LE(254) : 32;
    if (descSize < 32 || descSize > 1024 || (descSize & (descSize - 1)) !== 0 || (bit64 && descSize < 64)) throw corrupt(`group descriptor size ${descSize} is invalid`);
    const seed = csum ? ((incompat & INCOMPAT_CSUM_SEED) !== 0 ? sb.readUInt32LE(0x270) : fsSeed(sb.subarray(104, 120))) : 0;
    const gdtOffset = (firstData + 1) * blockSize;
    const gdt = Buffer.from(await source.read(gdtOffset, groups * descSize));
    const tables: number[] = [];
    for (let g = 0; g < groups; g++) {
      const d = gdt.subarray(g * descSize, (g + 1) * descSize);
      if (csum && groupDescCsum(seed, g, d) !== d.readUInt16LE(0x1e)) throw corrupt(`group descriptor ${g} checksum mismatch`, { group: g });
      const table = d.readUInt32LE(8) + (bit64 ? d.readUInt32LE(0x28) * 2 ** 32 : 0);
      if (table < firstData || table + Math.ceil((ipg * inodeSize) / blockSize) > blocks) throw corrupt(`group ${g}'s inode table (block ${table}) lies outside the filesystem`, { group: g });
      tables.push(table);
    }
    return new Ext4Reader(source, { blockSize, inodeSize, ipg, inodes, blocks, groups, csum, seed, tables });
  }

  async #block(n: number, count = 1): Promise<Buffer> {
    if (!Number.isSafeInteger(n) || n < 0 || n + count > this.blocksCount) throw corrupt(`block ${n} is outside the filesystem (${this.blocksCount} blocks)`, { block: n });
    return Buffer.from(await this.#source.read(n * this.blockSize, count * this.blockSize));
  }

  async inode(ino: number): Promise<Ext4Inode> {
    if (!Number.isSafeInteger(ino) || ino < 1 || ino > this.inodesCount) throw corrupt(`inode number ${ino} is out of range 1..${this.inodesCount}`, { ino });
    const g = Math.floor((ino - 1) / this.inodesPerGroup);
    const idx = (ino - 1) % this.inodesPerGroup;
    const raw = Buffer.from(await this.#source.read(this.#inodeTables[g]! * this.blockSize + idx * this.inodeSize, this.inodeSize));
    const extra = this.inodeSize > 128 ? raw.readUInt16LE(0x80) : 0;
    if (this.#csum) {
      const copy = Buffer.from(raw);
      copy.writeUInt16LE(0, 0x7c);
      const hasHi = this.inodeSize > 128 && extra >= 4;
      if (hasHi) copy.writeUInt16LE(0, 0x82);
      const c = ext4Crc(inodeSeed(this.#seed, ino, raw.readUInt32LE(0x64)), copy);
      const stored = raw.readUInt16LE(0x7c) | (hasHi ? raw.readUInt16LE(0x82) << 16 : 0);
      if (((hasHi ? c : c & 0xffff) >>> 0) !== stored >>> 0) throw corrupt(`inode ${ino} checksum mismatch`, { ino });
    }
    return {
      ino,
      mode: raw.readUInt16LE(0),
      uid: raw.readUInt16LE(2) | (raw.readUInt16LE(0x78) << 16),
      gid: raw.readUInt16LE(0x18) | (raw.readUInt16LE(0x7a) << 16),
      size: raw.readUInt32LE(4) + raw.readUInt32LE(0x6c) * 2 ** 32,
      links: raw.readUInt16LE(0x1a),
      mtime: raw.readInt32LE(0x10),
      flags: raw.readUInt32LE(0x20),
      generation: raw.readUInt32LE(0x64),
      iblock: raw.subarray(0x28, 0x28 + 60),
    };
  }

  /** The extents of an extent-mapped inode, in logical order. */
  async #extents(inode: Ext4Inode): Promise<Extent[]> {
    const out: Extent[] = [];
    const maxBlocks = Math.ceil(inode.size / this.blockSize);
    const visit = async (node: Buffer, depth: number, where: string): Promise<void> => {
      if (node.readUInt16LE(0) !== EXTENT_MAGIC) throw corrupt(`inode ${inode.ino}: bad extent header in ${where}`, { ino: inode.ino });
      const entries = node.readUInt16LE(2);
      const max = node.readUInt16LE(4);
      const d = node.readUInt16LE(6);
      if (entries > max || 12 + max * 12 > node.length || d !== depth) throw corrupt(`inode ${inode.ino}: extent header in ${where} is inconsistent (entries ${entries}, max ${max}, depth ${d})`, { ino: inode.ino });
      for (let i = 0; i < entries; i++) {
        const e = node.subarray(12 + i * 12, 24 + i * 12);
        if (depth === 0) {
          const len = e.readUInt16LE(4);
          out.push({ logical: e.readUInt32LE(0), length: len > 32768 ? len - 32768 : len, physical: e.readUInt16LE(6) * 2 ** 32 + e.readUInt32LE(8), uninit: len > 32768 });
          if (out.length > maxBlocks + 1) throw corrupt(`inode ${inode.ino} has more extents than blocks`, { ino: inode.ino });
        } else {
          const child = e.readUInt32LE(4) + e.readUInt16LE(8) * 2 ** 32;
          const block = await this.#block(child);
          if (this.#csum) {
            // ext4_extent_tail after eh_max entries: crc32c(inode seed, the block up to it).
            const tail = 12 + block.readUInt16LE(4) * 12;
            if (tail + 4 > block.length) throw corrupt(`inode ${inode.ino}: extent block ${child} has no room for its checksum`, { ino: inode.ino });
            if ((ext4Crc(inodeSeed(this.#seed, inode.ino, inode.generation), block.subarray(0, tail)) >>> 0) !== block.readUInt32LE(tail)) {
              throw corrupt(`inode ${inode.ino}: extent block ${child} checksum mismatch`, { ino: inode.ino, block: child });
            }
          }
          await visit(block, depth - 1, `block ${child}`);
        }
      }
    };
    const depth = inode.iblock.readUInt16LE(6);
    if (depth > MAX_EXTENT_DEPTH) throw corrupt(`inode ${inode.ino}: extent tree depth ${depth} is beyond ${MAX_EXTENT_DEPTH}`, { ino: inode.ino });
    await visit(inode.iblock, depth, 'the inode');
    out.sort((a, b) => a.logical - b.logical);
    for (const e of out) {
      if (e.physical + e.length > this.blocksCount || e.physical < 1) throw corrupt(`inode ${inode.ino}: extent at logical block ${e.logical} points outside the filesystem`, { ino: inode.ino });
    }
    return out;
  }

  /** Block numbers of a block-mapped (ext2/ext3) inode, 0 for holes, up to the file's size. */
  async #blockMap(inode: Ext4Inode): Promise<number[]> {
    const want = Math.ceil(inode.size / this.blockSize);
    const perBlock = this.blockSize / 4;
    const out: number[] = [];
    for (let i = 0; i < 12 && out.length < want; i++) out.push(inode.iblock.readUInt32LE(i * 4));
    const indirect = async (block: number, level: number): Promise<void> => {
      if (out.length >= want) return;
      if (block === 0) {
        const span = perBlock ** level;
        for (let i = 0; i < span && out.length < want; i++) out.push(0);
        return;
      }
      const b = await this.#block(block);
      for (let i = 0; i < perBlock && out.length < want; i++) {
        const n = b.readUInt32LE(i * 4);
        if (level === 1) out.push(n);
        else await indirect(n, level - 1);
      }
    };
    for (let level = 1; level <= 3; level++) await indirect(inode.iblock.readUInt32LE((11 + level) * 4), level);
    return out;
  }

  /** The file's bytes in order, `max` at most (FS_TOO_LARGE beyond, to bound memory). */
  async *read(inode: Ext4Inode, max = Number.MAX_SAFE_INTEGER): AsyncGenerator<Buffer> {
    if (inode.size > max) throw new VmimgError('FS_TOO_LARGE', `ext4: inode ${inode.ino} is ${inode.size} bytes, more than the ${max} this read allows`, { ino: inode.ino });
    if (inode.flags & INLINE_DATA_FL) throw new VmimgError('UNSUPPORTED_IMAGE', `ext4: inode ${inode.ino} keeps its data inline (inline_data), which vmimg's reader does not read`, { ino: inode.ino });
    const blocks = Math.ceil(inode.size / this.blockSize);
    let emitted = 0;
    const emit = (b: Buffer): Buffer => {
      const n = Math.min(b.length, inode.size - emitted);
      emitted += n;
      return b.subarray(0, n);
    };
    if (inode.flags & EXTENTS_FL) {
      let next = 0;
      for (const e of await this.#extents(inode)) {
        if (e.logical >= blocks) break;
        if (e.logical < next) throw corrupt(`inode ${inode.ino}: extents overlap at logical block ${e.logical}`, { ino: inode.ino });
        for (; next < e.logical; next++) yield emit(Buffer.alloc(this.blockSize));
        const len = Math.min(e.length, blocks - e.logical);
        for (let i = 0; i < len; i += 256) {
          const n = Math.min(256, len - i);
          yield emit(e.uninit ? Buffer.alloc(n * this.blockSize) : await this.#block(e.physical + i, n));
        }
        next = e.logical + len;
      }
      for (; next < blocks; next++) yield emit(Buffer.alloc(this.blockSize));
    } else {
      for (const n of await this.#blockMap(inode)) yield emit(n === 0 ? Buffer.alloc(this.blockSize) : await this.#block(n));
    }
  }

  async readAll(inode: Ext4Inode, max: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const p of this.read(inode, max)) parts.push(p);
    return Buffer.concat(parts);
  }

  /** A directory's entries (linear scan: htree index blocks hold no live entries). */
  async readDir(inode: Ext4Inode): Promise<DirEntry[]> {
    if ((inode.mode & S_IFMT) !== S_IFDIR) throw corrupt(`inode ${inode.ino} is not a directory`, { ino: inode.ino });
    const data = await this.readAll(inode, 256 * 1024 * 1024);
    const out: DirEntry[] = [];
    for (let blockStart = 0; blockStart < data.length; blockStart += this.blockSize) {
      const end = Math.min(data.length, blockStart + this.blockSize);
      let p = blockStart;
      while (p + 8 <= end) {
        const ino = data.readUInt32LE(p);
        const recLen = data.readUInt16LE(p + 4);
        const nameLen = data[p + 6]!;
        if (recLen < 8 || recLen % 4 !== 0 || p + recLen > end || nameLen + 8 > recLen) throw corrupt(`directory inode ${inode.ino}: bad entry at byte ${p}`, { ino: inode.ino });
        if (ino !== 0 && nameLen > 0) out.push({ name: Buffer.from(data.subarray(p + 8, p + 8 + nameLen)), ino, type: data[p + 7]! });
        p += recLen;
      }
    }
    return out;
  }

  /** The target of a symlink inode. */
  async readLink(inode: Ext4Inode): Promise<Buffer> {
    if (inode.size > 4095) throw corrupt(`symlink inode ${inode.ino} has a ${inode.size}-byte target`, { ino: inode.ino });
    if (!(inode.flags & EXTENTS_FL) && inode.size < 60 && inode.iblock.subarray(inode.size).every((b) => b === 0)) return Buffer.from(inode.iblock.subarray(0, inode.size));
    return this.readAll(inode, 4096);
  }

  /**
   * Resolves an absolute path from the root (inode 2): intermediate symlinks always followed,
   * the last one only with `follow`. Relative targets resolve from their directory; `..` stops
   * at the root. Returns the inode and its canonical path, or undefined when a component is
   * missing; loops beyond 40 links are CORRUPT_IMAGE.
   */
  async lookup(path: string, follow = true): Promise<{ inode: Ext4Inode; path: string } | undefined> {
    let pending = path.split('/').filter((p) => p !== '' && p !== '.');
    const stack: Ext4Inode[] = [await this.inode(2)];
    const names: string[] = [];
    let hops = 0;
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
      const hit = (await this.readDir(dir)).find((e) => e.name.toString() === part);
      if (!hit) return undefined;
      const node = await this.inode(hit.ino);
      if ((node.mode & S_IFMT) === S_IFLNK && (pending.length > 0 || follow)) {
        if (++hops > MAX_SYMLINKS) throw corrupt(`too many symlinks resolving '${path}'`, { path });
        const target = (await this.readLink(node)).toString();
        if (target.startsWith('/')) {
          stack.length = 1;
          names.length = 0;
        }
        pending = [...target.split('/').filter((p) => p !== '' && p !== '.'), ...pending];
        continue;
      }
      stack.push(node);
      names.push(part);
    }
    return { inode: stack[stack.length - 1]!, path: '/' + names.join('/') };
  }
}
