/**
 * A tar / tar.gz / tar.zst stream as a tree source, read without extracting and without root:
 * ownership, device nodes, hard links, long names (GNU 'L'/'K', pax path/linkpath), pax
 * uid/gid/mtime (nanoseconds) and pax xattrs (SCHILY.xattr.*, LIBARCHIVE.xattr.*) are kept.
 *
 * Content: a tar stream is sequential, so file bytes are either
 *  - read in place, when the input is an uncompressed tar in a regular file: each file's content
 *    is the byte range after its header (nothing is copied), or
 *  - spooled, otherwise: every file's bytes are appended, while parsing, to one temporary file
 *    (under `spoolDir`, default os.tmpdir()), and content reads that file's ranges.
 * Either way memory holds metadata only (stream chunks are bounded by the streams' high-water
 * marks); disk use for spooling equals the archive's total file size. close() removes the spool.
 *
 * Member names are untrusted (normaliseArchivePath): absolute, '..' and NUL names are refused.
 * GNU sparse members and other unknown typeflags are refused with UNSUPPORTED_ENTRY.
 */
import { createReadStream } from 'node:fs';
import { mkdtemp, open, rm, stat, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fromSystemError, isVmimgError, VmimgError } from '../util/errors.js';
import { rangeContent, SharedFile } from './content.js';
import { decompressor, detectCompression, type Compression } from './decompress.js';
import { normaliseArchivePath, showPath } from './path.js';
import { parsePaxId, parsePaxTime, paxXattrs } from './pax.js';
import { rawPaxExtractor, type PaxHeader } from './tar-extract.js';
import { PERMISSION_MASK, type EntryType, type RawEntry } from './types.js';

export interface TarSourceOptions {
  /** Directory for the spool file (compressed or piped input). Default: os.tmpdir(). */
  spoolDir?: string;
}

/** Raw entries of one archive plus the resources their content reads from. */
export interface TarSource {
  entries: RawEntry[];
  compression: Compression;
  /** 'in-place' (uncompressed regular file) or 'spool'. */
  content: 'in-place' | 'spool';
  close(): Promise<void>;
}

const TYPES: Record<string, EntryType | undefined> = {
  file: 'file',
  'contiguous-file': 'file',
  link: 'hardlink',
  symlink: 'symlink',
  directory: 'dir',
  'character-device': 'char',
  'block-device': 'block',
  fifo: 'fifo',
};

/** Reads the archive at `path` (a file; compression detected from its first bytes). */
export async function readTarFile(path: string, options: TarSourceOptions = {}): Promise<TarSource> {
  let head: Uint8Array;
  let regular: boolean;
  try {
    const st = await stat(path);
    regular = st.isFile();
    const fh = await open(path, 'r');
    try {
      head = new Uint8Array(4);
      const { bytesRead } = await fh.read(head, 0, 4, 0);
      head = head.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch (e) {
    throw fromSystemError(e, path, 'open');
  }
  const compression = detectCompression(head);
  const inPlace = compression === 'none' && regular ? new SharedFile(path) : undefined;
  return readTar(createReadStream(path), compression, path, inPlace, options);
}

/** Reads an archive from a stream (stdin, a download); content is always spooled. */
export async function readTarStream(input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, name: string, options: TarSourceOptions = {}): Promise<TarSource> {
  const iterator = (Symbol.asyncIterator in input ? input : Readable.from(input))[Symbol.asyncIterator]() as AsyncIterator<Uint8Array>;
  const first = await iterator.next();
  const head = first.done ? new Uint8Array(0) : first.value;
  async function* replay(): AsyncGenerator<Uint8Array> {
    if (!first.done) yield first.value;
    for (let r = await iterator.next(); !r.done; r = await iterator.next()) yield r.value;
  }
  return readTar(Readable.from(replay()), detectCompression(head), name, undefined, options);
}

async function readTar(input: Readable, compression: Compression, name: string, inPlace: SharedFile | undefined, options: TarSourceOptions): Promise<TarSource> {
  let spool: { dir: string; file: SharedFile; writer: FileHandle; length: number } | undefined;
  const cleanup = async (): Promise<void> => {
    await inPlace?.close();
    if (spool) {
      await spool.writer.close().catch(() => undefined);
      await spool.file.close();
      await rm(spool.dir, { recursive: true, force: true });
    }
  };
  try {
    if (!inPlace) {
      const dir = await mkdtemp(join(options.spoolDir ?? tmpdir(), 'vmimg-tar-'));
      const path = join(dir, 'content');
      spool = { dir, file: new SharedFile(path), writer: await open(path, 'w+', 0o600), length: 0 };
    }
    const extractor = rawPaxExtractor();
    const transform = decompressor(compression);
    const streams = [input, ...(transform ? [transform] : []), extractor] as unknown as NodeJS.ReadWriteStream[];
    const piping = pipeline(streams);
    piping.catch(() => undefined); // reported through the iterator below
    const entries: RawEntry[] = [];
    try {
      for await (const member of extractor) {
        const header = member.header as PaxHeader;
        const entry = entryFromHeader(header);
        if (entry.type === 'file' && entry.size > 0) {
          if (inPlace) {
            entry.content = rangeContent(inPlace, header.byteOffset, entry.size, `'${showPath(entry.path)}' in '${name}'`);
            for await (const _ of member) void _;
          } else {
            const start = spool!.length;
            let got = 0;
            for await (const chunk of member as AsyncIterable<Uint8Array>) {
              await spool!.writer.write(chunk, 0, chunk.length, start + got);
              got += chunk.length;
            }
            if (got !== entry.size) throw new VmimgError('CORRUPT_ARCHIVE', `'${showPath(entry.path)}' in '${name}' holds ${got} of ${entry.size} bytes`, {});
            spool!.length += got;
            entry.content = rangeContent(spool!.file, start, entry.size, `'${showPath(entry.path)}' (spooled from '${name}')`);
          }
        } else {
          for await (const _ of member) void _;
        }
        entries.push(entry);
      }
      await piping;
    } catch (e) {
      extractor.destroy();
      input.destroy();
      throw archiveError(e, name);
    }
    if (spool) await spool.writer.close();
    return { entries, compression, content: inPlace ? 'in-place' : 'spool', close: cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

function archiveError(e: unknown, name: string): VmimgError {
  if (isVmimgError(e)) return e.within(`while reading archive '${name}'`);
  const message = (e as Error | undefined)?.message ?? String(e);
  return new VmimgError('CORRUPT_ARCHIVE', `Archive '${name}' is unreadable: ${message}`, { archive: name }, { cause: e });
}

function checkNumber(value: number, what: string, path: Buffer, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new VmimgError('CORRUPT_ARCHIVE', `Member '${showPath(path)}' has an invalid ${what} (${value})`, { path: showPath(path), [what]: value });
  }
  return value;
}

/** Converts one tar-stream header (plus its raw pax records) into a RawEntry; POSIX ustar/pax. */
export function entryFromHeader(header: PaxHeader): RawEntry {
  const pax = header.vmimgPax ?? new Map<string, Buffer>();
  const nameBytes = pax.get('path') ?? Buffer.from(header.name, 'latin1');
  const path = normaliseArchivePath(nameBytes);
  const type = TYPES[header.type ?? ''];
  if (type === undefined) {
    throw new VmimgError('UNSUPPORTED_ENTRY', `Member '${showPath(nameBytes)}' has an unsupported tar entry type (${header.type ?? 'unknown typeflag, e.g. GNU sparse'})`, { path: showPath(nameBytes) });
  }
  if (path.length === 0 && type !== 'dir') throw new VmimgError('UNSAFE_PATH', `Member '${showPath(nameBytes)}' names the root but is not a directory`, {});
  const paxText = (k: string): string | undefined => pax.get(k)?.toString('utf8');
  const uidText = paxText('uid');
  const gidText = paxText('gid');
  const mtimeText = paxText('mtime');
  const seconds = header.mtime.getTime() / 1000;
  const entry: RawEntry = {
    path,
    type,
    mode: header.mode & PERMISSION_MASK,
    uid: uidText !== undefined ? parsePaxId(uidText, 'uid') : checkNumber(header.uid, 'uid', path, 0xffffffff),
    gid: gidText !== undefined ? parsePaxId(gidText, 'gid') : checkNumber(header.gid, 'gid', path, 0xffffffff),
    mtimeNs: mtimeText !== undefined ? parsePaxTime(mtimeText, 'mtime') : BigInt(checkInt(seconds, 'mtime', path)) * 1_000_000_000n,
    size: type === 'file' ? checkNumber(header.size, 'size', path) : 0,
    xattrs: paxXattrs(pax),
  };
  const linkBytes = pax.get('linkpath') ?? Buffer.from(header.linkname ?? '', 'latin1');
  if (type === 'symlink') {
    if (linkBytes.length === 0 || linkBytes.includes(0)) throw new VmimgError('UNSAFE_PATH', `Symlink '${showPath(path)}' has an empty or NUL-containing target`, { path: showPath(path) });
    entry.symlinkTarget = Buffer.from(linkBytes);
    entry.size = linkBytes.length;
  }
  if (type === 'hardlink') entry.linkTarget = normaliseArchivePath(linkBytes, `hard link target of '${showPath(path)}'`);
  if (type === 'char' || type === 'block') {
    entry.rdev = { major: checkNumber(header.devmajor, 'devmajor', path, 0xffffffff), minor: checkNumber(header.devminor, 'devminor', path, 0xffffffff) };
  }
  return entry;
}

function checkInt(value: number, what: string, path: Buffer): number {
  if (!Number.isSafeInteger(value)) throw new VmimgError('CORRUPT_ARCHIVE', `Member '${showPath(path)}' has an invalid ${what}`, { path: showPath(path) });
  return value;
}
