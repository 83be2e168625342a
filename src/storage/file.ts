/** File-backed Storage: positional I/O on one file descriptor. */
import { constants } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { open, statfs, type FileHandle } from 'node:fs/promises';
import { fromSystemError, VmimgError } from '../util/errors.js';
import { checkRange } from './memory.js';
import { errnoError, native, nativeReadError } from './native.js';
import type { FileCopy, Storage } from './types.js';

/** Most buffers one pwritev takes (Linux's UIO_MAXIOV). */
const IOV_MAX = 1024;

/** statfs f_type of ext2/3/4 (linux/magic.h EXT4_SUPER_MAGIC). */
const EXT4_SUPER_MAGIC = 0xef53;

const constantsErrno = osConstants.errno;

/** Writes at least this long into a new file on ext4 allocate their blocks first (see createExclusive). */
const ALLOCATE_WRITES_FROM = 64 * 1024;

export class FileStorage implements Storage {
  readonly name: string;
  readonly writable: boolean;
  /** Present when the native helper can copy files in (see Storage.copyFiles). */
  readonly copyFiles?: (files: readonly FileCopy[]) => Promise<Array<VmimgError | undefined>>;

  /** Large writes go through native.writeAllocating (createExclusive on ext4). */
  #allocateWrites = false;

  /** True while writes of 64 KiB or more allocate their blocks first (see createExclusive). */
  get allocatesWrites(): boolean {
    return this.#allocateWrites;
  }

  /**
   * Native calls running on the pool with this file's descriptor: close() waits for them. Node's
   * FileHandle.close() waits only for its own operations; closing under a native pwrite would let
   * the number be reused by the next open() and the write land in that file.
   */
  readonly #native = new Set<Promise<unknown>>();
  #closing = false;

  /** The descriptor for a native call, or EBADF (as a closed FileHandle reports it) once closing. */
  #nativeFd(): number {
    if (this.#closing || this.fh.fd < 0) throw errnoError(constantsErrno.EBADF, this.name, 'write');
    return this.fh.fd;
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#native.add(p);
    const done = (): void => void this.#native.delete(p);
    p.then(done, done);
    return p;
  }

  private constructor(private readonly fh: FileHandle, name: string, writable: boolean) {
    this.name = name;
    this.writable = writable;
    if (writable && native?.copyFiles) this.copyFiles = (files) => this.#copyFiles(files);
  }

  async #copyFiles(files: readonly FileCopy[]): Promise<Array<VmimgError | undefined>> {
    for (const f of files) checkRange(this.name, f.offset, f.size, Number.MAX_SAFE_INTEGER);
    const fd = this.#nativeFd();
    const r = await this.#track(
      native!.copyFiles!(
        fd,
        files.map((f) => f.fsPath),
        files.map((f) => f.size),
        files.map((f) => f.offset),
      ),
    );
    return files.map((f, i) => (r[3 * i + 2]! !== 0 ? errnoError(r[3 * i + 2]!, this.name, 'write') : nativeReadError(r[3 * i]!, r[3 * i + 1]!, f.path, f.size)));
  }

  /**
   * Opens an existing file read-only (default) or read-write. `name` (default: `path`) is how
   * the storage is named in messages and in `map` output.
   */
  static async open(path: string, options: { writable?: boolean; name?: string } = {}): Promise<FileStorage> {
    const writable = options.writable ?? false;
    try {
      // O_NONBLOCK: opening a FIFO (a name inside a hostile image may point at one) must not
      // block until a writer appears — a blocked open(2) holds a thread-pool thread that not
      // even SIGTERM's exit gets past. Linux ignores the flag for regular files and block devices.
      const fh = await open(path, (writable ? constants.O_RDWR : constants.O_RDONLY) | constants.O_NONBLOCK);
      const st = await fh.stat();
      if (st.isDirectory() || st.isFIFO() || st.isSocket()) {
        await fh.close();
        throw new VmimgError('READ_FAILED', `Could not open '${path}': ${st.isDirectory() ? 'Is a directory' : 'it is a FIFO or socket, not an image file'}`, { path });
      }
      return new FileStorage(fh, options.name ?? path, writable);
    } catch (e) {
      throw fromSystemError(e, path, 'open');
    }
  }

  /**
   * Creates a new file that must not exist yet (O_EXCL), mode 0644 before umask, named `name` in
   * messages (atomic creation names the target, not its temporary file). On ext4, large
   * writes into it allocate their blocks with fallocate just before the data goes in
   * (native.writeAllocating): a buffered write into allocated (unwritten) blocks skips delayed
   * allocation's per-block work, and filling a new file that way costs the kernel about 40% less
   * (docs/convert.md "What bounds the uncompressed cases"). Only bytes that are written get
   * blocks, so the file ends up allocated exactly as with plain writes. Other file systems keep
   * plain writes: on tmpfs fallocate would zero pages the write then fills.
   */
  static async createExclusive(path: string, name = path): Promise<FileStorage> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'wx+', 0o644);
    } catch (e) {
      throw fromSystemError(e, path, 'create');
    }
    const storage = new FileStorage(fh, name, true);
    if (native?.writeAllocating) {
      const fs = await statfs(path).catch(() => undefined);
      storage.#allocateWrites = fs?.type === EXT4_SUPER_MAGIC;
    }
    return storage;
  }

  /**
   * The file's length. A block device's stat size is 0: its length is where SEEK_END lands (as
   * QEMU's host_device driver asks the device), so `convert -n` can write into a disk.
   */
  async size(): Promise<number> {
    const st = await this.fh.stat();
    if (st.isBlockDevice() && native?.seekEnd) {
      try {
        return native.seekEnd(this.fh.fd, 0);
      } catch (e) {
        throw fromSystemError(e, this.name, 'read');
      }
    }
    return st.size;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    await this.readInto(offset, out);
    return out;
  }

  async readInto(offset: number, target: Uint8Array): Promise<void> {
    const length = target.length;
    checkRange(this.name, offset, length);
    let done = 0;
    try {
      while (done < length) {
        const { bytesRead } = await this.fh.read(target, done, length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
    } catch (e) {
      throw fromSystemError(e, this.name, 'read');
    }
    target.fill(0, done); // past EOF reads as zeros
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (!this.writable) throw new VmimgError('WRITE_FAILED', `'${this.name}' is open read-only`, { path: this.name });
    checkRange(this.name, offset, data.length);
    if (this.#allocateWrites && data.length >= ALLOCATE_WRITES_FROM) return this.#writeAllocating(offset, data);
    let done = 0;
    try {
      while (done < data.length) {
        const { bytesWritten } = await this.fh.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      }
    } catch (e) {
      throw fromSystemError(e, this.name, 'write');
    }
  }

  async #writeAllocating(offset: number, data: Uint8Array): Promise<void> {
    const [writeErrno, allocateErrno] = await this.#track(native!.writeAllocating!(this.#nativeFd(), data, offset));
    // A file system that cannot allocate ahead (EOPNOTSUPP) is not asked again; the write went in anyway.
    if (allocateErrno === constantsErrno.EOPNOTSUPP || allocateErrno === constantsErrno.ENOSYS) this.#allocateWrites = false;
    if (writeErrno !== 0) throw errnoError(writeErrno!, this.name, 'write');
  }

  /** Storage.writev: pwritev of at most IOV_MAX parts a call; a short write resumes where it stopped. */
  async writev(offset: number, parts: readonly Uint8Array[]): Promise<void> {
    if (!this.writable) throw new VmimgError('WRITE_FAILED', `'${this.name}' is open read-only`, { path: this.name });
    let total = 0;
    for (const p of parts) total += p.length;
    checkRange(this.name, offset, total);
    let pending = parts.filter((p) => p.length > 0);
    let at = offset;
    try {
      while (pending.length > 0) {
        const batch = pending.slice(0, IOV_MAX);
        let { bytesWritten } = await this.fh.writev(batch, at);
        at += bytesWritten;
        let used = 0;
        while (used < batch.length && bytesWritten >= batch[used]!.length) bytesWritten -= batch[used++]!.length;
        pending = pending.slice(used);
        if (bytesWritten > 0) pending[0] = pending[0]!.subarray(bytesWritten);
      }
    } catch (e) {
      throw fromSystemError(e, this.name, 'write');
    }
  }

  async truncate(length: number): Promise<void> {
    checkRange(this.name, 0, length, Number.MAX_SAFE_INTEGER);
    try {
      await this.fh.truncate(length);
    } catch (e) {
      const errno = (e as NodeJS.ErrnoException).code;
      if (errno === 'EFBIG' || errno === 'EINVAL') {
        throw new VmimgError('SIZE_OUT_OF_RANGE', `Could not resize '${this.name}' to ${length} bytes: the file system does not allow a file this large`, { path: this.name, length, errno }, { cause: e });
      }
      throw fromSystemError(e, this.name, 'write');
    }
  }

  async allocatedSize(): Promise<number> {
    return (await this.fh.stat()).blocks * 512;
  }

  async flush(): Promise<void> {
    try {
      await this.fh.datasync();
    } catch (e) {
      throw fromSystemError(e, this.name, 'write');
    }
  }

  async close(): Promise<void> {
    this.#closing = true;
    while (this.#native.size > 0) await Promise.allSettled([...this.#native]);
    await this.fh.close();
  }

  /** SEEK_DATA/SEEK_HOLE through the native helper, like QEMU's file-posix find_allocation. */
  async blockStatus(offset: number, length: number): Promise<{ data: boolean; length: number }> {
    checkRange(this.name, offset, length, Number.MAX_SAFE_INTEGER);
    // SEEK_DATA answers ENXIO at or past the end of the file and SEEK_HOLE never goes past it, so
    // only the fallbacks need the file size (an fstat per call would dominate small reads).
    const fallback = async (): Promise<{ data: boolean; length: number }> => {
      const size = await this.size();
      return offset >= size ? { data: false, length } : { data: true, length: Math.min(length, size - offset) };
    };
    if (!native) return fallback();
    try {
      const dataAt = native.seekData(this.fh.fd, offset);
      if (dataAt === -1) return { data: false, length };
      if (dataAt > offset) return { data: false, length: Math.min(length, dataAt - offset) };
      const holeAt = native.seekHole(this.fh.fd, offset);
      return { data: true, length: Math.max(1, Math.min(length, holeAt - offset)) };
    } catch {
      return fallback();
    }
  }

  /** posix_fallocate through the native helper. */
  async allocate(offset: number, length: number): Promise<void> {
    checkRange(this.name, offset, length, Number.MAX_SAFE_INTEGER);
    if (!native) throw new VmimgError('WRITE_FAILED', `Cannot preallocate '${this.name}': native helpers are not built`, { path: this.name });
    try {
      native.allocate(this.fh.fd, offset, length);
    } catch (e) {
      throw fromSystemError(e, this.name, 'write');
    }
  }

  /**
   * Punches a hole (the range reads as zeros, the size is kept), as QEMU's file driver answers a
   * write-zeroes request that may unmap. False when the native helper or the file system cannot.
   */
  async punchHole(offset: number, length: number): Promise<boolean> {
    if (!this.writable) throw new VmimgError('WRITE_FAILED', `'${this.name}' is open read-only`, { path: this.name });
    checkRange(this.name, offset, length, Number.MAX_SAFE_INTEGER);
    if (!native?.punchHole || length === 0) return length === 0;
    try {
      native.punchHole(this.fh.fd, offset, length);
      return true;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EOPNOTSUPP' || code === 'ENOSYS' || code === 'EINVAL') return false;
      throw fromSystemError(e, this.name, 'write');
    }
  }
}
