/**
 * InodeFields for each placed inode: mode and ownership from the tree entry, link counts
 * (directories past 65000 links count 1 with dir_nlink, inodes.rst "i_links_count"), sizes,
 * i_block (extent root, fast symlink target or device number) and the xattr block pointer.
 */
import { FILE_TYPE_BITS } from '../../tree/types.js';
import { showPath } from '../../tree/path.js';
import { VmimgError } from '../../util/errors.js';
import { BLOCK_SIZE, EXT4_EXTENTS_FL, LINK_MAX } from './constants.js';
import { inodeSeed } from './csum.js';
import { encodeExtentTree, type ExtentTree, type Run } from './extents.js';
import { deviceBlock, encodeInode, type InodeFields } from './inode.js';
import type { PlacedInode } from './layout.js';
import type { Ext4Plan } from './plan.js';

/** The extent tree of a placed inode (its node blocks are written separately). */
export function extentTreeOf(plan: Ext4Plan, p: PlacedInode): ExtentTree {
  return encodeExtentTree(p.runs, p.nodeBlocks, plan.seed === undefined ? undefined : inodeSeed(plan.seed, p.model.ino, 0));
}

/** The encoded 256-byte inode of `p` (in `into`, INODE_SIZE zeroed bytes, when given). */
export function encodePlacedInode(plan: Ext4Plan, p: PlacedInode, into?: Buffer): Buffer {
  const m = p.model;
  const e = m.entry;
  const what = `'${e ? showPath(e.path) || '/' : 'lost+found'}'`;
  let links = m.links;
  if (m.kind === 'dir' && links > LINK_MAX) {
    if (!plan.features.dirNlink) throw new VmimgError('UNSUPPORTED_OPTION', `${what} has ${links - 2} subdirectories; more than ${LINK_MAX - 2} need dir_nlink`, { path: what });
    links = 1;
  }
  let size = 0;
  let iblock: Buffer = Buffer.alloc(60);
  let flags = 0;
  if (p.extents) {
    iblock = extentTreeOf(plan, p).iblock;
    flags |= EXT4_EXTENTS_FL;
  }
  switch (m.kind) {
    case 'dir':
      size = p.dataBlocks * BLOCK_SIZE;
      break;
    case 'file':
      size = e!.size;
      break;
    case 'symlink':
      size = e!.symlinkTarget!.length;
      if (!p.extents) e!.symlinkTarget!.copy(iblock);
      break;
    case 'char':
    case 'block':
      iblock = deviceBlock(e!.rdev?.major ?? 0, e!.rdev?.minor ?? 0);
      break;
    default:
      break;
  }
  if (size > 2 ** 31 - 1 && !plan.features.largeFile) throw new VmimgError('UNSUPPORTED_OPTION', `${what} is larger than 2 GiB; that needs large_file`, { path: what });
  const f: InodeFields = {
    mode: FILE_TYPE_BITS[m.kind] | (e ? e.mode : 0o700),
    uid: e?.uid ?? 0,
    gid: e?.gid ?? 0,
    size,
    timeNs: e ? e.mtimeNs : BigInt(plan.time) * 1_000_000_000n,
    links,
    blocks: p.blocksUsed,
    flags,
    iblock,
    fileAcl: p.xattrBlock ?? 0,
    xattrs: p.xattrs.inline,
  };
  return encodeInode(f, plan.seed === undefined ? undefined : inodeSeed(plan.seed, m.ino, 0), what, into);
}

/** The journal inode (8): a regular file of `journal` runs, mode 0600, as mke2fs makes it. */
export function encodeJournalInode(plan: Ext4Plan, journal: Run[], treeNodes: number[]): { inode: Buffer; tree: ExtentTree } {
  const seed = plan.seed === undefined ? undefined : inodeSeed(plan.seed, 8, 0);
  const tree = encodeExtentTree(journal, treeNodes, seed);
  const f: InodeFields = {
    mode: FILE_TYPE_BITS.file | 0o600,
    uid: 0,
    gid: 0,
    size: plan.journalBlocks * BLOCK_SIZE,
    timeNs: BigInt(plan.time) * 1_000_000_000n,
    links: 1,
    blocks: plan.journalBlocks + treeNodes.length,
    flags: EXT4_EXTENTS_FL,
    iblock: tree.iblock,
    fileAcl: 0,
  };
  return { inode: encodeInode(f, seed, 'journal'), tree };
}
