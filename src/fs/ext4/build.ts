/**
 * The ext4 builder's entry points: plan (pure), then stream the filesystem into an ImageWriter
 * of any format — raw by default, or qcow2/vmdk/vhdx/vpc through the driver's createWriter, so
 * `--format qcow2` needs no raw intermediate. The file variant writes atomically (temporary
 * file + rename): a failed build leaves nothing behind.
 */
import { getDriver } from '../../formats/registry.js';
import type { ImageWriter } from '../../formats/writer.js';
import { prepareCreate } from '../../ops/create.js';
import { createAtomically } from '../../storage/atomic.js';
import type { Tree } from '../../tree/types.js';
import { VmimgError } from '../../util/errors.js';
import { emitExt4 } from './emit.js';
import { formatUuid, type Ext4Options } from './options.js';
import { planExt4, type Ext4Plan } from './plan.js';

export interface Ext4BuildOptions extends Ext4Options {
  /** Image format of the output file (default raw). */
  format?: string;
  /** Format creation options, qemu-img -o style ("cluster_size=65536,compat=1.1"). */
  formatOptions?: string[];
  /** Refuse (FS_TOO_LARGE) before writing when the filesystem would be larger than this many bytes. */
  maxSize?: number;
}

export interface Ext4Result {
  /** Filesystem size in bytes (the image's virtual size). */
  imageSize: number;
  format: string;
  uuid: string;
  blocks: number;
  freeBlocks: number;
  inodes: number;
  usedInodes: number;
  groups: number;
  journalBlocks: number;
}

function summary(plan: Ext4Plan, format: string, freeBlocks: number): Ext4Result {
  return {
    imageSize: plan.imageSize,
    format,
    uuid: formatUuid(plan.uuid),
    blocks: plan.geo.blocksCount,
    freeBlocks,
    inodes: plan.geo.inodesPerGroup * plan.geo.groups,
    usedInodes: plan.table.lastIno,
    groups: plan.geo.groups,
    journalBlocks: plan.journalBlocks,
  };
}

/** Writes `plan` through `writer` and finishes it. */
export async function writeExt4(plan: Ext4Plan, writer: ImageWriter): Promise<{ freeBlocks: number; freeInodes: number }> {
  if (writer.virtualSize < plan.imageSize) throw new VmimgError('INTERNAL', `output image (${writer.virtualSize} bytes) is smaller than the filesystem (${plan.imageSize})`, {});
  const free = await emitExt4(plan, writer);
  await writer.finish();
  return free;
}

/** Builds an ext4 image of `tree` at `output` (format `options.format`, default raw). */
export async function buildExt4(tree: Tree, output: string, options: Ext4BuildOptions = {}): Promise<Ext4Result> {
  const format = options.format ?? 'raw';
  const driver = await getDriver(format);
  if (!driver.createWriter) throw new VmimgError('UNSUPPORTED_OPTION', `writing ext4 into ${format} images is not supported`, { format });
  const plan = planExt4(tree, options);
  if (options.maxSize !== undefined && plan.imageSize > options.maxSize) {
    throw new VmimgError('FS_TOO_LARGE', `the ext4 filesystem would be ${plan.imageSize} bytes, more than the maximum ${options.maxSize}`, { size: plan.imageSize, maxSize: options.maxSize });
  }
  const prepared = await prepareCreate({ filename: output, format, size: BigInt(plan.imageSize), optionStrings: options.formatOptions });
  const free = await createAtomically(output, async (storage) => {
    const writer = await driver.createWriter!(storage, prepared.ctx, false);
    return writeExt4(plan, writer);
  });
  return summary(plan, format, free.freeBlocks);
}
