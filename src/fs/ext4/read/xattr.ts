/**
 * Extended attributes for the reader (Documentation/filesystems/ext4/attributes.rst): the
 * in-inode area (magic, entries, values relative to the first entry) and the xattr block
 * (32-byte header, entries, values relative to the block; h_checksum with metadata_csum).
 * Values kept in an EA inode (ea_inode) are fetched through a callback. Names get their prefix
 * back from e_name_index; POSIX ACLs (indices 2 and 3) are converted from ext4's compact form
 * back to the xattr form (version 2, 8-byte entries) that getxattr returns. Entries with an
 * unknown name index are skipped, as the kernel lists no handler for them.
 *
 * Bounds: entries must lie before the region's end and values inside it; an entry list ends at
 * a zero word, so it cannot outgrow its region.
 */
import { XATTR_ENTRY_SIZE, XATTR_HEADER_SIZE, XATTR_MAGIC } from '../constants.js';
import { xattrBlockCsum } from '../csum.js';
import { corrupt } from './errors.js';

const PREFIX: Record<number, string> = { 1: 'user.', 2: 'system.posix_acl_access', 3: 'system.posix_acl_default', 4: 'trusted.', 6: 'security.', 7: 'system.', 8: 'system.richacl', 10: 'gnu.' };
const ACL_USER = 2;
const ACL_GROUP = 8;
const ACL_UNDEFINED_ID = 0xffffffff;
/** Largest xattr value (XATTR_SIZE_MAX). */
export const MAX_XATTR_VALUE = 65536;

export interface RawXattr {
  index: number;
  name: Buffer;
  value: Buffer;
}

/** Reads an EA inode's value (ea_inode feature): inode number and expected size. */
export type EaInodeReader = (ino: number, size: number) => Promise<Buffer>;

/** Full attribute name as getxattr sees it, or undefined for an unknown index. */
export function xattrName(x: RawXattr): string | undefined {
  const p = PREFIX[x.index];
  return p === undefined ? undefined : p + x.name.toString('utf8');
}

/** ext4 ACL (version 1, 4- or 8-byte entries) → POSIX ACL xattr value (version 2). */
export function aclFromDisk(v: Buffer, where: string): Buffer {
  if (v.length < 4 || v.readUInt32LE(0) !== 1) throw corrupt(`${where}: ACL value is not version 1`, { structure: 'xattr' });
  const parts: Buffer[] = [Buffer.from([2, 0, 0, 0])];
  let p = 4;
  while (p < v.length) {
    if (p + 4 > v.length) throw corrupt(`${where}: truncated ACL entry`, { structure: 'xattr' });
    const tag = v.readUInt16LE(p);
    const withId = tag === ACL_USER || tag === ACL_GROUP;
    if (withId && p + 8 > v.length) throw corrupt(`${where}: truncated ACL entry`, { structure: 'xattr' });
    const e = Buffer.alloc(8);
    e.writeUInt16LE(tag, 0);
    e.writeUInt16LE(v.readUInt16LE(p + 2), 2);
    e.writeUInt32LE(withId ? v.readUInt32LE(p + 4) : ACL_UNDEFINED_ID, 4);
    parts.push(e);
    p += withId ? 8 : 4;
  }
  return Buffer.concat(parts);
}

/**
 * Parses entries from `region[entriesAt, …)`, values at `valueBase + e_value_offs` within
 * `region[0, valueEnd)`.
 */
async function parseRegion(region: Buffer, entriesAt: number, valueBase: number, where: string, eaInode: EaInodeReader | undefined, out: RawXattr[]): Promise<void> {
  let p = entriesAt;
  while (p + 4 <= region.length && region.readUInt32LE(p) !== 0) {
    if (p + XATTR_ENTRY_SIZE > region.length) throw corrupt(`${where}: xattr entry at byte ${p} runs past the end`, { structure: 'xattr' });
    const nameLen = region[p]!;
    const index = region[p + 1]!;
    const offs = region.readUInt16LE(p + 2);
    const inum = region.readUInt32LE(p + 4);
    const size = region.readUInt32LE(p + 8);
    const next = p + ((XATTR_ENTRY_SIZE + nameLen + 3) & ~3);
    if (p + XATTR_ENTRY_SIZE + nameLen > region.length) throw corrupt(`${where}: xattr entry at byte ${p} has a name past the end`, { structure: 'xattr' });
    if (size > MAX_XATTR_VALUE) throw corrupt(`${where}: xattr value of ${size} bytes is beyond ${MAX_XATTR_VALUE}`, { structure: 'xattr' });
    const name = Buffer.from(region.subarray(p + XATTR_ENTRY_SIZE, p + XATTR_ENTRY_SIZE + nameLen));
    let value: Buffer;
    if (inum !== 0) {
      if (!eaInode) throw corrupt(`${where}: xattr '${name.toString()}' is kept in inode ${inum} but the filesystem has no ea_inode feature`, { structure: 'xattr' });
      value = await eaInode(inum, size);
    } else {
      const at = valueBase + offs;
      if (size > 0 && (at < entriesAt || at + size > region.length)) throw corrupt(`${where}: xattr '${name.toString()}' value (offset ${offs}, ${size} bytes) lies outside its region`, { structure: 'xattr' });
      value = Buffer.from(region.subarray(at, at + size));
    }
    if (index === 2 || index === 3) value = aclFromDisk(value, where);
    out.push({ index, name, value });
    p = next;
  }
}

/** Entries of the in-inode area (after i_extra_isize); none without the magic. */
export async function parseInodeXattrs(area: Buffer, ino: number, eaInode: EaInodeReader | undefined, out: RawXattr[]): Promise<void> {
  if (area.length < 4 || area.readUInt32LE(0) !== XATTR_MAGIC) return;
  await parseRegion(area, 4, 4, `inode ${ino} xattrs`, eaInode, out);
}

/** Entries of xattr block `blockNr`; `seed` verifies h_checksum (metadata_csum). */
export async function parseXattrBlock(block: Buffer, blockNr: number, ino: number, seed: number | undefined, eaInode: EaInodeReader | undefined, out: RawXattr[]): Promise<void> {
  const where = `inode ${ino} xattr block ${blockNr}`;
  if (block.readUInt32LE(0) !== XATTR_MAGIC) throw corrupt(`${where}: bad magic 0x${block.readUInt32LE(0).toString(16)}`, { structure: 'xattr', block: blockNr });
  if (block.readUInt32LE(8) !== 1) throw corrupt(`${where}: h_blocks ${block.readUInt32LE(8)} is not 1`, { structure: 'xattr', block: blockNr });
  if (seed !== undefined && xattrBlockCsum(seed, blockNr, block) !== block.readUInt32LE(16)) throw corrupt(`${where}: checksum mismatch`, { structure: 'xattr', block: blockNr });
  await parseRegion(block, XATTR_HEADER_SIZE, 0, where, eaInode, out);
}
