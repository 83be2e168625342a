/**
 * The packagefs reader over any BlockSource: open validates all metadata once (validate.ts,
 * including the metadata hash), after which list/stat/read work on the validated model. File
 * content is streamed in bounded chunks and its SHA-256 checked at the end of every full read.
 */
import { createHash } from 'node:crypto';
import { VmimgError } from '../../util/errors.js';
import { comparePaths, showPath } from '../../tree/path.js';
import { decodeEntry, decodeSuperblock, ENTRY_SIZE, INDEX_OFFSET, metadataHash, SUPERBLOCK_SIZE, type Superblock } from './format.js';
import { MAX_SOURCE_READ, type BlockSource } from './source.js';
import { corrupt, validateEntries, validateSuperblock, type Geometry, type PackagefsEntry } from './validate.js';

export type { PackagefsEntry } from './validate.js';

/** Chunk size of file streams. */
const FILE_CHUNK = 1024 * 1024;

async function readChunked(source: BlockSource, offset: number, length: number): Promise<Buffer> {
  const out = Buffer.alloc(length);
  for (let done = 0; done < length; ) {
    const n = Math.min(MAX_SOURCE_READ, length - done);
    const part = await source.read(offset + done, n);
    if (part.length !== n) throw new VmimgError('READ_FAILED', `packagefs: short read of ${part.length} of ${n} bytes at ${offset + done}`, {});
    out.set(part, done);
    done += n;
  }
  return out;
}

/** Converts a user path ("/usr/bin/x", "usr/bin/x/", "" or "/" for the root) to entry path bytes. */
export function lookupPath(path: string | Buffer): Buffer {
  const bytes = typeof path === 'string' ? Buffer.from(path) : path;
  let start = 0;
  let end = bytes.length;
  while (start < end && bytes[start] === 0x2f) start++;
  while (end > start && bytes[end - 1] === 0x2f) end--;
  return bytes.subarray(start, end);
}

export interface VerifyResult {
  checked: number;
  mismatches: Array<{ path: Buffer; expected: string; actual: string }>;
}

export class PackagefsReader {
  private constructor(
    readonly source: BlockSource,
    readonly superblock: Superblock,
    readonly geometry: Geometry,
    readonly entries: readonly PackagefsEntry[],
  ) {}

  /** Opens and validates the image; CORRUPT_IMAGE / UNSUPPORTED_IMAGE name what is wrong. */
  static async open(source: BlockSource): Promise<PackagefsReader> {
    if (!Number.isSafeInteger(source.size) || source.size < SUPERBLOCK_SIZE) throw corrupt(`image of ${source.size} bytes is too small for a superblock`);
    const head = Buffer.from(await source.read(0, SUPERBLOCK_SIZE));
    const sb = decodeSuperblock(head);
    if (!sb) throw new VmimgError('UNSUPPORTED_IMAGE', 'Not a packagefs image (magic VMIPKGFS not found)', {});
    const g = validateSuperblock(sb, source.size);
    const index = await readChunked(source, INDEX_OFFSET, g.entryCount * ENTRY_SIZE);
    const namesAndPad = await readChunked(source, g.namesOffset, g.dataOffset - g.namesOffset);
    if (!metadataHash([head, index, namesAndPad]).equals(sb.metadataSha256)) throw corrupt('metadata checksum mismatch (superblock, index or names are damaged)');
    const records = Array.from({ length: g.entryCount }, (_, i) => decodeEntry(index, i * ENTRY_SIZE));
    const entries = validateEntries(records, namesAndPad.subarray(0, g.namesLength), g);
    return new PackagefsReader(source, sb, g, entries);
  }

  /** The entry at `path`, or undefined (binary search in path order). */
  stat(path: string | Buffer): PackagefsEntry | undefined {
    const key = lookupPath(path);
    let lo = 0;
    let hi = this.entries.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const c = comparePaths(this.entries[mid]!.path, key);
      if (c === 0) return this.entries[mid];
      if (c < 0) lo = mid + 1;
      else hi = mid - 1;
    }
    return undefined;
  }

  /** The entries directly inside directory `path` (FILE_NOT_FOUND / USAGE when it isn't one). */
  list(path: string | Buffer = ''): PackagefsEntry[] {
    const dir = this.require(path);
    if (dir.type !== 'dir') throw new VmimgError('USAGE', `'${showPath(dir.path)}' is not a directory`, {});
    return this.entries.filter((e) => e.index !== dir.index && e.path.length > dir.path.length && (dir.path.length === 0 ? !e.path.includes(0x2f) : e.path[dir.path.length] === 0x2f && e.path.subarray(0, dir.path.length).equals(dir.path) && !e.path.subarray(dir.path.length + 1).includes(0x2f)));
  }

  /** The entry at `path`, or FILE_NOT_FOUND naming it. */
  require(path: string | Buffer): PackagefsEntry {
    const e = this.stat(path);
    if (!e) throw new VmimgError('FILE_NOT_FOUND', `'${showPath(lookupPath(path))}' is not in the packagefs image`, { path: showPath(lookupPath(path)) });
    return e;
  }

  /** Streams a file's content; CHECKSUM_MISMATCH at the end when it does not hash as recorded. */
  async *readFile(entry: PackagefsEntry): AsyncGenerator<Uint8Array> {
    if (entry.type !== 'file') throw new VmimgError('USAGE', `'${showPath(entry.path)}' is a ${entry.type}, not a file`, {});
    const hash = createHash('sha256');
    for (let pos = 0; pos < entry.size; ) {
      const n = Math.min(FILE_CHUNK, entry.size - pos);
      const chunk = await this.source.read(entry.dataOffset + pos, n);
      hash.update(chunk);
      pos += n;
      yield chunk;
    }
    const actual = hash.digest();
    if (!actual.equals(entry.sha256)) {
      throw new VmimgError('CHECKSUM_MISMATCH', `'${showPath(entry.path)}': content sha256 ${actual.toString('hex')} does not match the recorded ${entry.sha256.toString('hex')}`, { path: showPath(entry.path) });
    }
  }

  /** Reads [offset, offset+length) of a file (no hash check; length ≤ 16 MiB). */
  async readRange(entry: PackagefsEntry, offset: number, length: number): Promise<Uint8Array> {
    if (entry.type !== 'file' || !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || length > MAX_SOURCE_READ || offset + length > entry.size) {
      throw new VmimgError('OUT_OF_BOUNDS', `Read of ${length} bytes at ${offset} is outside '${showPath(entry.path)}' (${entry.size} bytes)`, {});
    }
    return length === 0 ? new Uint8Array(0) : this.source.read(entry.dataOffset + offset, length);
  }

  /** Re-hashes files (all, or those given) and symlink targets; reports every mismatch. */
  async verify(only?: readonly PackagefsEntry[]): Promise<VerifyResult> {
    const result: VerifyResult = { checked: 0, mismatches: [] };
    for (const e of only ?? this.entries) {
      if (e.type === 'dir') continue;
      const hash = createHash('sha256');
      if (e.type === 'symlink') hash.update(e.target!);
      else for (let pos = 0; pos < e.size; pos += FILE_CHUNK) hash.update(await this.source.read(e.dataOffset + pos, Math.min(FILE_CHUNK, e.size - pos)));
      const actual = hash.digest();
      result.checked++;
      if (!actual.equals(e.sha256)) result.mismatches.push({ path: e.path, expected: e.sha256.toString('hex'), actual: actual.toString('hex') });
    }
    return result;
  }
}
