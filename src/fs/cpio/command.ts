/**
 * `vmimg mkfs -t cpio [--compress gzip] [--mtime S] [--owner U:G] [--squash-owner] [--max-size SIZE]
 * (DIR|TAR)... OUT` → buildCpio (src/cli/mkfs.ts dispatches here; OUT may also be given with -o).
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Tree } from '../../tree/types.js';
import { VmimgError } from '../../util/errors.js';
import { buildCpio, type CpioCompression } from './write.js';

export interface CpioFlags {
  out?: string;
  squashOwner?: boolean;
  compress?: string;
}

/** Every entry owned by uid:gid (--owner). */
function withOwner(tree: Tree, uid: number, gid: number): Tree {
  return { entries: tree.entries.map((e) => ({ ...e, uid, gid })), close: () => tree.close() };
}

export async function cpioCommand(args: string[], flags: CpioFlags, common: { uid?: number; gid?: number; mtime?: number; maxSize?: number }): Promise<Record<string, unknown>> {
  const inputs = [...args];
  const out = flags.out ?? (inputs.length >= 2 ? inputs.pop()! : undefined);
  if (out === undefined) throw new VmimgError('USAGE', 'mkfs -t cpio needs inputs and an output file: mkfs -t cpio [--compress gzip] (DIR|TAR)... OUT', {});
  const compress = (flags.compress ?? 'none') as CpioCompression;
  const { loadTree } = await import('../../tree/index.js');
  const loaded = await loadTree(inputs, { squashOwner: flags.squashOwner, sourceDateEpoch: common.mtime });
  const tree = common.uid !== undefined ? withOwner(loaded, common.uid, common.gid ?? 0) : loaded;
  try {
    await mkdir(dirname(out), { recursive: true });
    const r = await buildCpio(tree, out, { compress, maxSize: common.maxSize });
    return {
      output: out,
      type: 'cpio',
      format: 'newc',
      compress: r.compress,
      'image-size': r.imageSize,
      'archive-size': r.archiveSize,
      entries: r.entries,
      'data-bytes': r.dataBytes,
      'dropped-xattrs': r.droppedXattrs,
      ...(r.droppedXattrs > 0 ? { warnings: [`${r.droppedXattrs} entries have extended attributes, which a newc archive cannot hold; they were left out`] } : {}),
    };
  } finally {
    await tree.close();
  }
}
