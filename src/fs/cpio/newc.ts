/**
 * cpio "newc" archives (SVR4 without CRC, magic 070701) from a Tree: the format the Linux kernel
 * unpacks as an initramfs (Documentation/driver-api/early-userspace/buffer-format.rst) and GNU
 * cpio reads with -H newc.
 *
 * Each member: a 110-byte ASCII header (magic + 13 fields of 8 hex digits: ino, mode, uid, gid,
 * nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize incl. NUL, check 0),
 * the name and its NUL padded to 4 bytes, the data padded to 4 bytes; the archive ends with the
 * member "TRAILER!!!". Deterministic: tree order (parents first), inode numbers from 1 in that
 * order, mtimes from the tree, devmajor/devminor 0. Hard links share an inode number and nlink;
 * the data travels with the last name of a group, as GNU cpio writes it (the kernel links the
 * earlier names and fills the inode from the one carrying data). The root entry is omitted
 * (initramfs unpacks into an existing root). Fields are 32-bit: a file of 4 GiB or more, or a
 * value out of range, is CPIO_LIMIT naming the entry.
 */
import { VmimgError } from '../../util/errors.js';
import { showPath } from '../../tree/path.js';
import { FILE_TYPE_BITS, type Tree, type TreeEntry } from '../../tree/types.js';

const MAGIC = '070701';
const U32 = 0xffffffff;
const TRAILER = 'TRAILER!!!';

function hex8(v: number, what: string, e?: TreeEntry): string {
  if (!Number.isInteger(v) || v < 0 || v > U32) {
    throw new VmimgError('CPIO_LIMIT', `cpio newc cannot hold ${what} ${v}${e ? ` of '${showPath(e.path)}'` : ''} (32-bit field)`, { field: what, value: v, ...(e ? { path: showPath(e.path) } : {}) });
  }
  return v.toString(16).padStart(8, '0');
}

const pad4 = (n: number): number => (4 - (n % 4)) % 4;

function header(f: { ino: number; mode: number; uid: number; gid: number; nlink: number; mtime: number; size: number; rdevMajor: number; rdevMinor: number }, name: Buffer, e?: TreeEntry): Buffer {
  const fields = [f.ino, f.mode, f.uid, f.gid, f.nlink, f.mtime, f.size, 0, 0, f.rdevMajor, f.rdevMinor, name.length + 1, 0];
  const names = ['ino', 'mode', 'uid', 'gid', 'nlink', 'mtime', 'file size', 'devmajor', 'devminor', 'rdev major', 'rdev minor', 'name size', 'check'];
  const text = MAGIC + fields.map((v, i) => hex8(v, names[i]!, e)).join('');
  return Buffer.concat([Buffer.from(text, 'latin1'), name, Buffer.alloc(1 + pad4(110 + name.length + 1))]);
}

/** mtime in seconds, clamped into the field's range (before 1970 → 0). */
function mtimeOf(e: TreeEntry): number {
  const s = Number(e.mtimeNs / 1_000_000_000n);
  return Math.min(U32, Math.max(0, s));
}

/** The archive as a stream of chunks (content streamed from the tree, never buffered whole). */
export async function* newcArchive(tree: Tree): AsyncGenerator<Uint8Array> {
  const entries = tree.entries.filter((e) => e.path.length > 0);
  // Inode numbers in tree order; a hard-link group shares the number of its first member.
  const inoOf = new Map<TreeEntry, number>();
  const groupIno = new Map<number, number>();
  const groupSize = new Map<number, number>();
  const lastOfGroup = new Map<number, TreeEntry>();
  const subdirs = new Map<string, number>();
  let next = 1;
  for (const e of entries) {
    if (e.linkGroup !== undefined) {
      groupSize.set(e.linkGroup, (groupSize.get(e.linkGroup) ?? 0) + 1);
      lastOfGroup.set(e.linkGroup, e);
      if (!groupIno.has(e.linkGroup)) groupIno.set(e.linkGroup, next++);
      inoOf.set(e, groupIno.get(e.linkGroup)!);
    } else inoOf.set(e, next++);
    if (e.type === 'dir') {
      const slash = e.path.lastIndexOf(0x2f);
      const parent = slash < 0 ? '' : e.path.subarray(0, slash).toString('latin1');
      subdirs.set(parent, (subdirs.get(parent) ?? 0) + 1);
    }
  }
  for (const e of entries) {
    const type = e.type === 'hardlink' ? 'file' : e.type;
    const carriesData = (type === 'file' && (e.linkGroup === undefined || lastOfGroup.get(e.linkGroup) === e)) || type === 'symlink';
    const size = !carriesData ? 0 : type === 'symlink' ? e.symlinkTarget!.length : e.size;
    const nlink = type === 'dir' ? 2 + (subdirs.get(e.path.toString('latin1')) ?? 0) : e.linkGroup !== undefined ? groupSize.get(e.linkGroup)! : 1;
    yield header(
      { ino: inoOf.get(e)!, mode: FILE_TYPE_BITS[type] | e.mode, uid: e.uid, gid: e.gid, nlink, mtime: mtimeOf(e), size, rdevMajor: e.rdev?.major ?? 0, rdevMinor: e.rdev?.minor ?? 0 },
      e.path,
      e,
    );
    if (size === 0) continue;
    if (type === 'symlink') yield e.symlinkTarget!;
    else {
      let got = 0;
      for await (const chunk of e.content!.stream()) {
        got += chunk.length;
        if (got > size) break;
        yield chunk;
      }
      if (got !== size) throw new VmimgError('SOURCE_CHANGED', `'${showPath(e.path)}' did not have the ${size} bytes it had when the tree was read`, { path: showPath(e.path) });
    }
    const p = pad4(size);
    if (p > 0) yield Buffer.alloc(p);
  }
  yield header({ ino: 0, mode: 0, uid: 0, gid: 0, nlink: 1, mtime: 0, size: 0, rdevMajor: 0, rdevMinor: 0 }, Buffer.from(TRAILER));
}
