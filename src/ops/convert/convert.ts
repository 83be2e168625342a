/**
 * `convert`: one or more source images (concatenated, each with its backing chain opened under
 * the policy) into a new image of any writable format, written atomically (temporary file +
 * rename: a failed or interrupted convert leaves nothing behind), or into an existing raw
 * target with -n. Option meanings follow qemu-img 7.2's img_convert.
 */
import { stat } from 'node:fs/promises';
import { openChain, type ImageChain } from '../../chain/open.js';
import { resolveReferencedPath } from '../../chain/paths.js';
import { parseSnapshotParam } from '../snapshot-param.js';
import type { ChainPolicy } from '../../chain/policy.js';
import { createAtomically } from '../../storage/atomic.js';
import { createPairAtomically } from '../../storage/atomic-pair.js';
import type { Storage } from '../../storage/types.js';
import { FileStorage } from '../../storage/file.js';
import { unsynced } from '../../storage/unsynced.js';
import { zeroRange } from '../../storage/zero.js';
import { VmimgError } from '../../util/errors.js';
import { backingSizeError, dataFileWhereWarning, prepareCreate } from '../create.js';
import { getDriver, isFormatName } from '../../formats/registry.js';
import { splitOptionString } from '../../formats/options.js';
import { prepareBitmapCopy, withBitmaps } from './bitmaps.js';
import { copyChains } from './engine.js';
import type { ImageWriter } from '../../formats/writer.js';

export interface ConvertRequest {
  sources: string[];
  /** -f: format of every source (probed when absent). */
  sourceFormat?: string;
  /** -l: read this internal snapshot of the (single) source, parsed by parseSnapshotParam. */
  snapshot?: string;
  target: string;
  /** -O (default raw). */
  targetFormat?: string;
  /** -o strings, as for create. */
  optionStrings?: string[];
  /** -c */
  compress?: boolean;
  /** -B */
  backingFile?: string;
  /** -F */
  backingFormat?: string;
  /** -u: do not open the backing file given with -B. */
  unsafe?: boolean;
  /** -n: write into an existing target instead of creating one. */
  noCreate?: boolean;
  /** -S in bytes (default 4096; 0 = full allocation). */
  minSparse?: number;
  /** -m (1..16, default 8). */
  parallel?: number;
  /**
   * Flush the target to stable storage before returning (-t writeback and other modes); the
   * default is qemu-img convert's "unsafe" cache mode, which never flushes.
   */
  sync?: boolean;
  /** --target-is-zero (with -n). */
  targetIsZero?: boolean;
  /** --skip-broken-bitmaps (with --bitmaps): skip inconsistent bitmaps with a warning. */
  skipBrokenBitmaps?: boolean;
  /** --bitmaps: copy the source's persistent bitmaps into the qcow2 v3 target (bitmaps.ts). */
  bitmaps?: boolean;
  /**
   * --salvage: sectors that cannot be read (or whose mapping cannot be) become zeros, with a
   * warning each through onWarning, as qemu-img convert --salvage (src/ops/convert/salvage.ts).
   */
  salvage?: boolean;
  /** -q: no salvage warnings. */
  quiet?: boolean;
  /** The chain policy for a source. */
  policyFor: (source: string) => ChainPolicy;
  onProgress?: (done: number, total: number) => void;
  onWarning?: (message: string) => void;
}

export const DEFAULT_MIN_SPARSE = 4096;

export async function convertImages(req: ConvertRequest): Promise<void> {
  const parallel = req.parallel ?? 8;
  if (!Number.isInteger(parallel) || parallel < 1 || parallel > 16) {
    throw new VmimgError('USAGE', `Invalid number of coroutines '${req.parallel}'. Allowed number of coroutines is between 1 and 16`, { value: req.parallel });
  }
  const minSparse = req.minSparse ?? DEFAULT_MIN_SPARSE;
  if (req.sources.length === 0) throw new VmimgError('USAGE', 'Expecting at least one source image', {});
  if (req.targetIsZero && !req.noCreate) throw new VmimgError('USAGE', '--target-is-zero requires use of -n flag', {});
  if (req.backingFile !== undefined && req.noCreate) throw new VmimgError('USAGE', 'Cannot use -B with -n (the target already exists)', {});
  // img_convert reads the backing file back from the options: -o backing_file=F is -B F (and
  // backing_fmt is -F), with everything -B implies (unallocated source ranges stay unallocated,
  // zeros in the source's top layer are masked).
  const fromOptions = new Map<string, string>();
  for (const text of req.optionStrings ?? []) for (const [key, value] of splitOptionString(text)) fromOptions.set(key, value);
  const backingFile = req.backingFile ?? fromOptions.get('backing_file');
  const backingFormat = req.backingFormat ?? fromOptions.get('backing_fmt');
  // qemu-img first refuses -B for formats without backing files (prepareCreate says so), then -B without -F.
  if (backingFile !== undefined && backingFormat === undefined && !req.unsafe && (await supportsBacking(req.targetFormat ?? 'raw'))) {
    throw new VmimgError('BACKING_FORMAT_REQUIRED', 'Use of backing file requires explicit backing format (-F)', {});
  }
  if (backingFile !== undefined && req.sources.length > 1) {
    throw new VmimgError('USAGE', 'Having a backing file for the target makes no sense when concatenating multiple input images', { sources: req.sources.length });
  }

  if (req.skipBrokenBitmaps && !req.bitmaps) throw new VmimgError('USAGE', 'Use of --skip-broken-bitmaps requires --bitmaps', {});
  if (req.bitmaps && req.sources.length > 1) throw new VmimgError('USAGE', 'Copying bitmaps only possible with single source', {});
  // img_convert: "No support for concatenating multiple snapshot".
  if (req.snapshot !== undefined && req.sources.length > 1) throw new VmimgError('USAGE', 'No support for concatenating multiple snapshot', {});
  const snapshot = req.snapshot !== undefined ? parseSnapshotParam(req.snapshot) : undefined;

  const chains: ImageChain[] = [];
  try {
    for (const source of req.sources) chains.push(await openChain(source, { format: req.sourceFormat, policy: req.policyFor(source), ...(snapshot ? { snapshot } : {}) }));
    await refuseTargetInSources(req.target, chains);
    const bitmapCopy = req.bitmaps ? await prepareBitmapCopy(req, chains[0]!) : undefined;
    const total = chains.reduce((n, c) => n + c.top.virtualSize, 0);
    // The data copy, with the bitmap steps around it when --bitmaps asks for them.
    const copy = withBitmaps(
      (writer: ImageWriter, zeroTarget: boolean): Promise<void> =>
        copyChains(chains, writer, {
          minSparse,
          backing: backingFile !== undefined,
          zeroTarget,
          parallel,
          onProgress: req.onProgress,
          ...(req.salvage ? { salvage: { warn: req.quiet ? undefined : req.onWarning, compress: req.compress ?? false } } : {}),
        }),
      bitmapCopy,
    );

    if (req.noCreate) {
      await convertIntoExisting(req, total, copy, chains);
      return;
    }
    const prepared = await prepareCreate({
      filename: req.target,
      format: req.targetFormat ?? 'raw',
      size: BigInt(total),
      // img_convert sets the size option to the sources' total, whatever -o size said.
      sizeOverridesOptions: true,
      optionStrings: req.optionStrings,
      backingFile: req.backingFile,
      backingFormat: req.backingFormat,
      unsafe: req.unsafe,
      onWarning: req.onWarning,
    });
    const { driver } = prepared;
    if (!driver.createWriter) throw new VmimgError('UNSUPPORTED_OPTION', `Writing ${driver.name} images with convert is not supported yet`, { format: driver.name });
    // A qcow2 data file (-o data_file) is a second new file: created with the target, both or neither.
    const companion = driver.companionFile?.(prepared.ctx);
    if (companion !== undefined) {
      await refuseTargetInSources(companion, chains);
      const warning = dataFileWhereWarning(req.target, companion);
      if (warning) req.onWarning?.(warning);
    }
    const fill = async (file: Storage, data?: Storage): Promise<void> => {
      const storage = req.sync ? file : unsynced(file);
      const dataStorage = data && (req.sync ? data : unsynced(data));
      const writer = await driver.createWriter!(storage, prepared.ctx, req.compress ?? false, dataStorage).catch((e: unknown) => {
        throw backingSizeError(prepared, e);
      });
      await copy(writer, false);
      await writer.finish();
    };
    const options = { sync: req.sync ?? false };
    if (companion !== undefined) await createPairAtomically(req.target, companion, fill, options);
    else await createAtomically(req.target, (file) => fill(file), options);
  } finally {
    for (const c of chains) await c.close();
  }
}

/**
 * qemu-img cannot take the write lock on a file its sources hold open ("Failed to get "write"
 * lock"): a target that is one of the sources, a file of their backing chains, a data file or an
 * extent is refused before anything is written (replacing it would change the source).
 */
async function refuseTargetInSources(target: string, chains: readonly ImageChain[]): Promise<void> {
  const t = await stat(target).catch(() => undefined);
  if (!t) return;
  for (const chain of chains) {
    for (const layer of chain.layers) {
      for (const name of [layer.filename, ...layer.references().filter((r) => r.kind !== 'backing').map((r) => resolveReferencedPath(layer.filename, r.name))]) {
        const s = await stat(name).catch(() => undefined);
        if (s && s.dev === t.dev && s.ino === t.ino) {
          throw new VmimgError('USAGE', `${target}: Failed to get "write" lock: the file is also read by this convert (as '${name}')`, { target, source: name });
        }
      }
    }
  }
}

async function supportsBacking(format: string): Promise<boolean> {
  return isFormatName(format) && (await getDriver(format)).createOptions.some((o) => o.name === 'backing_file');
}

/**
 * convert -n: the target exists. A raw target is written straight through its file; any other
 * format through its driver's in-place write path (Image.write: qcow2, vmdk, vpc, vhdx), with the target's
 * backing chain opened under the policy for copy-on-write.
 */
async function convertIntoExisting(req: ConvertRequest, total: number, copy: (w: ImageWriter, zeroTarget: boolean) => Promise<void>, chains: readonly ImageChain[]): Promise<void> {
  const format = req.targetFormat ?? 'raw';
  if (req.compress) throw new VmimgError('UNSUPPORTED_OPTION', `Compression into an existing image is not supported by vmimg (convert -n -c, format ${format})`, { format });
  if (format !== 'raw') return convertIntoImage(req, format, total, copy, chains);
  const storage = await FileStorage.open(req.target, { writable: true });
  try {
    const size = await storage.size();
    if (size < total) throw new VmimgError('SIZE_OUT_OF_RANGE', `output file is smaller than input file (${size} < ${total} bytes)`, { size, total });
    const writer: ImageWriter = {
      virtualSize: size,
      granularity: 512,
      write: (offset, data) => storage.write(offset, data),
      // qemu-img convert zeroes with BDRV_REQ_MAY_UNMAP: file-posix punches a hole first.
      writeZeroes: (offset, length) => zeroRange(storage, offset, length),
      finish: async () => {
        if (req.sync) await storage.flush();
      },
    };
    await copy(writer, !req.targetIsZero);
    await writer.finish();
  } finally {
    await storage.close();
  }
}

async function convertIntoImage(req: ConvertRequest, format: string, total: number, copy: (w: ImageWriter, zeroTarget: boolean) => Promise<void>, chains: readonly ImageChain[]): Promise<void> {
  // Write barriers (flushes between dependent metadata stages) only when the cache mode asks
  // for durability; qemu-img's default "unsafe" ignores flushes.
  // Activated (qcow2: bitmaps marked in use) only after the checks below, so a refused convert
  // leaves the target untouched.
  const chain = await openChain(req.target, { format, policy: req.policyFor(req.target), writable: true, writeBarriers: req.sync ?? false, deferActivation: true });
  let closed = false;
  try {
    const top = chain.top;
    // The files the target writes besides itself (a qcow2 data file, vmdk extents) must not be
    // read by this convert either (qemu-img: "Failed to get "write" lock").
    for (const r of top.references()) if (r.kind !== 'backing') await refuseTargetInSources(resolveReferencedPath(req.target, r.name), chains);
    if (!top.writable || !top.write || !top.writeZeroes) {
      throw new VmimgError('UNSUPPORTED_OPTION', `convert -n into an existing ${top.format} image is not supported by vmimg (its driver cannot write in place)`, { format: top.format });
    }
    if (top.virtualSize < total) {
      throw new VmimgError('SIZE_OUT_OF_RANGE', `output image is smaller than input (${top.virtualSize} < ${total} bytes)`, { size: top.virtualSize, total });
    }
    await top.activate?.();
    const write = top.write.bind(top);
    const writeZeroes = top.writeZeroes.bind(top);
    const storeBitmaps = top.persistentBitmaps?.() !== undefined ? top.storePersistentBitmaps?.bind(top) : undefined;
    // No room for the bitmaps extension in the header: refused before any data is written, as for
    // a new target (qemu-img copies the data, then warns "Lost persistent bitmaps" and exits 0).
    const checkBitmaps = top.checkPersistentBitmaps?.bind(top);
    const writer: ImageWriter = {
      virtualSize: top.virtualSize,
      granularity: top.info().clusterSize ?? 512,
      write,
      // qemu-img convert zeroes with BDRV_REQ_MAY_UNMAP.
      writeZeroes: (offset, length) => writeZeroes(offset, length, { mayUnmap: true }),
      ...(storeBitmaps ? { writeBitmaps: storeBitmaps, ...(checkBitmaps ? { checkBitmaps } : {}) } : {}),
      finish: async () => {
        if (req.sync) await top.flush?.();
      },
    };
    await copy(writer, !req.targetIsZero);
    await writer.finish();
    closed = true;
    // Close writes metadata too (qcow2's bitmaps): its failure fails the convert. qemu-img only
    // warns there ("Lost persistent bitmaps …") and exits 0.
    await chain.closeChecked();
  } finally {
    if (!closed) await chain.close();
  }
}
