/**
 * The cpio "newc" header codec (SVR4 portable format without CRC, magic "070701"), as GNU cpio
 * (`-H newc`, cpio(5) "New ASCII Format") writes it and the Linux kernel's initramfs unpacker reads
 * it (Documentation/driver-api/early-userspace/buffer-format.rst, init/initramfs.c).
 *
 * Layout of one member: a 110-byte header (the 6-byte magic, then 13 fields of exactly 8 hex
 * digits), the name with its terminating NUL (`c_namesize` counts the NUL), NUL padding so header +
 * name is a multiple of 4, then `c_filesize` bytes of data (file content, or a symlink's target
 * without NUL), NUL padding to a multiple of 4. The archive ends with a member named "TRAILER!!!".
 */

export const NEWC_MAGIC = '070701';
export const HEADER_SIZE = 110;
export const TRAILER_NAME = 'TRAILER!!!';
/** Largest value of one 8-hex-digit field. */
export const FIELD_MAX = 0xffffffff;
/**
 * Longest `c_namesize` (name + NUL) the kernel unpacker accepts: init/initramfs.c refuses a name
 * longer than PATH_MAX ("name too long").
 */
export const NAME_SIZE_MAX = 4096;
/**
 * Longest symlink target: the kernel skips a symlink whose body is over PATH_MAX, and symlink(2)
 * takes at most PATH_MAX - 1 bytes plus the NUL.
 */
export const SYMLINK_TARGET_MAX = 4095;

/** The header fields in on-disk order (cpio(5)); all are unsigned 32-bit. */
export interface NewcHeader {
  ino: number;
  /** Full st_mode: S_IF* type bits and permission bits. */
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  /** Seconds since the epoch. */
  mtime: number;
  filesize: number;
  /** Device holding the file (vmimg writes 0). */
  devmajor: number;
  devminor: number;
  /** Device number of a char/block node. */
  rdevmajor: number;
  rdevminor: number;
  /** Name length including the NUL. */
  namesize: number;
  /** Checksum: always 0 in newc ("070702" would carry a sum). */
  check: number;
}

const FIELD_ORDER: readonly (keyof NewcHeader)[] = ['ino', 'mode', 'uid', 'gid', 'nlink', 'mtime', 'filesize', 'devmajor', 'devminor', 'rdevmajor', 'rdevminor', 'namesize', 'check'];

/** Bytes of NUL padding after `length` bytes to reach a multiple of 4. */
export function pad4(length: number): number {
  return (4 - (length % 4)) % 4;
}

/** Size of header + name + padding for a name of `nameLength` bytes (without the NUL). */
export function headerBlockSize(nameLength: number): number {
  const n = HEADER_SIZE + nameLength + 1;
  return n + pad4(n);
}

/**
 * Encodes header, name, NUL and padding. Fields are 8 uppercase hex digits (as GNU cpio and the
 * kernel's gen_init_cpio print them). The caller has checked every field is in 0..FIELD_MAX and
 * `namesize` equals name.length + 1.
 */
export function encodeHeader(h: NewcHeader, name: Uint8Array): Buffer {
  const out = Buffer.alloc(headerBlockSize(name.length));
  let text = NEWC_MAGIC;
  for (const k of FIELD_ORDER) text += h[k].toString(16).toUpperCase().padStart(8, '0');
  out.write(text, 0, 'latin1');
  out.set(name, HEADER_SIZE);
  return out;
}

/** The trailer member: name "TRAILER!!!", nlink 1, every other field 0 (as GNU cpio writes it). */
export function encodeTrailer(): Buffer {
  const name = Buffer.from(TRAILER_NAME, 'latin1');
  return encodeHeader({ ino: 0, mode: 0, uid: 0, gid: 0, nlink: 1, mtime: 0, filesize: 0, devmajor: 0, devminor: 0, rdevmajor: 0, rdevminor: 0, namesize: name.length + 1, check: 0 }, name);
}
