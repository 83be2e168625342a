/**
 * The packagefs builder: plan (layout.ts), stream every file's content once into its sector-aligned
 * place while hashing it, then write the index, names and superblock (docs/packagefs.md). The
 * file path variant writes through createAtomically, so a failed build leaves nothing behind.
 */
import { createHash } from 'node:crypto';
import { createAtomically } from '../../storage/atomic.js';
import type { Storage } from '../../storage/types.js';
import { resolveSourceDateEpoch } from '../../tree/normalise.js';
import { showPath } from '../../tree/path.js';
import type { Tree } from '../../tree/types.js';
import { VmimgError } from '../../util/errors.js';
import { encodeEntry, encodeSuperblock, ENTRY_SIZE, HASH_LENGTH, INDEX_OFFSET, metadataHash, S_IFLNK, S_IFMT, S_IFREG, SECTOR, VERSION_MAJOR, VERSION_MINOR } from './format.js';
import { planLayout, type PlannedEntry } from './layout.js';

export interface BuildOptions {
  /** uid and gid of every entry (default 0). */
  uid?: number;
  gid?: number;
  /** mtime of every entry and the build time, seconds (default SOURCE_DATE_EPOCH, else 0). */
  mtime?: number;
  /** Maximum image size in bytes (FS_TOO_LARGE when exceeded, before anything is written). */
  maxSize?: number;
  /** Leave device nodes, fifos and sockets out instead of failing with UNSUPPORTED_ENTRY. */
  skipSpecial?: boolean;
}

export interface BuildResult {
  imageSize: number;
  entryCount: number;
  fileCount: number;
  /** Bytes of file content stored (hard-linked content counted once). */
  dataBytes: number;
}

function checkId(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 0 || value > 0xffffffff) throw new VmimgError('INVALID_OPTION', `packagefs ${what} must be an integer in 0..4294967295, not ${value}`, { [what]: value });
  return value;
}

async function streamContent(storage: Storage, p: PlannedEntry): Promise<Buffer> {
  const hash = createHash('sha256');
  let pos = 0;
  for await (const chunk of p.content!.stream()) {
    if (pos + chunk.length > p.size) break;
    await storage.write(p.dataOffset + pos, chunk);
    hash.update(chunk);
    pos += chunk.length;
  }
  if (pos !== p.size) {
    throw new VmimgError('SOURCE_CHANGED', `'${showPath(p.path)}' did not have the ${p.size} bytes it had when the tree was read`, { path: showPath(p.path) });
  }
  return hash.digest();
}

/** Builds the image for `tree` into `storage` (which should be empty); returns the figures. */
export async function buildPackagefsInto(tree: Tree, storage: Storage, options: BuildOptions = {}): Promise<BuildResult> {
  const mtime = options.mtime ?? resolveSourceDateEpoch(undefined) ?? 0;
  if (!Number.isSafeInteger(mtime)) throw new VmimgError('INVALID_OPTION', `packagefs mtime must be an integer number of seconds, not ${mtime}`, { mtime });
  const uid = checkId(options.uid ?? 0, 'uid');
  const gid = checkId(options.gid ?? 0, 'gid');
  const layout = planLayout(tree.entries, { uid, gid, mtime, maxSize: options.maxSize, skipSpecial: options.skipSpecial });
  const hashes: Buffer[] = [];
  let fileCount = 0;
  let dataBytes = 0;
  for (const p of layout.entries) {
    const type = p.mode & S_IFMT;
    if (type === S_IFREG) {
      fileCount++;
      if (p.sharesWith !== undefined) hashes.push(hashes[p.sharesWith]!);
      else if (p.size === 0) hashes.push(createHash('sha256').digest());
      else {
        hashes.push(await streamContent(storage, p));
        dataBytes += p.size;
      }
    } else if (type === S_IFLNK) {
      hashes.push(createHash('sha256').update(p.symlinkTarget!).digest());
    } else {
      hashes.push(Buffer.alloc(HASH_LENGTH));
    }
  }
  const index = Buffer.alloc(layout.entries.length * ENTRY_SIZE);
  layout.entries.forEach((p, i) => {
    const type = p.mode & S_IFMT;
    const data = type === S_IFREG ? p.dataOffset : type === S_IFLNK ? p.targetOffset : 0;
    encodeEntry({ nameOffset: BigInt(p.nameOffset), nameLength: p.path.length, mode: p.mode, uid, gid, mtime: BigInt(mtime), size: BigInt(p.size), data: BigInt(data), sha256: hashes[i]! }, index, i * ENTRY_SIZE);
  });
  const padding = Buffer.alloc(layout.dataOffset - layout.namesOffset - layout.names.length);
  const fields = {
    versionMajor: VERSION_MAJOR,
    versionMinor: VERSION_MINOR,
    flags: 0,
    sectorSize: SECTOR,
    entrySize: ENTRY_SIZE,
    entryCount: BigInt(layout.entries.length),
    indexOffset: BigInt(INDEX_OFFSET),
    namesOffset: BigInt(layout.namesOffset),
    namesLength: BigInt(layout.names.length),
    dataOffset: BigInt(layout.dataOffset),
    imageSize: BigInt(layout.imageSize),
    buildTime: BigInt(mtime),
  };
  const unsigned = encodeSuperblock({ ...fields, metadataSha256: Buffer.alloc(HASH_LENGTH) });
  const superblock = encodeSuperblock({ ...fields, metadataSha256: metadataHash([unsigned, index, layout.names, padding]) });
  await storage.write(INDEX_OFFSET, Buffer.concat([index, layout.names, padding]));
  await storage.write(0, superblock);
  await storage.truncate(layout.imageSize);
  return { imageSize: layout.imageSize, entryCount: layout.entries.length, fileCount, dataBytes };
}

/** Builds the image for `tree` at `output`, atomically (temporary file + rename). */
export async function buildPackagefs(tree: Tree, output: string, options: BuildOptions = {}): Promise<BuildResult> {
  return createAtomically(output, (storage) => buildPackagefsInto(tree, storage, options));
}
