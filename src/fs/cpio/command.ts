/**
 * `vmimg mkfs -t cpio [--compress gzip] [--owner U:G] [--mtime S] (DIR|TAR)... OUT` → a newc
 * archive (an initramfs when gzip'd). OUT may be the last argument or -o.
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Tree } from '../../tree/types.js';
import { VmimgError } from '../../util/errors.js';
import { buildCpio } from './build.js';

export async function cpioCommand(args: string[], flags: { out?: string; compress?: string; squashOwner?: boolean }, common: { uid?: number; gid?: number; mtime?: number }): Promise<Record<string, unknown>> {
  const inputs = [...args];
  const out = flags.out ?? (inputs.length >= 2 ? inputs.pop()! : undefined);
  if (out === undefined) throw new VmimgError('USAGE', 'mkfs -t cpio needs inputs and an output file: mkfs -t cpio [--compress gzip] (DIR|TAR)... OUT', {});
  if (flags.compress !== undefined && flags.compress !== 'gzip' && flags.compress !== 'none') {
    throw new VmimgError('UNSUPPORTED_OPTION', `--compress '${flags.compress}' is not supported for cpio (gzip or none)`, { value: flags.compress });
  }
  const { loadTree } = await import('../../tree/index.js');
  const loaded = await loadTree(inputs, { squashOwner: flags.squashOwner, sourceDateEpoch: common.mtime });
  const tree: Tree = common.uid !== undefined ? { entries: loaded.entries.map((e) => ({ ...e, uid: common.uid!, gid: common.gid ?? 0 })), close: () => loaded.close() } : loaded;
  try {
    await mkdir(dirname(out), { recursive: true });
    const r = await buildCpio(tree, out, { gzip: flags.compress === 'gzip' });
    return { output: out, type: 'cpio', 'image-size': r.bytes, entries: r.entries, compression: r.compressed ? 'gzip' : 'none' };
  } finally {
    await tree.close();
  }
}
