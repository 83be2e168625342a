/**
 * Extended attributes (Documentation/filesystems/ext4/attributes.rst): stored in the inode's
 * space after i_extra_isize while they fit, the rest in one xattr block (no ea_inode feature).
 * Names are split into a prefix index and a suffix (the table of e2fsprogs lib/ext2fs/ext_attr.c
 * ea_names); entries are ordered by (index, name length, name), the order the kernel keeps
 * block entries in; POSIX ACLs are converted to ext4's own ACL encoding (fs/ext4/acl.h).
 */
import { VmimgError } from '../../util/errors.js';
import { BLOCK_SIZE, EXTRA_ISIZE, GOOD_OLD_INODE_SIZE, INODE_SIZE, XATTR_ENTRY_SIZE, XATTR_HEADER_SIZE, XATTR_MAGIC } from './constants.js';
import { xattrBlockCsum } from './csum.js';

/** Prefix table, most specific first (attributes.rst "Attribute Name Indices"). */
const PREFIXES: ReadonlyArray<[string, number]> = [
  ['gnu.', 10],
  ['system.posix_acl_default', 3],
  ['system.posix_acl_access', 2],
  ['system.richacl', 8],
  ['security.', 6],
  ['trusted.', 4],
  ['system.', 7],
  ['user.', 1],
];

export interface XattrEntry {
  index: number;
  name: Buffer;
  value: Buffer;
}

/** Bytes available for in-inode entries and values after the 4-byte magic. */
export const INODE_XATTR_SPACE = INODE_SIZE - GOOD_OLD_INODE_SIZE - EXTRA_ISIZE - 4;
const pad4 = (n: number): number => (n + 3) & ~3;
const entrySize = (e: XattrEntry): number => pad4(XATTR_ENTRY_SIZE + e.name.length);

/** ACL tags (include/uapi/linux/posix_acl.h) whose ext4 form carries an id. */
const ACL_USER = 2;
const ACL_GROUP = 8;

/** Converts a POSIX ACL xattr value (version 2, 8-byte entries) to ext4's ACL encoding (version 1). */
function aclToDisk(value: Buffer, what: string): Buffer {
  if (value.length < 4 || (value.length - 4) % 8 !== 0 || value.readUInt32LE(0) !== 2) {
    throw new VmimgError('UNSUPPORTED_ENTRY', `${what}: not a POSIX ACL (version 2) value`, { what });
  }
  const parts: Buffer[] = [Buffer.from([1, 0, 0, 0])];
  for (let p = 4; p < value.length; p += 8) {
    const tag = value.readUInt16LE(p);
    const withId = tag === ACL_USER || tag === ACL_GROUP;
    const e = Buffer.alloc(withId ? 8 : 4);
    e.writeUInt16LE(tag, 0);
    e.writeUInt16LE(value.readUInt16LE(p + 2), 2);
    if (withId) e.writeUInt32LE(value.readUInt32LE(p + 4), 4);
    parts.push(e);
  }
  return Buffer.concat(parts);
}

/** Splits full names into (index, suffix) entries, sorted in the kernel's block order. */
export function xattrEntries(xattrs: ReadonlyMap<string, Buffer>, what: string): XattrEntry[] {
  const out: XattrEntry[] = [];
  for (const [full, raw] of xattrs) {
    const hit = PREFIXES.find(([p]) => full.startsWith(p));
    const [prefix, index] = hit ?? ['', 0];
    const name = Buffer.from(full.slice(prefix.length), 'utf8');
    if (name.length > 255) throw new VmimgError('UNSUPPORTED_ENTRY', `${what}: xattr name '${full}' is too long for ext4`, { what, xattr: full });
    const value = index === 2 || index === 3 ? aclToDisk(raw, `${what}: ${full}`) : raw;
    out.push({ index, name, value });
  }
  return out.sort((a, b) => a.index - b.index || a.name.length - b.name.length || Buffer.compare(a.name, b.name));
}

/** e_hash of an entry (e2fsprogs ext2fs_ext_attr_hash_entry: name bytes, then value words). */
export function entryHash(e: XattrEntry): number {
  let h = 0;
  for (const c of e.name) h = ((h << 5) ^ (h >>> 27) ^ c) >>> 0;
  const v = Buffer.alloc(pad4(e.value.length));
  e.value.copy(v);
  for (let p = 0; p < v.length; p += 4) h = ((h << 16) ^ (h >>> 16) ^ v.readUInt32LE(p)) >>> 0;
  return h;
}

/** Bytes the entries need in a region (entries, 4-byte terminator, padded values). */
function regionSize(entries: readonly XattrEntry[]): number {
  return entries.reduce((n, e) => n + entrySize(e) + pad4(e.value.length), 4);
}

/** Writes entries at `base` of `buf`, values packed down from `end`; offsets relative to `offsetBase`. */
function writeRegion(buf: Buffer, entries: readonly XattrEntry[], base: number, end: number, offsetBase: number): number[] {
  const hashes: number[] = [];
  let pos = base;
  let valueEnd = end;
  for (const e of entries) {
    valueEnd -= pad4(e.value.length);
    const h = entryHash(e);
    buf[pos] = e.name.length;
    buf[pos + 1] = e.index;
    buf.writeUInt16LE(e.value.length === 0 ? 0 : valueEnd - offsetBase, pos + 2);
    buf.writeUInt32LE(0, pos + 4);
    buf.writeUInt32LE(e.value.length, pos + 8);
    buf.writeUInt32LE(h, pos + 12);
    e.name.copy(buf, pos + XATTR_ENTRY_SIZE);
    e.value.copy(buf, valueEnd);
    hashes.push(h);
    pos += entrySize(e);
  }
  return hashes;
}

export interface XattrPlacement {
  /** In-inode part: magic + entries + values, INODE_XATTR_SPACE + 4 bytes; undefined when empty. */
  inline?: Buffer;
  /** Entries for the xattr block; encode with encodeXattrBlock once its block number is known. */
  block?: XattrEntry[];
}

/** Places entries: in the inode while they fit (in order), the rest in a block. */
export function placeXattrs(entries: readonly XattrEntry[], what: string): XattrPlacement {
  if (entries.length === 0) return {};
  let k = 0;
  while (k < entries.length && regionSize(entries.slice(0, k + 1)) <= INODE_XATTR_SPACE) k++;
  const out: XattrPlacement = {};
  if (k > 0) {
    const buf = Buffer.alloc(INODE_XATTR_SPACE + 4);
    buf.writeUInt32LE(XATTR_MAGIC, 0);
    writeRegion(buf, entries.slice(0, k), 4, buf.length, 4);
    out.inline = buf;
  }
  if (k < entries.length) {
    const rest = entries.slice(k);
    if (XATTR_HEADER_SIZE + regionSize(rest) > BLOCK_SIZE) {
      throw new VmimgError('UNSUPPORTED_ENTRY', `${what}: extended attributes need more than one ${BLOCK_SIZE}-byte block (ea_inode is not supported)`, { what });
    }
    out.block = rest;
  }
  return out;
}

/** Encodes an xattr block (header h_refcount 1, h_blocks 1, h_hash, h_checksum when `seed` is given). */
export function encodeXattrBlock(entries: readonly XattrEntry[], blockNr: number, seed: number | undefined): Buffer {
  const buf = Buffer.alloc(BLOCK_SIZE);
  buf.writeUInt32LE(XATTR_MAGIC, 0);
  buf.writeUInt32LE(1, 4);
  buf.writeUInt32LE(1, 8);
  const hashes = writeRegion(buf, entries, XATTR_HEADER_SIZE, BLOCK_SIZE, 0);
  let h = 0;
  for (const eh of hashes) h = ((h << 16) ^ (h >>> 16) ^ eh) >>> 0;
  buf.writeUInt32LE(h, 12);
  if (seed !== undefined) buf.writeUInt32LE(xattrBlockCsum(seed, blockNr, buf), 16);
  return buf;
}
