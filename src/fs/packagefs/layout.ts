/**
 * The packagefs planner: a Tree becomes a pure Layout (records without hashes, names region, file
 * data placements, image size). Nothing is read or written here; the builder streams content into
 * the planned places and fills in the hashes (hcsshim compactext4's "reserve metadata, stream
 * data, write metadata last").
 */
import { VmimgError } from '../../util/errors.js';
import { showPath } from '../../tree/path.js';
import type { ContentSource, TreeEntry } from '../../tree/types.js';
import { ENTRY_SIZE, INDEX_OFFSET, MAX_NAME, roundUpSector, S_IFDIR, S_IFLNK, S_IFREG } from './format.js';

export interface LayoutOptions {
  /** uid/gid/mtime (seconds) stamped on every entry. */
  uid: number;
  gid: number;
  mtime: number;
  /** Leave device nodes, fifos and sockets out instead of failing. */
  skipSpecial?: boolean;
  /** Largest image size in bytes; larger plans fail with FS_TOO_LARGE. */
  maxSize?: number;
}

export interface PlannedEntry {
  path: Buffer;
  mode: number;
  size: number;
  /** Image offset of a file's data (0 for empty files, dirs, symlinks). */
  dataOffset: number;
  /** Offset of a symlink's target in the names region. */
  targetOffset: number;
  nameOffset: number;
  /** The content to stream, for the entry that owns the data (not for hard-link members). */
  content?: ContentSource;
  /** Index of the entry whose data this hard-link member shares. */
  sharesWith?: number;
  symlinkTarget?: Buffer;
}

export interface Layout {
  entries: PlannedEntry[];
  names: Buffer;
  namesOffset: number;
  dataOffset: number;
  imageSize: number;
}

function typeBits(type: TreeEntry['type']): number | undefined {
  switch (type) {
    case 'file':
      return S_IFREG;
    case 'dir':
      return S_IFDIR;
    case 'symlink':
      return S_IFLNK;
    default:
      return undefined;
  }
}

/** Plans the image for `entries` (a normalised Tree's, root first). */
export function planLayout(entries: readonly TreeEntry[], options: LayoutOptions): Layout {
  const groupType = new Map<number, TreeEntry['type']>();
  for (const e of entries) if (e.linkGroup !== undefined && e.type !== 'hardlink') groupType.set(e.linkGroup, e.type);
  const inodeType = (e: TreeEntry): TreeEntry['type'] | undefined => (e.type === 'hardlink' ? groupType.get(e.linkGroup!) : e.type);
  const kept = entries.filter((e) => {
    const type = inodeType(e);
    if (type === 'file' || type === 'dir' || type === 'symlink') return true;
    if (options.skipSpecial) return false;
    throw new VmimgError('UNSUPPORTED_ENTRY', `packagefs cannot hold ${type} '${showPath(e.path)}' (use --skip-special to leave such entries out)`, { path: showPath(e.path), type });
  });
  if (kept[0]?.path.length !== 0 || kept[0].type !== 'dir') throw new VmimgError('INTERNAL', 'packagefs: the tree does not start with its root directory', {});
  const firstOfGroup = new Map<number, number>();
  const nameParts: Buffer[] = [];
  let namesLength = 0;
  const addName = (bytes: Buffer): number => {
    if (bytes.length > MAX_NAME) throw new VmimgError('UNSUPPORTED_ENTRY', `packagefs names are at most ${MAX_NAME} bytes: '${showPath(bytes.subarray(0, 64))}...'`, {});
    nameParts.push(bytes);
    namesLength += bytes.length;
    return namesLength - bytes.length;
  };
  const planned: PlannedEntry[] = kept.map((e, index) => {
    const p: PlannedEntry = { path: e.path, mode: 0, size: 0, dataOffset: 0, targetOffset: 0, nameOffset: addName(e.path) };
    const type = inodeType(e);
    const bits = type === undefined ? undefined : typeBits(type);
    if (bits === undefined || (e.type === 'hardlink' && !firstOfGroup.has(e.linkGroup!))) {
      throw new VmimgError('INTERNAL', `packagefs: hard link '${showPath(e.path)}' precedes its group's first member`, {});
    }
    p.mode = bits | (e.mode & 0o7777);
    if (e.linkGroup !== undefined && e.type !== 'hardlink') firstOfGroup.set(e.linkGroup, index);
    if (bits === S_IFLNK) {
      p.symlinkTarget = e.symlinkTarget!;
      p.size = p.symlinkTarget.length;
      p.targetOffset = addName(p.symlinkTarget);
    } else if (bits === S_IFREG) {
      p.size = e.size;
      if (e.type === 'hardlink') p.sharesWith = firstOfGroup.get(e.linkGroup!);
      else p.content = e.content;
    }
    return p;
  });
  const namesOffset = INDEX_OFFSET + planned.length * ENTRY_SIZE;
  const dataOffset = roundUpSector(namesOffset + namesLength);
  let end = dataOffset;
  for (const p of planned) {
    if ((p.mode & 0o170000) !== S_IFREG || p.size === 0) continue;
    if (p.sharesWith !== undefined) {
      p.dataOffset = planned[p.sharesWith]!.dataOffset;
      continue;
    }
    p.dataOffset = end;
    end += roundUpSector(p.size);
  }
  if (!Number.isSafeInteger(end) || (options.maxSize !== undefined && end > options.maxSize)) {
    throw new VmimgError('FS_TOO_LARGE', `packagefs image needs ${end} bytes, more than the maximum of ${options.maxSize ?? Number.MAX_SAFE_INTEGER} bytes`, { needed: end, maxSize: options.maxSize });
  }
  return { entries: planned, names: Buffer.concat(nameParts), namesOffset, dataOffset, imageSize: end };
}
