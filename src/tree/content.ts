/**
 * ContentSource implementations: a file on disk (opened on demand, never through a symlink), a
 * byte range of a shared open file (tar spool or an uncompressed tar read in place), and bytes in
 * memory (tests, tiny synthesised content). None buffers a whole file.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { native, nativeReadError } from '../storage/native.js';
import { fromSystemError, VmimgError } from '../util/errors.js';
import { showPath } from './path.js';
import { MAX_CONTENT_READ, type ContentSource } from './types.js';

/** Chunk size of ContentSource.stream(). */
export const STREAM_CHUNK = 1024 * 1024;

function checkRead(what: string, size: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || length > MAX_CONTENT_READ || offset + length > size) {
    throw new VmimgError('OUT_OF_BOUNDS', `Read of ${length} bytes at ${offset} is outside ${what} (${size} bytes)`, { offset, length, size });
  }
}

async function readExactly(handle: FileHandle, position: number, length: number, what: string): Promise<Uint8Array> {
  const out = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(out, done, length - done, position + done);
    if (bytesRead === 0) {
      throw new VmimgError('SOURCE_CHANGED', `${what} ended after ${done} of ${length} bytes at ${position} (changed while being read?)`, { position, length });
    }
    done += bytesRead;
  }
  return out;
}

/**
 * Files up to this size are read with synchronous calls: for small files the thread-pool round
 * trips of open/read/read/close cost far more than the reads (10k small files: seconds).
 */
export const SMALL_FILE = 256 * 1024;

const probe = Buffer.alloc(1);

/**
 * How a source file is opened: never through a symlink swapped in since the walk (O_NOFOLLOW),
 * and without blocking, so a FIFO swapped in cannot hang the build (O_NONBLOCK does nothing to
 * a regular file); the opened file must then still be a regular file.
 */
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

function notRegular(path: string): VmimgError {
  return new VmimgError('SOURCE_CHANGED', `'${path}' is no longer a regular file`, { path });
}

/**
 * Reads all of a small file (exactly `size` bytes, SOURCE_CHANGED otherwise) synchronously into
 * `into` (at least `size` bytes long), opened with OPEN_FLAGS.
 */
export function readSmallFileInto(fsPath: string | Buffer, path: string, size: number, into: Uint8Array): void {
  let fd: number;
  try {
    fd = openSync(fsPath, OPEN_FLAGS);
  } catch (e) {
    throw fromSystemError(e, path, 'open');
  }
  try {
    if (!fstatSync(fd).isFile()) throw notRegular(path);
    let done = 0;
    while (done < size) {
      const n = readSync(fd, into, done, size - done, done);
      if (n === 0) throw new VmimgError('SOURCE_CHANGED', `'${path}' ended after ${done} of ${size} bytes at 0 (changed while being read?)`, { position: 0, length: size });
      done += n;
    }
    if (readSync(fd, probe, 0, 1, size) !== 0) throw new VmimgError('SOURCE_CHANGED', `'${path}' grew past ${size} bytes while being read`, { path, size });
  } catch (e) {
    throw e instanceof VmimgError ? e : fromSystemError(e, path, 'read');
  } finally {
    closeSync(fd);
  }
}

/** One file of readSmallFiles: `size` bytes of `fsPath` into `into` (named `path` in errors). */
export interface SmallFileRead {
  fsPath: string | Buffer;
  path: string;
  size: number;
  into: Uint8Array;
}

/**
 * Reads several small files as readSmallFileInto does (exactly `size` bytes, O_NOFOLLOW) in one
 * call to the native helper, instead of four Node fs calls (open, read, probe, close) per file.
 * Returns undefined or the error of each file; without the native helper, reads them one by one
 * with readSmallFileInto.
 */
export function readSmallFiles(files: readonly SmallFileRead[]): Array<VmimgError | undefined> {
  if (native?.readFilesSync) {
    const r = native.readFilesSync(
      files.map((f) => f.fsPath),
      files.map((f) => f.size),
      files.map((f) => f.into),
    );
    return files.map((f, i) => nativeReadError(r[2 * i]!, r[2 * i + 1]!, f.path, f.size));
  }
  return files.map((f) => {
    try {
      readSmallFileInto(f.fsPath, f.path, f.size, f.into);
      return undefined;
    } catch (e) {
      return e instanceof VmimgError ? e : fromSystemError(e, f.path, 'read');
    }
  });
}

/** Reads all of a small file into a new buffer (see readSmallFileInto). */
function readSmallFile(fsPath: string | Buffer, path: string, size: number): Uint8Array {
  const out = Buffer.allocUnsafe(size);
  readSmallFileInto(fsPath, path, size, out);
  return out;
}

/** A regular file read by path when needed, opened with OPEN_FLAGS (no symlink, no FIFO). */
export function fileContent(fsPath: string | Buffer, size: number): ContentSource {
  const path = typeof fsPath === 'string' ? fsPath : showPath(fsPath);
  const openIt = async (): Promise<FileHandle> => {
    let handle: FileHandle;
    try {
      handle = await open(fsPath, OPEN_FLAGS);
    } catch (e) {
      throw fromSystemError(e, path, 'open');
    }
    if ((await handle.stat()).isFile()) return handle;
    await handle.close();
    throw notRegular(path);
  };
  return {
    size,
    fsPath,
    async *stream() {
      if (size <= SMALL_FILE) {
        const bytes = readSmallFile(fsPath, path, size);
        if (bytes.length > 0) yield bytes;
        return;
      }
      const handle = await openIt();
      try {
        let position = 0;
        while (position < size) {
          const chunk = await readExactly(handle, position, Math.min(STREAM_CHUNK, size - position), `'${path}'`);
          position += chunk.length;
          yield chunk;
        }
        const extra = await handle.read(Buffer.alloc(1), 0, 1, size);
        if (extra.bytesRead !== 0) throw new VmimgError('SOURCE_CHANGED', `'${path}' grew past ${size} bytes while being read`, { path, size });
      } finally {
        await handle.close();
      }
    },
    async read(offset, length) {
      checkRead(`'${path}'`, size, offset, length);
      const handle = await openIt();
      try {
        return await readExactly(handle, offset, length, `'${path}'`);
      } finally {
        await handle.close();
      }
    },
  };
}

/**
 * One open file shared by many ContentSources (a spool file, or a tar read in place); opened on
 * first use, closed by close(). Reads after close() reopen it, so a Tree stays usable until its
 * spool is removed.
 */
export class SharedFile {
  #handle: Promise<FileHandle> | undefined;

  constructor(readonly path: string) {}

  handle(): Promise<FileHandle> {
    this.#handle ??= open(this.path, constants.O_RDONLY).catch((e: unknown) => {
      this.#handle = undefined;
      throw fromSystemError(e, this.path, 'open');
    });
    return this.#handle;
  }

  async close(): Promise<void> {
    const h = this.#handle;
    this.#handle = undefined;
    if (h) await (await h).close().catch(() => undefined);
  }
}

/** `size` bytes at `offset` of a shared file. */
export function rangeContent(file: SharedFile, offset: number, size: number, what: string): ContentSource {
  return {
    size,
    async *stream() {
      let position = 0;
      while (position < size) {
        const n = Math.min(STREAM_CHUNK, size - position);
        const chunk = await readExactly(await file.handle(), offset + position, n, what);
        position += n;
        yield chunk;
      }
    },
    async read(at, length) {
      checkRead(what, size, at, length);
      return readExactly(await file.handle(), offset + at, length, what);
    },
  };
}

/** Content held in memory (tests and tiny synthesised files only). */
export function bufferContent(bytes: Uint8Array): ContentSource {
  return {
    size: bytes.length,
    async *stream() {
      for (let p = 0; p < bytes.length; p += STREAM_CHUNK) yield bytes.subarray(p, Math.min(bytes.length, p + STREAM_CHUNK));
    },
    async read(offset, length) {
      checkRead('in-memory content', bytes.length, offset, length);
      return bytes.slice(offset, offset + length);
    },
  };
}
