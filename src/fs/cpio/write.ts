/**
 * Streams a planned newc archive: headers, file content read chunk by chunk from the Tree's
 * ContentSources, padding, trailer; optionally through gzip (Node's zlib: gzip header with mtime 0
 * and OS 3, so the same input gives the same bytes). Nothing holds more than one coalescing buffer
 * and one content chunk in memory. The file variant writes through createAtomically: a failed
 * build leaves no file behind and never clobbers an existing one.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { createAtomically } from '../../storage/atomic.js';
import { showPath } from '../../tree/path.js';
import type { Tree } from '../../tree/types.js';
import { VmimgError } from '../../util/errors.js';
import { encodeHeader, encodeTrailer, pad4 } from './format.js';
import { planCpio, type CpioMember, type CpioPlan } from './plan.js';

export type CpioCompression = 'none' | 'gzip';
export const CPIO_COMPRESSIONS: readonly CpioCompression[] = ['none', 'gzip'];

export interface CpioOptions {
  /** Output compression (default 'none'). */
  compress?: CpioCompression;
  /** gzip level 1..9 (default 6, zlib's default). */
  gzipLevel?: number;
  /** Largest output in bytes (FS_TOO_LARGE; checked before writing when uncompressed). */
  maxSize?: number;
}

export interface CpioResult {
  /** Bytes written (compressed size with gzip). */
  imageSize: number;
  /** Bytes of the uncompressed archive. */
  archiveSize: number;
  entries: number;
  dataBytes: number;
  droppedXattrs: number;
  compress: CpioCompression;
}

/** Small pieces (headers, padding) are gathered into writes of about this size. */
const COALESCE_BYTES = 256 * 1024;
const PADDING = Buffer.alloc(4);

async function* memberData(m: CpioMember): AsyncGenerator<Uint8Array> {
  const size = m.header.filesize;
  if (m.symlinkTarget) {
    yield m.symlinkTarget;
  } else if (m.content && size > 0) {
    let pos = 0;
    for await (const chunk of m.content.stream()) {
      if (pos + chunk.length > size) break;
      pos += chunk.length;
      yield chunk;
    }
    if (pos !== size) {
      throw new VmimgError('SOURCE_CHANGED', `'${showPath(m.name)}' did not have the ${size} bytes it had when the tree was read`, { path: showPath(m.name) });
    }
  }
  if (pad4(size) > 0) yield PADDING.subarray(0, pad4(size));
}

/** The uncompressed archive of `plan` as a sequence of chunks (each at most one content chunk or COALESCE_BYTES). */
export async function* cpioChunks(plan: CpioPlan): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const take = (): Buffer => {
    const b = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    return b;
  };
  for (const m of plan.members) {
    pending.push(encodeHeader(m.header, m.name));
    pendingBytes += pending[pending.length - 1]!.length;
    for await (const chunk of memberData(m)) {
      if (chunk.length >= COALESCE_BYTES) {
        if (pendingBytes > 0) yield take();
        yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
      } else {
        pending.push(Buffer.from(chunk));
        pendingBytes += chunk.length;
        if (pendingBytes >= COALESCE_BYTES) yield take();
      }
    }
  }
  pending.push(encodeTrailer());
  pendingBytes += pending[pending.length - 1]!.length;
  yield take();
}

function checkOptions(options: CpioOptions): { compress: CpioCompression; level: number } {
  const compress = options.compress ?? 'none';
  if (!CPIO_COMPRESSIONS.includes(compress)) {
    throw new VmimgError('UNSUPPORTED_OPTION', `cpio compression '${String(compress)}' is not supported (supported: ${CPIO_COMPRESSIONS.join(', ')})`, { compress });
  }
  const level = options.gzipLevel ?? 6;
  if (!Number.isInteger(level) || level < 1 || level > 9) throw new VmimgError('INVALID_OPTION', `gzip level must be an integer in 1..9, not ${level}`, { level });
  return { compress, level };
}

/**
 * Writes the archive of `tree` to `sink` chunk by chunk (each call awaited before the next, so
 * the sink's pace bounds memory). Limits are checked (CPIO_LIMIT) before the first call.
 */
export async function writeCpio(tree: Tree, sink: (chunk: Buffer) => Promise<void>, options: CpioOptions = {}): Promise<CpioResult> {
  checkOptions(options);
  return writePlannedCpio(planCpio(tree), sink, options);
}

/** writeCpio for an already planned archive. */
export async function writePlannedCpio(plan: CpioPlan, sink: (chunk: Buffer) => Promise<void>, options: CpioOptions = {}): Promise<CpioResult> {
  const { compress, level } = checkOptions(options);
  const max = options.maxSize;
  if (max !== undefined && compress === 'none' && plan.size > max) {
    throw new VmimgError('FS_TOO_LARGE', `the cpio archive would be ${plan.size} bytes, more than the maximum ${max}`, { size: plan.size, maxSize: max });
  }
  let written = 0;
  const put = async (chunk: Buffer): Promise<void> => {
    if (max !== undefined && written + chunk.length > max) {
      throw new VmimgError('FS_TOO_LARGE', `the compressed cpio archive is more than the maximum ${max} bytes`, { maxSize: max });
    }
    await sink(chunk);
    written += chunk.length;
  };
  if (compress === 'gzip') {
    await pipeline(Readable.from(cpioChunks(plan)), createGzip({ level }), async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) await put(chunk);
    });
  } else {
    for await (const chunk of cpioChunks(plan)) await put(chunk);
  }
  return { imageSize: written, archiveSize: plan.size, entries: plan.members.length, dataBytes: plan.dataBytes, droppedXattrs: plan.droppedXattrs, compress };
}

/** Writes the archive of `tree` to the file `target`, atomically (temporary file + rename). */
export async function buildCpio(tree: Tree, target: string, options: CpioOptions = {}): Promise<CpioResult> {
  checkOptions(options);
  const plan = planCpio(tree); // limits are checked before a file is created
  return createAtomically(target, async (storage) => {
    let offset = 0;
    return writePlannedCpio(
      plan,
      async (chunk) => {
        await storage.write(offset, chunk);
        offset += chunk.length;
      },
      options,
    );
  });
}
