/**
 * `create`: options → backing facts → plan → atomic write. Modelled on qemu-img 7.2's
 * img_create/bdrv_img_create: type errors in options and backing problems are reported before
 * the "Formatting" line; format-level (semantic) errors after it, as qemu-img does.
 */
import { randomBytes } from 'node:crypto';
import { resolveReferencedPath } from '../chain/paths.js';
import { createAtomically } from '../storage/atomic.js';
import { createPairAtomically } from '../storage/atomic-pair.js';
import { FileStorage } from '../storage/file.js';
import type { Storage } from '../storage/types.js';
import { VmimgError } from '../util/errors.js';
import { INT64_MAX, parseSize } from '../util/size.js';
import { CreateOptions, splitOptionString } from '../formats/options.js';
import { getDriver, isFormatName, probeFormat } from '../formats/registry.js';
import type { CreateContext, FormatDriver, HeaderSummary, Layout } from '../formats/types.js';

export interface CreateRequest {
  filename: string;
  /** -f; default raw. */
  format?: string;
  /** The positional SIZE argument (qemu SIZE syntax) or an exact byte count. */
  size?: string | bigint;
  /** Each -o argument as given. */
  optionStrings?: string[];
  /** -b */
  backingFile?: string;
  /** -F */
  backingFormat?: string;
  /** -u: do not open the backing file (its size then must be given). */
  unsafe?: boolean;
  /** `size` replaces an `-o size=` instead of conflicting with it (convert: the sources' total). */
  sizeOverridesOptions?: boolean;
  /** Called with qemu-img's "Formatting '...', fmt=..." line before the image is written. */
  onFormatting?: (line: string) => void;
  /** Called with warnings (stderr in the CLI). */
  onWarning?: (message: string) => void;
  random?: (length: number) => Uint8Array;
  now?: () => number;
}

export interface CreateResult {
  filename: string;
  format: string;
  virtualSize: bigint;
  /** File length in bytes. */
  fileLength: number;
  /** Allocated bytes (st_blocks × 512). */
  actualSize: number;
  clusterSize?: number;
  subformat?: string;
  backingFilename?: string;
  backingFormat?: string;
  /** The external data file created with the image (qcow2 data_file), as named. */
  dataFile?: string;
}

/** Parses and type-checks the options of a create request without touching any file. */
export function parseCreateOptions(driver: FormatDriver, req: CreateRequest): CreateOptions {
  const opts = new CreateOptions(driver.createOptions, driver.unsupportedCreateOptions);
  for (const text of req.optionStrings ?? []) {
    for (const [key, value] of splitOptionString(text)) opts.setText(key, value);
  }
  const supportsBacking = driver.createOptions.some((s) => s.name === 'backing_file');
  if ((req.backingFile !== undefined || req.backingFormat !== undefined) && !supportsBacking) {
    throw new VmimgError('UNSUPPORTED_OPTION', `Backing file not supported for file format '${driver.name}'`, { format: driver.name });
  }
  if (req.backingFile !== undefined) opts.setText('backing_file', req.backingFile);
  if (req.backingFormat !== undefined) opts.setText('backing_fmt', req.backingFormat);
  if (req.size !== undefined) {
    if (opts.has('size') && !req.sizeOverridesOptions) throw new VmimgError('USAGE', 'The image size must be specified only once', {});
    const size = typeof req.size === 'bigint' ? req.size : parseSize(req.size, { what: 'image size', max: INT64_MAX });
    if (size < 0n || size > INT64_MAX) throw new VmimgError('SIZE_OUT_OF_RANGE', `Invalid image size ${size}: must be between 0 and ${INT64_MAX}`, { value: size.toString() });
    opts.setText('size', size.toString());
  }
  return opts;
}

/** A create request resolved to its driver, typed options and planner context. */
export interface PreparedCreate {
  driver: FormatDriver;
  options: CreateOptions;
  ctx: CreateContext;
  formattingLine: string;
}

/**
 * Resolves a create request: parses options, reads the backing image's facts, settles the size
 * and announces the Formatting line. Shared by `create` (planner) and `convert` (writer).
 */
export async function prepareCreate(req: CreateRequest): Promise<PreparedCreate> {
  const driver = await getDriver(req.format ?? 'raw');
  const options = parseCreateOptions(driver, req);
  const backing = await backingFacts(req, options, driver.needsBackingHeader ?? false);

  let sizeFromBacking = false;
  if (!options.has('size')) {
    // With -u the backing file's size is never used, even when a driver read its header (vmdk).
    if (!backing || req.unsafe) throw new VmimgError('USAGE', `${req.filename}: Image creation needs a size parameter`, { filename: req.filename });
    options.setText('size', backing.virtualSize.toString());
    sizeFromBacking = true;
  }
  const size = options.big('size')!;
  if (size > INT64_MAX) throw new VmimgError('SIZE_OUT_OF_RANGE', `Invalid image size ${size}: must be between 0 and ${INT64_MAX}`, { value: size.toString() });

  const formattingLine = `Formatting '${req.filename}', fmt=${driver.name} ${options.formatLine()}`;
  req.onFormatting?.(formattingLine);

  const ctx: CreateContext = {
    filename: req.filename,
    size,
    options,
    backing,
    sizeFromBacking,
    random: req.random ?? ((n) => new Uint8Array(randomBytes(n))),
    now: req.now ?? (() => Date.now()),
  };
  return { driver, options, ctx, formattingLine };
}

/** A size error caused by the backing file's size becomes BACKING_TOO_LARGE (with a hint). */
export function backingSizeError(p: PreparedCreate, e: unknown): unknown {
  if (!(e instanceof VmimgError) || e.code !== 'SIZE_OUT_OF_RANGE' || !p.ctx.sizeFromBacking) return e;
  return new VmimgError(
    'BACKING_TOO_LARGE',
    `The backing image's size ${p.ctx.size} is too large for a ${p.driver.name} image with these options: ${e.message}` +
      (p.driver.name === 'qcow2' && !/cluster.size/.test(e.message) ? ' (try a larger cluster_size)' : ''),
    { size: p.ctx.size.toString(), format: p.driver.name },
    { cause: e },
  );
}

/** Plans an image without writing it: returns the options, backing facts and layout. */
export async function planCreate(req: CreateRequest): Promise<{ driver: FormatDriver; options: CreateOptions; layout: Layout; formattingLine: string }> {
  const prepared = await prepareCreate(req);
  let layout: Layout;
  try {
    layout = prepared.driver.planCreate(prepared.ctx);
  } catch (e) {
    throw backingSizeError(prepared, e);
  }
  return { driver: prepared.driver, options: prepared.options, layout, formattingLine: prepared.formattingLine };
}

/** Creates the image described by `req` atomically. */
export async function createImage(req: CreateRequest): Promise<CreateResult> {
  const { driver, options, layout } = await planCreate(req);
  const fileLength = layout.length;
  const dataFile = layout.dataFile;
  if (dataFile) {
    const warning = dataFileWhereWarning(req.filename, dataFile.name);
    if (warning) req.onWarning?.(warning);
    await createPairAtomically(req.filename, dataFile.name, async (storage, data) => {
      await executeLayout(data, { ...dataFile, summary: layout.summary });
      await executeLayout(storage, layout);
    });
  } else {
    await createAtomically(req.filename, (storage) => executeLayout(storage, layout));
  }
  const check = await FileStorage.open(req.filename);
  const actualSize = await check.allocatedSize();
  await check.close();
  const result: CreateResult = {
    filename: req.filename,
    format: driver.name,
    virtualSize: layout.summary.virtualSize,
    fileLength,
    actualSize,
  };
  if (layout.summary.clusterSize !== undefined) result.clusterSize = layout.summary.clusterSize;
  if (layout.summary.subformat !== undefined) result.subformat = layout.summary.subformat;
  const bf = options.str('backing_file');
  if (bf !== undefined) result.backingFilename = bf;
  const bfmt = options.str('backing_fmt');
  if (bfmt !== undefined) result.backingFormat = bfmt;
  if (dataFile) result.dataFile = dataFile.name;
  return result;
}

/**
 * A relative data file name is created relative to the working directory (as qemu-img does) but
 * opened by vmimg relative to the image's directory: a warning when the two differ.
 */
export function dataFileWhereWarning(image: string, dataFile: string): string | undefined {
  if (dataFile.startsWith('/')) return undefined;
  const opened = resolveReferencedPath(image, dataFile);
  if (opened === dataFile) return undefined;
  return `data file '${dataFile}' is created relative to the working directory, as qemu-img does, but vmimg opens it relative to the image's directory ('${opened}'); use an absolute name or create the image in the working directory`;
}

const ZERO_CHUNK = 4 * 1024 * 1024;

/** Writes a plan into empty storage: length, physical allocation, then the metadata writes. */
export async function executeLayout(storage: Storage, layout: Layout): Promise<void> {
  await storage.truncate(layout.length);
  if (layout.allocate.length > 0) {
    const zeros = new Uint8Array(ZERO_CHUNK);
    for (const range of layout.allocate) {
      if (!range.write && storage.allocate) {
        await storage.allocate(range.offset, range.length);
        continue;
      }
      for (let off = 0; off < range.length; off += ZERO_CHUNK) {
        const n = Math.min(ZERO_CHUNK, range.length - off);
        await storage.write(range.offset + off, n === ZERO_CHUNK ? zeros : zeros.subarray(0, n));
      }
    }
  }
  for (const w of layout.writes) await storage.write(w.offset, w.data);
}

/**
 * Opens the backing file named by -b (relative to the new image's directory) unless -u, and
 * reads its header facts. The format is detected from the bytes; -F is only a hint, used when
 * the bytes carry no signature (raw, fixed VHD), so a wrong -F cannot change the size read.
 */
async function backingFacts(req: CreateRequest, options: CreateOptions, evenIfUnsafe: boolean): Promise<HeaderSummary | undefined> {
  const backingFile = options.str('backing_file');
  const backingFmt = options.str('backing_fmt');
  if (backingFile === undefined) {
    if (backingFmt !== undefined) throw new VmimgError('USAGE', `${req.filename}: Backing format specified without a backing file`, {});
    return undefined;
  }
  if (backingFile === '') throw new VmimgError('USAGE', `${req.filename}: Expected backing file name, got empty string`, {});
  if (backingFmt !== undefined && !isFormatName(backingFmt)) {
    throw new VmimgError('BACKING_FORMAT_UNSUPPORTED', `Unknown backing file format '${backingFmt}'`, { backingFormat: backingFmt });
  }
  if (req.unsafe) {
    if (backingFmt === undefined) throw backingFormatRequired(req.filename, undefined);
    if (!evenIfUnsafe) return undefined;
  }

  const path = resolveReferencedPath(req.filename, backingFile);
  let storage: Storage;
  try {
    storage = await FileStorage.open(path);
  } catch (e) {
    const errno = e instanceof VmimgError ? (e.details['errno'] as string | undefined) : undefined;
    if (e instanceof VmimgError && e.code === 'FILE_NOT_FOUND') {
      throw new VmimgError('BACKING_NOT_FOUND', `Could not open backing file '${backingFile}' (${path}): No such file or directory`, { backingFile, path }, { cause: e });
    }
    throw new VmimgError('BACKING_UNREADABLE', `Could not open backing file '${backingFile}' (${path}): ${errno ?? (e as Error).message}`, { backingFile, path, errno }, { cause: e });
  }
  try {
    const detected = await probeFormat(storage);
    if (backingFmt === undefined) throw backingFormatRequired(req.filename, detected);
    const readAs = detected !== 'raw' ? detected : (backingFmt as HeaderSummary['format']);
    if (readAs !== backingFmt) {
      req.onWarning?.(`backing file '${backingFile}' has the content of a ${readAs} image but -F says ${backingFmt}; its size is read as ${readAs}`);
    }
    try {
      return await (await getDriver(readAs)).readHeader(storage);
    } catch (e) {
      if (e instanceof VmimgError && (e.code === 'CORRUPT_IMAGE' || e.code === 'UNSUPPORTED_IMAGE' || e.code === 'OUT_OF_BOUNDS')) {
        throw new VmimgError('BACKING_UNPARSABLE', `Could not read backing file '${backingFile}' as ${readAs}: ${e.message}`, { backingFile, format: readAs }, { cause: e });
      }
      if (e instanceof VmimgError && e.code === 'READ_FAILED') {
        throw new VmimgError('BACKING_UNREADABLE', `Could not read backing file '${backingFile}': ${e.message}`, { backingFile }, { cause: e });
      }
      throw e;
    }
  } finally {
    await storage.close();
  }
}

function backingFormatRequired(filename: string, detected: string | undefined): VmimgError {
  return new VmimgError(
    'BACKING_FORMAT_REQUIRED',
    `${filename}: Backing file specified without backing format` + (detected ? ` (detected format of ${detected}; pass -F ${detected})` : ' (pass -F FMT)'),
    detected ? { detected } : {},
  );
}
