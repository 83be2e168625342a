/**
 * Normalisation for determinism (DESIGN.md "Determinism"): merged entries become a Tree whose
 * content depends only on the input bytes and the options —
 *  - missing parent directories (and the root) are synthesised: mode 0755, uid/gid 0, mtime the
 *    SOURCE_DATE_EPOCH when one applies, else 0;
 *  - hard links are grouped (a tar 'link' member joins its target's group; directory entries
 *    sharing dev:ino form one group); see TreeEntry for how a group is represented;
 *  - mtimes are clamped to SOURCE_DATE_EPOCH (reproducible-builds.org spec: no time later than
 *    it), owners optionally squashed to 0:0, xattrs sorted by name, entries sorted by path bytes.
 */
import { VmimgError } from '../util/errors.js';
import type { MergedEntries } from './overlay.js';
import { comparePaths, parentPath, pathKey, showPath } from './path.js';
import type { RawEntry, TreeEntry } from './types.js';

export interface NormaliseOptions {
  /**
   * Seconds since the epoch to clamp mtimes to. undefined: the SOURCE_DATE_EPOCH environment
   * variable when set (it must then be a decimal integer); null: no clamping.
   */
  sourceDateEpoch?: number | null;
  /** Set every uid and gid to 0. */
  squashOwner?: boolean;
}

/** The clamp time in seconds resolved from the options and the environment, or undefined. */
export function resolveSourceDateEpoch(option: number | null | undefined, env = process.env): number | undefined {
  if (option === null) return undefined;
  if (option !== undefined) {
    if (!Number.isSafeInteger(option)) throw new VmimgError('INVALID_OPTION', `SOURCE_DATE_EPOCH must be an integer number of seconds, not ${option}`, { value: option });
    return option;
  }
  const text = env['SOURCE_DATE_EPOCH'];
  if (text === undefined || text === '') return undefined;
  if (!/^-?[0-9]{1,15}$/.test(text)) throw new VmimgError('INVALID_OPTION', `SOURCE_DATE_EPOCH='${text}' is not a decimal integer`, { value: text });
  return Number(text);
}

/** Follows hard-link names to the entry that holds the inode (bounded by the entry count). */
function resolveLink(merged: MergedEntries, entry: RawEntry): RawEntry {
  let current = entry;
  for (let hops = 0; current.type === 'hardlink'; hops++) {
    const target = merged.get(pathKey(current.linkTarget!));
    if (!target) {
      throw new VmimgError('CORRUPT_ARCHIVE', `Hard link '${showPath(entry.path)}' names '${showPath(current.linkTarget!)}', which is not in the tree`, { path: showPath(entry.path) });
    }
    if (target.type === 'dir') throw new VmimgError('UNSUPPORTED_ENTRY', `Hard link '${showPath(entry.path)}' names directory '${showPath(target.path)}'`, { path: showPath(entry.path) });
    if (hops > merged.size) throw new VmimgError('CORRUPT_ARCHIVE', `Hard link '${showPath(entry.path)}' is part of a link loop`, { path: showPath(entry.path) });
    current = target;
  }
  return current;
}

function sortedXattrs(x: ReadonlyMap<string, Buffer>): Map<string, Buffer> {
  if (x.size === 0) return new Map();
  return new Map([...x].sort(([a], [b]) => comparePaths(Buffer.from(a), Buffer.from(b))));
}

/** Builds the normalised entry list from merged entries (see the file comment). */
export function normaliseEntries(merged: MergedEntries, options: NormaliseOptions = {}): TreeEntry[] {
  const epoch = resolveSourceDateEpoch(options.sourceDateEpoch);
  const clampNs = epoch === undefined ? undefined : BigInt(epoch) * 1_000_000_000n;
  const synthesisedNs = clampNs ?? 0n;

  // Parents: every entry's ancestors must exist and be directories.
  for (const entry of [...merged.values()]) {
    let path = entry.path;
    while (path.length > 0) {
      path = parentPath(path);
      const parent = merged.get(pathKey(path));
      if (parent) {
        if (parent.type !== 'dir') {
          throw new VmimgError('CORRUPT_ARCHIVE', `'${showPath(entry.path)}' lies below '${showPath(path)}', which is not a directory`, { path: showPath(entry.path) });
        }
        break; // its own ancestors were (or will be) handled through it
      }
      merged.put({ path, type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeNs: synthesisedNs, size: 0, xattrs: new Map() });
    }
  }
  if (!merged.get('')) merged.put({ path: Buffer.alloc(0), type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeNs: synthesisedNs, size: 0, xattrs: new Map() });

  // Hard-link groups: key → the inode-holding entry and the member paths.
  const groups = new Map<string, { inode: RawEntry; members: RawEntry[] }>();
  for (const entry of merged.values()) {
    if (entry.type === 'dir') continue;
    const inode = resolveLink(merged, entry);
    const key = inode.inodeKey !== undefined ? `i:${inode.inodeKey}` : `p:${pathKey(inode.path)}`;
    let group = groups.get(key);
    if (!group) groups.set(key, (group = { inode, members: [] }));
    group.members.push(entry);
  }

  // Built field by field (no object spread or rest: V8's slow clone path, per entry of 10k+).
  const finish = (e: RawEntry, extra: Partial<TreeEntry>): TreeEntry => {
    const out: { -readonly [K in keyof TreeEntry]: TreeEntry[K] } = {
      path: e.path,
      type: e.type,
      mode: e.mode,
      uid: options.squashOwner ? 0 : e.uid,
      gid: options.squashOwner ? 0 : e.gid,
      mtimeNs: clampNs !== undefined && e.mtimeNs > clampNs ? clampNs : e.mtimeNs,
      size: e.size,
      xattrs: sortedXattrs(e.xattrs),
    };
    if (e.content !== undefined) out.content = e.content;
    if (e.symlinkTarget !== undefined) out.symlinkTarget = e.symlinkTarget;
    if (e.linkTarget !== undefined) out.linkTarget = e.linkTarget;
    if (e.rdev !== undefined) out.rdev = e.rdev;
    return Object.assign(out, extra);
  };

  const replaced = new Map<RawEntry, TreeEntry>();
  const linked: Array<{ first: Buffer; members: RawEntry[]; inode: RawEntry }> = [];
  for (const { inode, members } of groups.values()) {
    if (members.length < 2) continue; // a lone dev:ino whose other names lie outside the tree
    members.sort((a, b) => comparePaths(a.path, b.path));
    linked.push({ first: members[0]!.path, members, inode });
  }
  linked.sort((a, b) => comparePaths(a.first, b.first));
  linked.forEach(({ members, inode }, linkGroup) => {
    const first = members[0]!;
    const { linkTarget: _t, ...inodeData } = inode;
    void _t;
    members.forEach((m, i) => {
      const base = { ...inodeData, path: m.path };
      replaced.set(m, finish(base, i === 0 ? { linkGroup } : { type: 'hardlink', linkTarget: first.path, linkGroup }));
    });
  });

  const out: TreeEntry[] = [];
  for (const e of merged.values()) {
    const done = replaced.get(e);
    if (done) out.push(done);
    else if (e.type === 'hardlink') throw new VmimgError('INTERNAL', `hard link '${showPath(e.path)}' left ungrouped`, {});
    else out.push(finish(e, {}));
  }
  return out.sort((a, b) => comparePaths(a.path, b.path));
}
