/**
 * `vmimg mkfs -t ext4` flags → buildExt4 (the CLI's ext4 entry; src/cli/mkfs.ts dispatches here).
 * Usage: mkfs -t ext4 [-L label] [-U uuid] [--hash-seed uuid] [--size SIZE] [--free PCT]
 * [-N inodes] [-i bytes-per-inode] [-J] [-O feature,^feature] [--format FMT] [--mtime S] [--owner U:G] (DIR|TAR)... OUT
 * (OUT may also be given with -o).
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Tree } from '../../tree/types.js';
import { VmimgError } from '../../util/errors.js';
import { parseSize, toSafeNumber } from '../../util/size.js';
import { buildExt4, type Ext4BuildOptions } from './build.js';

export interface Ext4Flags {
  out?: string;
  maxSize?: string;
  mtime?: string;
  owner?: string;
  squashOwner?: boolean;
  label?: string;
  uuid?: string;
  hashSeed?: string;
  size?: string;
  free?: string;
  inodes?: string;
  bytesPerInode?: string;
  journal?: boolean;
  features?: string;
  format?: string;
}

function int(text: string, what: string): number {
  if (!/^[0-9]+$/.test(text)) throw new VmimgError('INVALID_OPTION', `${what} must be a non-negative integer, not '${text}'`, { value: text });
  return Number(text);
}

/** Every entry owned by uid:gid (--owner). */
function withOwner(tree: Tree, uid: number, gid: number): Tree {
  return { entries: tree.entries.map((e) => ({ ...e, uid, gid })), close: () => tree.close() };
}

export async function ext4Command(args: string[], flags: Ext4Flags, common: { uid?: number; gid?: number; mtime?: number; maxSize?: number }): Promise<Record<string, unknown>> {
  const inputs = [...args];
  const out = flags.out ?? (inputs.length >= 2 ? inputs.pop()! : undefined);
  if (out === undefined) throw new VmimgError('USAGE', 'mkfs -t ext4 needs inputs and an output image: mkfs -t ext4 [options] (DIR|TAR)... OUT', {});
  const options: Ext4BuildOptions = {
    label: flags.label,
    uuid: flags.uuid,
    hashSeed: flags.hashSeed,
    journal: flags.journal,
    features: flags.features,
    format: flags.format,
    timestamp: common.mtime,
  };
  if (flags.size !== undefined) options.size = toSafeNumber(parseSize(flags.size, { what: 'filesystem size' }), 'filesystem size');
  if (flags.free !== undefined) options.freePercent = int(flags.free, '--free');
  if (flags.inodes !== undefined) options.inodes = int(flags.inodes, '-N');
  if (flags.bytesPerInode !== undefined) options.inodeRatio = int(flags.bytesPerInode, '-i');
  const { loadTree } = await import('../../tree/index.js');
  const loaded = await loadTree(inputs, { squashOwner: flags.squashOwner, sourceDateEpoch: common.mtime });
  const tree = common.uid !== undefined ? withOwner(loaded, common.uid, common.gid ?? 0) : loaded;
  try {
    await mkdir(dirname(out), { recursive: true });
    const r = await buildExt4(tree, out, { ...options, maxSize: common.maxSize });
    return {
      output: out,
      type: 'ext4',
      format: r.format,
      'image-size': r.imageSize,
      entries: tree.entries.length,
      uuid: r.uuid,
      blocks: r.blocks,
      'free-blocks': r.freeBlocks,
      inodes: r.inodes,
      'used-inodes': r.usedInodes,
      groups: r.groups,
      'journal-blocks': r.journalBlocks,
    };
  } finally {
    await tree.close();
  }
}
