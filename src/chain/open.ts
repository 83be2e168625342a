/**
 * Opening images and backing chains. The top image is the one the user named; everything below
 * it is opened only through the chain Policy (src/chain/policy.ts), with depth and cycle limits.
 */
import { realpathSync } from 'node:fs';
import { FileStorage } from '../storage/file.js';
import type { Storage } from '../storage/types.js';
import { VmimgError } from '../util/errors.js';
import type { FileReference, Image, SnapshotSelector } from '../formats/image.js';
import { getDriver, isFormatName, probeFormat } from '../formats/registry.js';
import type { FormatName } from '../formats/types.js';
import { fileIdentity, resolveReferencedPath } from './paths.js';
import { ChainReader } from './read.js';
import { checkReference, openReference, type ChainPolicy } from './policy.js';

export interface OpenImageOptions {
  /** Force a format (-f); otherwise probed from the bytes. */
  format?: string;
  /** Governs every file the image refers to. */
  policy: ChainPolicy;
  /** Open the top image for writing (its driver's write path); backing layers stay read-only. */
  writable?: boolean;
  /** See OpenOptions.writeBarriers. */
  writeBarriers?: boolean;
  /** Opened by `check`: see OpenOptions.check. */
  check?: boolean;
  /** Read this internal snapshot of the top image (qcow2 only; see OpenOptions.snapshot). */
  snapshot?: SnapshotSelector;
  /**
   * Leave Image.activate of a writable top image to the caller, to run once its own checks have
   * passed. By default openImage activates as soon as the image is open, and openChain once the
   * whole chain is open and checked.
   */
  deferActivation?: boolean;
}

export interface OpenedImage {
  image: Image;
  /** True when the format was guessed as raw by probing (qemu-img warns about this). */
  probedRaw: boolean;
}

/** Opens one image from a storage, with its references gated by `policy`. */
export async function openImageFromStorage(storage: Storage, filename: string, options: OpenImageOptions): Promise<OpenedImage> {
  const format = options.format ?? (await probeFormat(storage));
  const driver = await getDriver(format);
  if (options.snapshot && format !== 'qcow2') {
    throw new VmimgError('UNSUPPORTED_IMAGE', `Failed to load snapshot: Block format '${driver.name}' used by device '' does not support temporarily loading internal snapshots`, { format: driver.name });
  }
  if (!driver.open) {
    throw new VmimgError('UNSUPPORTED_IMAGE', `Reading ${driver.name} images is not supported yet`, { format: driver.name });
  }
  const image = await driver.open(storage, {
    filename,
    openReference: (ref: FileReference) => openReference(options.policy, filename, ref, options.writable ?? false),
    check: options.check,
    writable: options.writable ?? false,
    writeBarriers: options.writeBarriers,
    ...(options.snapshot ? { snapshot: options.snapshot } : {}),
  });
  if (!Number.isSafeInteger(image.virtualSize) || image.virtualSize < 0) {
    await image.close();
    throw new VmimgError('UNSUPPORTED_IMAGE', `Virtual size of '${filename}' is beyond what vmimg can address (2^53 bytes)`, { filename });
  }
  if (image.writable && !options.deferActivation) await image.activate?.();
  return { image, probedRaw: options.format === undefined && format === 'raw' };
}

/** Opens the file at `path` as an image. The top image is the user's choice: no policy check. */
export async function openImage(path: string, options: OpenImageOptions): Promise<OpenedImage> {
  const storage = await FileStorage.open(path, { writable: options.writable ?? false });
  try {
    return await openImageFromStorage(storage, path, options);
  } catch (e) {
    await storage.close().catch(() => undefined);
    throw e;
  }
}

/** An image and the backing images below it, top first. */
export class ImageChain {
  constructor(readonly layers: Image[]) {}

  get top(): Image {
    return this.layers[0]!;
  }

  /** Closes every layer, ignoring errors (for read-only use and for paths already failing). */
  async close(): Promise<void> {
    for (const layer of this.layers) await layer.close().catch(() => undefined);
  }

  /**
   * Closes every layer and rethrows the first error: for a chain that was written, where close
   * writes metadata of its own (qcow2 stores its persistent bitmaps there) and a failure means
   * the image is not what the caller wrote.
   */
  async closeChecked(): Promise<void> {
    let first: unknown;
    for (const layer of this.layers) {
      try {
        await layer.close();
      } catch (e) {
        first ??= e;
      }
    }
    if (first !== undefined) throw first;
  }
}

/**
 * Opens `path` and its whole backing chain under `policy`: each backing file must be permitted
 * by the policy, the chain may not revisit a file, and it may be at most policy.maxDepth deep.
 * A backing file without a recorded format is probed (never guessed from the name).
 */
export async function openChain(path: string, options: OpenImageOptions): Promise<ImageChain> {
  // A writable top is activated (qcow2: bitmaps marked in use) only once nothing below can refuse
  // the open: a missing or denied backing file must leave the image as it was.
  const { image: top } = await openImage(path, { ...options, deferActivation: true });
  const layers: Image[] = [top];
  const seen = new Set<string>([realOrSelf(path)]);
  try {
    let current = top;
    while (current.backing) {
      const ref: FileReference = { kind: 'backing', name: current.backing.name };
      if (layers.length > options.policy.maxDepth) {
        throw new VmimgError('CHAIN_TOO_DEEP', `Backing chain of '${path}' is deeper than ${options.policy.maxDepth} images`, { path, maxDepth: options.policy.maxDepth });
      }
      const target = checkReference(options.policy, current.filename, ref);
      if (seen.has(target)) {
        throw new VmimgError('BACKING_LOOP', `Backing file '${current.backing.name}' of '${current.filename}' creates an infinite loop`, { image: current.filename, name: current.backing.name });
      }
      seen.add(target);
      const recorded = current.backing.format;
      if (recorded !== undefined && !isFormatName(recorded)) {
        throw new VmimgError('BACKING_FORMAT_UNSUPPORTED', `Backing file '${current.backing.name}' of '${current.filename}' has unsupported format '${recorded}'`, { format: recorded });
      }
      const storage = await openReference(options.policy, current.filename, ref);
      let next: Image;
      try {
        const name = resolveReferencedPath(current.filename, current.backing.name);
        next = (await openImageFromStorage(storage, name, { ...options, format: recorded as FormatName | undefined, writable: false, snapshot: undefined })).image;
      } catch (e) {
        await storage.close().catch(() => undefined);
        throw e instanceof VmimgError ? e.within(`while opening backing file '${current.backing.name}' of '${current.filename}'`) : e;
      }
      layers.push(next);
      current = next;
    }
  } catch (e) {
    await new ImageChain(layers).close();
    throw e;
  }
  if (top.writable) {
    try {
      refuseWrittenReferenceInChain(top, layers);
      if (!options.deferActivation) await top.activate?.();
    } catch (e) {
      await new ImageChain(layers).close();
      throw e;
    }
  }
  if (top.writable && top.setBackingReader && layers.length > 1) top.setBackingReader(backingReader(new ChainReader(layers.slice(1))));
  return new ImageChain(layers);
}

/** What a writable top image reads below itself: the backing chain, zeros past its end. */
function backingReader(below: ChainReader): (offset: number, length: number) => Promise<Uint8Array> {
  return async (offset, length) => {
    const out = new Uint8Array(length);
    const n = Math.max(0, Math.min(length, below.virtualSize - offset));
    if (n > 0) await below.readInto(offset, out.subarray(0, n));
    return out;
  };
}

function realOrSelf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/**
 * A writable top image writes into the files it references besides its backing file (a qcow2
 * data file): none may be a file of its own backing chain, which copy-on-write reads and which
 * must not change (QEMU fails to take the write lock there). Checked by inode, at open.
 */
function refuseWrittenReferenceInChain(top: Image, layers: readonly Image[]): void {
  const id = fileIdentity;
  const chainFiles = new Map<string, string>();
  for (const layer of layers.slice(1)) {
    const key = id(layer.filename);
    if (key !== undefined) chainFiles.set(key, layer.filename);
  }
  for (const ref of top.references()) {
    if (ref.kind === 'backing') continue;
    const key = id(resolveReferencedPath(top.filename, ref.name));
    const layer = key === undefined ? undefined : chainFiles.get(key);
    if (layer !== undefined) {
      throw new VmimgError('REFERENCE_DENIED', `${ref.kind === 'data-file' ? 'external data file' : 'vmdk extent'} '${ref.name}' named by '${top.filename}' is the backing file '${layer}' of the same chain; it cannot be opened for writing`, { image: top.filename, kind: ref.kind, name: ref.name, backing: layer });
    }
  }
}
