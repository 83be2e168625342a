/**
 * The flist manifest: one SQLite database with rfs's schema (rfs schema/schema.sql; tables inode,
 * extra, block, tag, route; indexes parents, names, block_ino), journal mode DELETE so the file
 * is self-contained (docs/flist.md "Manifest").
 *
 * Writer: builds into a temporary file beside the target inside one transaction and renames it
 * into place on finish(); abort() (or any failure) leaves nothing.
 * Reader: opens read-only, checks the schema has every table and column rfs reads, and validates
 * every row it hands out (names, sizes, ids and keys of 32 bytes, modes) — a manifest is as
 * untrusted as any image. SQLite's own errors on a damaged file are CORRUPT_MANIFEST.
 */
import { randomBytes } from 'node:crypto';
import { rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { VmimgError } from '../util/errors.js';
import { FILE_TYPE_BITS, S_IFMT } from '../tree/types.js';
import { ID_LEN, KEY_LEN, MAX_PLAIN_BLOCK } from './codec.js';

/** Most blocks one file may have (2 TiB in rfs's 512 KiB blocks). */
export const MAX_FILE_BLOCKS = 4 * 1024 * 1024;

/** rfs's schema (same tables, column types and indexes). */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS inode (
    ino INTEGER PRIMARY KEY AUTOINCREMENT,
    parent INTEGER,
    name VARCHAR(255),
    size INTEGER,
    uid INTEGER,
    gid INTEGER,
    mode INTEGER,
    rdev INTEGER,
    ctime INTEGER,
    mtime INTEGER
);
CREATE INDEX IF NOT EXISTS parents ON inode (parent);
CREATE INDEX IF NOT EXISTS names ON inode (name);
CREATE TABLE IF NOT EXISTS extra (
    ino INTEGER PRIMARY KEY,
    data VARCHAR(4096)
);
CREATE TABLE IF NOT EXISTS block (
    ino INTEGER,
    id VARCHAR(32),
    key VARCHAR(32)
);
CREATE INDEX IF NOT EXISTS block_ino ON block (ino);
CREATE TABLE IF NOT EXISTS tag (
    key VARCHAR(10) PRIMARY KEY,
    value VARCHAR(255)
);
CREATE TABLE IF NOT EXISTS route (
    start integer,
    end integer,
    url VARCHAR(2048)
);
`;

/** The columns each table must have for vmimg (and rfs) to read it. */
export const REQUIRED_COLUMNS: Readonly<Record<string, readonly string[]>> = {
  inode: ['ino', 'parent', 'name', 'size', 'uid', 'gid', 'mode', 'rdev', 'ctime', 'mtime'],
  extra: ['ino', 'data'],
  block: ['ino', 'id', 'key'],
  tag: ['key', 'value'],
  route: ['start', 'end', 'url'],
};

export { S_IFMT } from '../tree/types.js';
export const S_IFDIR = FILE_TYPE_BITS.dir;
export const S_IFREG = FILE_TYPE_BITS.file;
export const S_IFLNK = FILE_TYPE_BITS.symlink;

export interface InodeRow {
  ino: number;
  parent: number;
  name: string;
  size: number;
  uid: number;
  gid: number;
  /** Full st_mode: type bits and permissions. */
  mode: number;
  rdev: bigint;
  ctime: number;
  mtime: number;
}

export interface Route {
  start: number;
  end: number;
  url: string;
}

export interface BlockRef {
  id: Buffer;
  key: Buffer;
}

function sqliteError(path: string, e: unknown): VmimgError {
  if (e instanceof VmimgError) return e;
  const code = (e as { code?: string }).code ?? '';
  const message = (e as Error).message ?? String(e);
  if (code === 'SQLITE_CANTOPEN') return new VmimgError('FILE_NOT_FOUND', `Could not open manifest '${path}': ${message}`, { path });
  return new VmimgError('CORRUPT_MANIFEST', `manifest '${path}' is not a readable flist: ${message}`, { path, sqlite: code }, { cause: e });
}

export class ManifestWriter {
  readonly path: string;
  readonly #tmp: string;
  readonly #db: Database.Database;
  readonly #insertInode: Database.Statement;
  readonly #insertExtra: Database.Statement;
  readonly #insertBlock: Database.Statement;
  #done = false;

  private constructor(path: string, tmp: string, db: Database.Database) {
    this.path = path;
    this.#tmp = tmp;
    this.#db = db;
    this.#insertInode = db.prepare('INSERT INTO inode (parent, name, size, uid, gid, mode, rdev, ctime, mtime) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
    this.#insertExtra = db.prepare('INSERT INTO extra (ino, data) VALUES (?, ?)');
    this.#insertBlock = db.prepare('INSERT INTO block (ino, id, key) VALUES (?, ?, ?)');
  }

  /** Starts a manifest that will appear at `path` when finish() succeeds. */
  static create(path: string): ManifestWriter {
    const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
    let db: Database.Database | undefined;
    try {
      db = new Database(tmp);
      db.pragma('journal_mode = DELETE');
      db.exec(SCHEMA);
      db.exec('BEGIN');
      return new ManifestWriter(path, tmp, db);
    } catch (e) {
      db?.close();
      void unlink(tmp).catch(() => undefined);
      throw new VmimgError('WRITE_FAILED', `Could not create manifest '${path}': ${(e as Error).message}`, { path }, { cause: e });
    }
  }

  /** Adds an inode row; returns its ino (the root, added first, is 1). */
  inode(row: Omit<InodeRow, 'ino'>, extra?: Uint8Array): number {
    const r = this.#insertInode.run(row.parent, row.name, row.size, row.uid, row.gid, row.mode, row.rdev, row.ctime, row.mtime);
    const ino = Number(r.lastInsertRowid);
    if (extra) this.#insertExtra.run(ino, Buffer.from(extra));
    return ino;
  }

  block(ino: number, id: Uint8Array, key: Uint8Array): void {
    this.#insertBlock.run(ino, Buffer.from(id), Buffer.from(key));
  }

  route(r: Route): void {
    this.#db.prepare('INSERT INTO route (start, end, url) VALUES (?, ?, ?)').run(r.start, r.end, r.url);
  }

  tag(key: string, value: string): void {
    this.#db.prepare('INSERT OR REPLACE INTO tag (key, value) VALUES (?, ?)').run(key, value);
  }

  async finish(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    try {
      this.#db.exec('COMMIT');
      this.#db.close();
      await rename(this.#tmp, this.path);
    } catch (e) {
      await unlink(this.#tmp).catch(() => undefined);
      throw new VmimgError('WRITE_FAILED', `Could not write manifest '${this.path}': ${(e as Error).message}`, { path: this.path }, { cause: e });
    }
  }

  async abort(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    try {
      this.#db.close();
    } finally {
      await unlink(this.#tmp).catch(() => undefined);
    }
  }
}

/** Checks a value read from a manifest is a safe non-negative integer. */
function uint(v: unknown, what: string, path: string, max = Number.MAX_SAFE_INTEGER): number {
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0 || n > max) {
    throw new VmimgError('CORRUPT_MANIFEST', `manifest '${path}': ${what} ${String(v)} is not an integer in 0..${max}`, { path, field: what });
  }
  return n;
}

function int(v: unknown, what: string, path: string): number {
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n)) throw new VmimgError('CORRUPT_MANIFEST', `manifest '${path}': ${what} ${String(v)} is not an integer`, { path, field: what });
  return n;
}

/** A name a directory entry may have: not empty, no '/', no NUL, not '.' or '..'. */
export function validName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0') && Buffer.byteLength(name) <= 255;
}

export class ManifestReader {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #byIno: Database.Statement;
  readonly #children: Database.Statement;
  readonly #blocks: Database.Statement;
  readonly #blockCount: Database.Statement;
  readonly #extra: Database.Statement;

  private constructor(path: string, db: Database.Database) {
    this.path = path;
    this.#db = db;
    this.#byIno = db.prepare('SELECT ino, parent, name, size, uid, gid, mode, rdev, ctime, mtime FROM inode WHERE ino = ?').safeIntegers(true);
    this.#children = db.prepare('SELECT ino, parent, name, size, uid, gid, mode, rdev, ctime, mtime FROM inode WHERE parent = ? AND ino != ? ORDER BY name, ino').safeIntegers(true);
    this.#blocks = db.prepare('SELECT id, key FROM block WHERE ino = ? ORDER BY rowid');
    this.#blockCount = db.prepare('SELECT count(*) AS n FROM block WHERE ino = ?');
    this.#extra = db.prepare('SELECT data FROM extra WHERE ino = ?');
  }

  static open(path: string): ManifestReader {
    let db: Database.Database | undefined;
    try {
      db = new Database(path, { readonly: true, fileMustExist: true });
      for (const [table, columns] of Object.entries(REQUIRED_COLUMNS)) {
        const have = new Set((db.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string }>).map((c) => c.name));
        const missing = columns.filter((c) => !have.has(c));
        if (missing.length > 0) {
          throw new VmimgError('CORRUPT_MANIFEST', `manifest '${path}' is not an flist: table '${table}' ${have.size === 0 ? 'is missing' : `lacks column(s) ${missing.join(', ')}`}`, { path, table });
        }
      }
      const reader = new ManifestReader(path, db);
      reader.root();
      return reader;
    } catch (e) {
      db?.close();
      throw sqliteError(path, e);
    }
  }

  close(): void {
    this.#db.close();
  }

  #row(r: Record<string, unknown>): InodeRow {
    const p = this.path;
    const name = r['name'];
    if (typeof name !== 'string') throw new VmimgError('CORRUPT_MANIFEST', `manifest '${p}': inode ${String(r['ino'])} has no name`, { path: p });
    const rdev = r['rdev'];
    return {
      ino: uint(r['ino'], 'ino', p),
      parent: uint(r['parent'], 'parent', p),
      name,
      size: uint(r['size'] ?? 0, 'size', p),
      uid: uint(r['uid'] ?? 0, 'uid', p, 0xffffffff),
      gid: uint(r['gid'] ?? 0, 'gid', p, 0xffffffff),
      mode: uint(r['mode'] ?? 0, 'mode', p, 0xffffffff),
      rdev: typeof rdev === 'bigint' ? BigInt.asUintN(64, rdev) : BigInt(uint(rdev ?? 0, 'rdev', p)),
      ctime: int(r['ctime'] ?? 0, 'ctime', p),
      mtime: int(r['mtime'] ?? 0, 'mtime', p),
    };
  }

  #query<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw sqliteError(this.path, e);
    }
  }

  /** The root inode: ino 1, a directory, parent 0 (rfs's root). */
  root(): InodeRow {
    const r = this.inode(1);
    if (!r || (r.mode & S_IFMT) !== S_IFDIR || r.parent !== 0) throw new VmimgError('CORRUPT_MANIFEST', `manifest '${this.path}' has no root directory (inode 1 with parent 0)`, { path: this.path });
    return r;
  }

  inode(ino: number): InodeRow | undefined {
    const r = this.#query(() => this.#byIno.get(ino) as Record<string, unknown> | undefined);
    return r ? this.#row(r) : undefined;
  }

  /** The entries of directory `ino`, sorted by name; names are validated, duplicates refused. */
  children(ino: number): InodeRow[] {
    const rows = this.#query(() => this.#children.all(ino, ino) as Record<string, unknown>[]).map((r) => this.#row(r));
    const seen = new Set<string>();
    for (const r of rows) {
      if (!validName(r.name)) throw new VmimgError('CORRUPT_MANIFEST', `manifest '${this.path}': inode ${r.ino} has an unsafe name ${JSON.stringify(r.name)}`, { path: this.path, ino: r.ino });
      if (seen.has(r.name)) throw new VmimgError('CORRUPT_MANIFEST', `manifest '${this.path}': directory inode ${ino} has two entries named ${JSON.stringify(r.name)}`, { path: this.path, ino });
      seen.add(r.name);
    }
    return rows;
  }

  /**
   * A file's blocks in order; every id and key must be 32 bytes. The number of rows is checked
   * before they are loaded: each block holds at least one byte and at most MAX_PLAIN_BLOCK, and a
   * file has at most MAX_FILE_BLOCKS of them.
   */
  blocks(ino: number, size?: number): BlockRef[] {
    const n = this.#query(() => Number((this.#blockCount.get(ino) as { n: number | bigint }).n));
    const min = size === undefined ? 0 : Math.ceil(size / MAX_PLAIN_BLOCK);
    const max = Math.min(MAX_FILE_BLOCKS, size ?? MAX_FILE_BLOCKS);
    if (n > max || n < min) {
      throw new VmimgError('CORRUPT_MANIFEST', `manifest '${this.path}': inode ${ino} has ${n} blocks${size !== undefined ? ` for ${size} bytes` : ''} (allowed ${min}..${max})`, { path: this.path, ino, blocks: n });
    }
    return this.#query(() => this.#blocks.all(ino) as Array<{ id: unknown; key: unknown }>).map((b, i) => {
      if (!Buffer.isBuffer(b.id) || !Buffer.isBuffer(b.key) || b.id.length !== ID_LEN || b.key.length !== KEY_LEN) {
        throw new VmimgError('CORRUPT_MANIFEST', `manifest '${this.path}': block ${i} of inode ${ino} does not have a ${ID_LEN}-byte id and a ${KEY_LEN}-byte key`, { path: this.path, ino });
      }
      return { id: b.id, key: b.key };
    });
  }

  /** The extra data of an inode (a symlink's target), as bytes. */
  extra(ino: number): Buffer | undefined {
    const r = this.#query(() => this.#extra.get(ino) as { data: unknown } | undefined);
    if (!r || r.data === null || r.data === undefined) return undefined;
    const data = Buffer.isBuffer(r.data) ? r.data : Buffer.from(String(r.data));
    if (data.length > 4096 * 16) throw new VmimgError('CORRUPT_MANIFEST', `manifest '${this.path}': extra data of inode ${ino} is ${data.length} bytes`, { path: this.path, ino });
    return data;
  }

  tags(): Array<[string, string]> {
    return this.#query(() => this.#db.prepare('SELECT key, value FROM tag ORDER BY key').all() as Array<{ key: unknown; value: unknown }>).map((t) => [String(t.key), String(t.value ?? '')]);
  }

  routes(): Route[] {
    return this.#query(() => this.#db.prepare('SELECT start, end, url FROM route ORDER BY rowid').all() as Array<Record<string, unknown>>).map((r) => ({
      start: uint(r['start'], 'route start', this.path, 255),
      end: uint(r['end'], 'route end', this.path, 255),
      url: String(r['url'] ?? ''),
    }));
  }

  counts(): { inodes: number; blocks: number; uniqueBlobs: number; bytes: number } {
    return this.#query(() => {
      const inodes = Number((this.#db.prepare('SELECT count(*) AS n FROM inode').get() as { n: number }).n);
      const blocks = Number((this.#db.prepare('SELECT count(*) AS n FROM block').get() as { n: number }).n);
      const uniqueBlobs = Number((this.#db.prepare('SELECT count(DISTINCT id) AS n FROM block').get() as { n: number }).n);
      const bytes = Number((this.#db.prepare(`SELECT coalesce(sum(size), 0) AS n FROM inode WHERE (mode & ${S_IFMT}) = ${S_IFREG}`).get() as { n: number }).n);
      return { inodes, blocks, uniqueBlobs, bytes };
    });
  }

  /**
   * Every entry reachable from the root, parents before children, with its path ('/' for the
   * root, '/a/b' below). A directory reached twice or deeper than 4096 levels is CORRUPT_MANIFEST.
   */
  *walk(): Generator<{ path: string; row: InodeRow }> {
    const root = this.root();
    const visited = new Set<number>([root.ino]);
    const stack: Array<{ path: string; row: InodeRow; depth: number }> = [{ path: '/', row: root, depth: 0 }];
    while (stack.length > 0) {
      const { path, row, depth } = stack.pop()!;
      yield { path, row };
      if ((row.mode & S_IFMT) !== S_IFDIR) continue;
      if (depth > 4096) throw new VmimgError('CORRUPT_MANIFEST', `manifest '${this.path}': directories nest deeper than 4096 levels at '${path}'`, { path: this.path });
      const kids = this.children(row.ino);
      for (let i = kids.length - 1; i >= 0; i--) {
        const k = kids[i]!;
        if (visited.has(k.ino)) throw new VmimgError('CORRUPT_MANIFEST', `manifest '${this.path}': inode ${k.ino} is reached twice (a loop)`, { path: this.path, ino: k.ino });
        visited.add(k.ino);
        stack.push({ path: path === '/' ? `/${k.name}` : `${path}/${k.name}`, row: k, depth: depth + 1 });
      }
    }
  }

  /** The inode at an absolute path (no symlinks followed), or undefined. */
  lookup(path: string): InodeRow | undefined {
    let cur = this.root();
    for (const part of path.split('/').filter((p) => p !== '')) {
      if ((cur.mode & S_IFMT) !== S_IFDIR) return undefined;
      const next = this.children(cur.ino).find((c) => c.name === part);
      if (!next) return undefined;
      cur = next;
    }
    return cur;
  }
}
