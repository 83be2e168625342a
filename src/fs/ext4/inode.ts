/**
 * The 256-byte inode (Documentation/filesystems/ext4/inodes.rst): base fields, osd2 high halves
 * of uid/gid/i_blocks/file_acl, i_extra_isize 32 with nanosecond and post-2038 timestamps
 * ("Inode Timestamps": extra = epoch bits | nanoseconds << 2), in-inode xattrs after the extra
 * fields, and the crc32c checksum split over l_i_checksum_lo and i_checksum_hi.
 */
import { VmimgError } from '../../util/errors.js';
import { EXTRA_ISIZE, INODE_SIZE } from './constants.js';
import { ext4Crc } from './csum.js';

export interface InodeFields {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** All four timestamps (atime, ctime, mtime, crtime), nanoseconds since the epoch. */
  timeNs: bigint;
  links: number;
  /** Blocks charged to the inode, in filesystem blocks (stored as 512-byte units). */
  blocks: number;
  flags: number;
  iblock: Buffer;
  fileAcl: number;
  /** In-inode xattr area (magic first), written at 128 + i_extra_isize. */
  xattrs?: Buffer;
}

/**
 * Seconds range written: 1901-12-13 .. 2310-04-04. The 34-bit encoding reaches 2446, but
 * e2fsck 1.4x takes epoch bits 3 (from 2310-04-04 on) for a pre-1970 time written by old
 * kernels and "fixes" it (pass 1, "Timestamp(s) on inode beyond 2310-04-04 are likely
 * pre-1970"), so such times are refused rather than written.
 */
const MIN_SEC = -(2n ** 31n);
const MAX_SEC = 3n * 2n ** 32n - 2n ** 31n - 1n;

function splitTime(ns: bigint, what: string): { base: number; extra: number } {
  let sec = ns / 1_000_000_000n;
  let nsec = ns - sec * 1_000_000_000n;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += 1_000_000_000n;
  }
  if (sec < MIN_SEC || sec > MAX_SEC) throw new VmimgError('UNSUPPORTED_ENTRY', `${what}: time ${sec} s is outside ext4's timestamp range`, { what, seconds: sec.toString() });
  const base = BigInt.asIntN(32, sec);
  const epoch = Number(((sec - base) >> 32n) & 3n);
  return { base: Number(base), extra: (epoch | (Number(nsec) << 2)) >>> 0 };
}

/** Encodes an inode; `seed` is its checksum seed (inodeSeed) when metadata_csum is on. */
export function encodeInode(f: InodeFields, seed: number | undefined, what: string, into?: Buffer): Buffer {
  // `into`: INODE_SIZE zeroed bytes of an inode table, so 10k inodes allocate nothing of their own.
  const b = into ?? Buffer.alloc(INODE_SIZE);
  const t = splitTime(f.timeNs, what);
  const i512 = f.blocks * 8;
  b.writeUInt16LE(f.mode, 0x00);
  b.writeUInt16LE(f.uid & 0xffff, 0x02);
  b.writeUInt32LE(f.size >>> 0, 0x04);
  for (const off of [0x08, 0x0c, 0x10]) b.writeInt32LE(t.base, off);
  b.writeUInt16LE(f.gid & 0xffff, 0x18);
  b.writeUInt16LE(f.links, 0x1a);
  b.writeUInt32LE(i512 >>> 0, 0x1c);
  b.writeUInt32LE(f.flags, 0x20);
  f.iblock.copy(b, 0x28, 0, 60);
  b.writeUInt32LE(f.fileAcl >>> 0, 0x68);
  b.writeUInt32LE(Math.floor(f.size / 2 ** 32), 0x6c);
  b.writeUInt16LE(Math.floor(i512 / 2 ** 32), 0x74);
  b.writeUInt16LE(Math.floor(f.fileAcl / 2 ** 32), 0x76);
  b.writeUInt16LE(f.uid >>> 16, 0x78);
  b.writeUInt16LE(f.gid >>> 16, 0x7a);
  b.writeUInt16LE(EXTRA_ISIZE, 0x80);
  for (const off of [0x84, 0x88, 0x8c]) b.writeUInt32LE(t.extra, off);
  b.writeInt32LE(t.base, 0x90);
  b.writeUInt32LE(t.extra, 0x94);
  if (f.xattrs) f.xattrs.copy(b, 128 + EXTRA_ISIZE);
  if (seed !== undefined) {
    const c = ext4Crc(seed, b);
    b.writeUInt16LE(c & 0xffff, 0x7c);
    b.writeUInt16LE(c >>> 16, 0x82);
  }
  return b;
}

/** i_block of a char/block device: the kernel's old encoding when both numbers fit a byte, else the new one in i_block[1]. */
export function deviceBlock(major: number, minor: number): Buffer {
  const b = Buffer.alloc(60);
  if (major < 256 && minor < 256) b.writeUInt32LE((major << 8) | minor, 0);
  else b.writeUInt32LE(((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)) >>> 0, 4);
  return b;
}
