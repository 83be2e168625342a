/**
 * Validation of untrusted packagefs metadata (docs/packagefs.md "Reader rules"): every count,
 * offset and length is range-checked against the layout and the block source before it sizes an
 * allocation or a loop. Violations are CORRUPT_IMAGE naming the field, entry and value.
 */
import { VmimgError } from '../../util/errors.js';
import { normaliseArchivePath, pathKey, showPath } from '../../tree/path.js';
import { isVmimgError } from '../../util/errors.js';
import { ENTRY_SIZE, HASH_LENGTH, INDEX_OFFSET, MAX_NAME, SECTOR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, VERSION_MAJOR, VERSION_MINOR, type EntryRecord, type Superblock } from './format.js';

/** Most entries a reader accepts (bounds the index it reads into memory: 192 MiB). */
export const MAX_ENTRIES = 1 << 21;
/** Largest names region a reader accepts. */
export const MAX_NAMES = 256 * 1024 * 1024;

export function corrupt(message: string, details: Record<string, unknown> = {}): VmimgError {
  return new VmimgError('CORRUPT_IMAGE', `packagefs: ${message}`, details);
}

/** The superblock's numbers, checked and converted. */
export interface Geometry {
  entryCount: number;
  namesOffset: number;
  namesLength: number;
  dataOffset: number;
  imageSize: number;
  buildTime: number;
}

function small(value: bigint, field: string, max: number): number {
  if (value > BigInt(max)) throw corrupt(`${field} ${value} is out of range (at most ${max})`, { field, value: value.toString() });
  return Number(value);
}

/** Checks the superblock against the layout rules and the source size. */
export function validateSuperblock(sb: Superblock, sourceSize: number): Geometry {
  if (sb.versionMajor !== VERSION_MAJOR || sb.versionMinor !== VERSION_MINOR) {
    throw new VmimgError('UNSUPPORTED_IMAGE', `packagefs version ${sb.versionMajor}.${sb.versionMinor} is not supported (this reader knows ${VERSION_MAJOR}.${VERSION_MINOR})`, { version: `${sb.versionMajor}.${sb.versionMinor}` });
  }
  if (sb.flags !== 0) throw new VmimgError('UNSUPPORTED_IMAGE', `packagefs flags 0x${sb.flags.toString(16)} are not supported`, { flags: sb.flags });
  if (sb.sectorSize !== SECTOR) throw corrupt(`sector size ${sb.sectorSize} is not ${SECTOR}`);
  if (sb.entrySize !== ENTRY_SIZE) throw corrupt(`entry size ${sb.entrySize} is not ${ENTRY_SIZE}`);
  if (!sb.reservedZero) throw corrupt('reserved superblock bytes are not zero');
  const imageSize = small(sb.imageSize, 'image size', sourceSize);
  if (imageSize % SECTOR !== 0) throw corrupt(`image size ${imageSize} is not a multiple of ${SECTOR}`);
  const entryCount = small(sb.entryCount, 'entry count', Math.min(MAX_ENTRIES, Math.floor((imageSize - INDEX_OFFSET) / ENTRY_SIZE)));
  if (entryCount < 1) throw corrupt('entry count is 0 (the root directory is missing)');
  if (sb.indexOffset !== BigInt(INDEX_OFFSET)) throw corrupt(`index offset ${sb.indexOffset} is not ${INDEX_OFFSET}`);
  const namesOffset = INDEX_OFFSET + entryCount * ENTRY_SIZE;
  if (sb.namesOffset !== BigInt(namesOffset)) throw corrupt(`names offset ${sb.namesOffset} is not ${namesOffset} (index end)`);
  const namesLength = small(sb.namesLength, 'names length', Math.min(MAX_NAMES, imageSize - namesOffset));
  const dataOffset = Math.ceil((namesOffset + namesLength) / SECTOR) * SECTOR;
  if (sb.dataOffset !== BigInt(dataOffset)) throw corrupt(`data offset ${sb.dataOffset} is not ${dataOffset} (names end rounded to a sector)`);
  if (dataOffset > imageSize) throw corrupt(`data offset ${dataOffset} lies beyond the image size ${imageSize}`);
  if (sb.buildTime > BigInt(Number.MAX_SAFE_INTEGER) || sb.buildTime < -BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`build time ${sb.buildTime} is out of range`);
  return { entryCount, namesOffset, namesLength, dataOffset, imageSize, buildTime: Number(sb.buildTime) };
}

export type PackagefsType = 'file' | 'dir' | 'symlink';

/** A validated entry. */
export interface PackagefsEntry {
  readonly index: number;
  readonly path: Buffer;
  readonly type: PackagefsType;
  /** Full st_mode (type bits and permissions). */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly mtime: number;
  readonly size: number;
  /** file: image offset of the content; 0 otherwise. */
  readonly dataOffset: number;
  readonly sha256: Buffer;
  /** symlink: the target bytes. */
  readonly target?: Buffer;
}

function checkPath(path: Buffer, index: number): void {
  let normal: Buffer;
  try {
    normal = normaliseArchivePath(path, `entry ${index}`);
  } catch (e) {
    if (isVmimgError(e)) throw corrupt(e.message, { index });
    throw e;
  }
  if (!normal.equals(path)) throw corrupt(`entry ${index} path '${showPath(path)}' is not in normal form`, { index });
}

/**
 * Validates every record against the geometry (names is the names region) and returns entries.
 * Checks: name/target ranges, mode, path form, strict order, parents, file placement, overlap.
 */
export function validateEntries(records: EntryRecord[], names: Buffer, g: Geometry): PackagefsEntry[] {
  const byPath = new Map<string, PackagefsEntry>();
  const entries: PackagefsEntry[] = [];
  let previous: Buffer | undefined;
  records.forEach((r, index) => {
    const where = `entry ${index}`;
    if (!r.reservedZero) throw corrupt(`${where}: reserved bytes are not zero`, { index });
    if (r.nameLength > MAX_NAME || r.nameOffset + BigInt(r.nameLength) > BigInt(names.length)) {
      throw corrupt(`${where}: name at ${r.nameOffset}+${r.nameLength} lies outside the names region (${names.length} bytes)`, { index });
    }
    const path = names.subarray(Number(r.nameOffset), Number(r.nameOffset) + r.nameLength);
    const name = `${where} '${showPath(path)}'`;
    if (index === 0 ? path.length !== 0 : path.length === 0) throw corrupt(`${where}: only entry 0 is the root (empty path)`, { index });
    if (index > 0) checkPath(path, index);
    if (previous && Buffer.compare(previous, path) >= 0) throw corrupt(`${name} is not after '${showPath(previous)}' in path order`, { index });
    previous = path;
    const typeBits = r.mode & S_IFMT;
    const type: PackagefsType | undefined = typeBits === S_IFREG ? 'file' : typeBits === S_IFDIR ? 'dir' : typeBits === S_IFLNK ? 'symlink' : undefined;
    if (!type || (r.mode & ~(S_IFMT | 0o7777)) !== 0) throw corrupt(`${name}: mode 0o${r.mode.toString(8)} is not a file, directory or symlink`, { index });
    if (index === 0 && type !== 'dir') throw corrupt('entry 0 (the root) is not a directory');
    if (index > 0) {
      const slash = path.lastIndexOf(0x2f);
      const parent = byPath.get(pathKey(slash < 0 ? Buffer.alloc(0) : path.subarray(0, slash)));
      if (parent?.type !== 'dir') throw corrupt(`${name}: its parent directory is missing`, { index });
    }
    if (r.mtime > BigInt(Number.MAX_SAFE_INTEGER) || r.mtime < -BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`${name}: mtime out of range`, { index });
    const size = small(r.size, `${name}: size`, type === 'symlink' ? MAX_NAME : g.imageSize);
    let dataOffset = 0;
    let target: Buffer | undefined;
    if (type === 'file') {
      if (size === 0 ? r.data !== 0n : r.data < BigInt(g.dataOffset) || r.data + r.size > BigInt(g.imageSize) || r.data % BigInt(SECTOR) !== 0n) {
        throw corrupt(`${name}: data at ${r.data}+${r.size} is not a sector-aligned range of the data region ${g.dataOffset}..${g.imageSize}`, { index });
      }
      dataOffset = Number(r.data);
    } else if (type === 'symlink') {
      if (size === 0 || r.data + r.size > BigInt(names.length)) throw corrupt(`${name}: symlink target at ${r.data}+${r.size} lies outside the names region`, { index });
      target = Buffer.from(names.subarray(Number(r.data), Number(r.data) + size));
    } else if (size !== 0 || r.data !== 0n || r.sha256.some((x) => x !== 0)) {
      throw corrupt(`${name}: a directory with size, data or hash set`, { index });
    }
    const entry: PackagefsEntry = { index, path: Buffer.from(path), type, mode: r.mode, uid: r.uid, gid: r.gid, mtime: Number(r.mtime), size, dataOffset, sha256: r.sha256, ...(target ? { target } : {}) };
    byPath.set(pathKey(path), entry);
    entries.push(entry);
  });
  checkOverlaps(entries);
  return entries;
}

/** File extents (rounded to sectors) may only overlap when identical (hard links). */
function checkOverlaps(entries: PackagefsEntry[]): void {
  const files = entries.filter((e) => e.type === 'file' && e.size > 0).sort((a, b) => a.dataOffset - b.dataOffset || a.size - b.size);
  let prev: PackagefsEntry | undefined;
  let prevEnd = 0;
  for (const f of files) {
    if (prev && f.dataOffset < prevEnd) {
      const same = f.dataOffset === prev.dataOffset && f.size === prev.size && f.sha256.equals(prev.sha256);
      if (!same) throw corrupt(`data of '${showPath(f.path)}' (${f.dataOffset}+${f.size}) overlaps that of '${showPath(prev.path)}' (${prev.dataOffset}+${prev.size})`, { index: f.index });
    }
    const end = f.dataOffset + Math.ceil(f.size / SECTOR) * SECTOR;
    if (end > prevEnd) {
      prevEnd = end;
      prev = f;
    }
  }
}

export const ZERO_HASH = Buffer.alloc(HASH_LENGTH);
