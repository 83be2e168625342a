/**
 * The one error type of vmimg. Every failure the library reports is a VmimgError with a stable
 * `code` (part of the public contract: scripts and the CLI's JSON output key on it), a message
 * that names the offending value, optional structured `details`, and context layers added as
 * the error travels up ("while opening backing file 'a.qcow2'").
 *
 * The library never calls process.exit; src/cli maps codes to exit statuses.
 */

/** Stable error codes. Append only; never rename or reuse a code. */
export const ERROR_CODES = [
  // input and options
  'INVALID_SIZE',
  'SIZE_OUT_OF_RANGE',
  'INVALID_OPTION',
  'UNKNOWN_OPTION',
  'UNSUPPORTED_OPTION',
  'UNKNOWN_FORMAT',
  'USAGE',
  // backing files
  'BACKING_FORMAT_REQUIRED',
  'BACKING_NOT_FOUND',
  'BACKING_UNREADABLE',
  'BACKING_UNPARSABLE',
  'BACKING_FORMAT_UNSUPPORTED',
  'BACKING_TOO_LARGE',
  // files and I/O
  'PATH_TOO_LONG',
  'FILE_NOT_FOUND',
  'READ_FAILED',
  'WRITE_FAILED',
  'OUT_OF_BOUNDS',
  // image contents
  'CORRUPT_IMAGE',
  /** A persistent dirty bitmap flagged in use (not saved cleanly): its content is unknown. */
  'INCONSISTENT_BITMAP',
  'UNSUPPORTED_IMAGE',
  /** A VHDX log holds writes not yet applied and the image was opened read-only. */
  'LOG_REPLAY_REQUIRED',
  // chain policy (references an image makes to other files)
  'REFERENCE_DENIED',
  'BACKING_LOOP',
  'CHAIN_TOO_DEEP',
  // virtio-blk (src/virtio): driver/device protocol failures and request statuses
  'GUEST_MEMORY_FAULT',
  'VIRTIO_INIT_FAILED',
  'VIRTIO_DEVICE_ERROR',
  'VIRTIO_IOERR',
  'VIRTIO_UNSUPP',
  'VIRTIO_READ_ONLY',
  // file trees (src/tree) and filesystem images (src/fs)
  'UNSAFE_PATH',
  'CORRUPT_ARCHIVE',
  'UNSUPPORTED_ENTRY',
  'SOURCE_CHANGED',
  'FS_TOO_LARGE',
  'CHECKSUM_MISMATCH',
  'FS_TOO_SMALL',
  'FS_PATH_NOT_FOUND',
  'FS_WRONG_TYPE',
  // downloads and the fetch cache (src/rootfs/fetch)
  'HTTP_ERROR',
  'FETCH_FAILED',
  'FETCH_TIMEOUT',
  'LOCK_TIMEOUT',
  'DIGEST_NOT_PINNED',
  // flists (src/flist): manifests, blobs and blob stores
  'CORRUPT_MANIFEST',
  'INVALID_STORE_URL',
  'BLOB_NOT_FOUND',
  'BLOB_CORRUPT',
  'STORE_READ_ONLY',
  'STORE_UNREACHABLE',
  'STORE_AUTH_FAILED',
  'STORE_BUCKET_MISSING',
  'STORE_ERROR',
  'NO_STORE_FOR_BLOB',
  'FLIST_PATH_NOT_FOUND',
  // Alpine packages (src/rootfs/apk)
  'APK_BAD_SIGNATURE',
  'APK_UNTRUSTED_KEY',
  'APK_UNKNOWN_PACKAGE',
  'APK_UNSATISFIABLE',
  'APK_CORRUPT_PACKAGE',
  'APK_CORRUPT_INDEX',
  // rootfs recipes (src/rootfs/recipe)
  'INVALID_RECIPE',
  'RECIPE_NOT_FOUND',
  // cpio archives (src/fs/cpio)
  'CPIO_LIMIT',
  // catch-all for bugs
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class VmimgError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;
  /** Outermost first, e.g. ["while opening backing file 'base.qcow2'"]. */
  readonly context: string[];

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VmimgError';
    this.code = code;
    this.details = details;
    this.context = [];
  }

  /** Adds an outer context layer and returns this error (for `throw err.within(...)`). */
  within(layer: string): this {
    this.context.unshift(layer);
    return this;
  }

  /** The message with its context layers, outermost first: "a: b: message". */
  fullMessage(): string {
    return [...this.context, this.message].join(': ');
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.fullMessage(), ...(Object.keys(this.details).length ? { details: this.details } : {}) };
  }
}

export function isVmimgError(e: unknown): e is VmimgError {
  return e instanceof VmimgError;
}

/** Runs `fn`; a VmimgError it throws gets `layer` added as context, anything else is rethrown. */
export async function withContext<T>(layer: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof VmimgError) throw e.within(layer);
    throw e;
  }
}

/** Wraps a Node system error (ENOENT, EACCES, ...) from touching `path` into a VmimgError. */
export function fromSystemError(e: unknown, path: string, action: 'open' | 'read' | 'write' | 'create' | 'rename'): VmimgError {
  if (e instanceof VmimgError) return e;
  const errno = (e as NodeJS.ErrnoException | undefined)?.code;
  const reason = (e as Error | undefined)?.message ?? String(e);
  if (errno === 'ENOENT' && (action === 'open' || action === 'read')) {
    return new VmimgError('FILE_NOT_FOUND', `Could not open '${path}': No such file or directory`, { path, errno }, { cause: e });
  }
  if (errno === 'ENAMETOOLONG') {
    return new VmimgError('PATH_TOO_LONG', `Path too long: '${path}'`, { path, errno }, { cause: e });
  }
  const code = action === 'read' || action === 'open' ? 'READ_FAILED' : 'WRITE_FAILED';
  return new VmimgError(code, `Could not ${action} '${path}': ${reason}`, { path, errno }, { cause: e });
}
