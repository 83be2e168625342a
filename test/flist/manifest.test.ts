/**
 * The manifest as the sqlite3 command-line tool sees it (rfs's tables, column types, indexes,
 * journal mode, rfs's walk order of rows, 32-byte BLOB ids and keys), and hostile manifests:
 * every malformation is CORRUPT_MANIFEST and unpack writes nothing outside its target.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { ManifestReader } from '../../src/flist/manifest.js';
import { packTree } from '../../src/flist/pack.js';
import { openRouter } from '../../src/flist/store/index.js';
import { unpackFlist } from '../../src/flist/unpack.js';
import { isVmimgError } from '../../src/util/errors.js';
import { memoryTree } from '../fs/ext4/helpers.js';
import { oracle, run, tempDir } from '../helpers/oracle.js';

const RFS_COLUMNS: Record<string, string[]> = {
  inode: ['ino|INTEGER|1', 'parent|INTEGER|0', 'name|VARCHAR(255)|0', 'size|INTEGER|0', 'uid|INTEGER|0', 'gid|INTEGER|0', 'mode|INTEGER|0', 'rdev|INTEGER|0', 'ctime|INTEGER|0', 'mtime|INTEGER|0'],
  extra: ['ino|INTEGER|1', 'data|VARCHAR(4096)|0'],
  block: ['ino|INTEGER|0', 'id|VARCHAR(32)|0', 'key|VARCHAR(32)|0'],
  tag: ['key|VARCHAR(10)|1', 'value|VARCHAR(255)|0'],
  route: ['start|INTEGER|0', 'end|INTEGER|0', 'url|VARCHAR(2048)|0'],
};

test("the manifest read with the sqlite3 tool: rfs's schema, row order, BLOB ids and keys", async (t) => {
  const sqlite3 = oracle(t, 'sqlite3');
  if (!sqlite3) return;
  const dir = tempDir(t, 'vmimg-flist-sql-');
  const tree = memoryTree([
    { path: 'etc', type: 'dir' },
    { path: 'etc/hosts', data: 'localhost\n', mode: 0o644, uid: 0, gid: 0, mtimeNs: 1_600_000_000_900_000_000n },
    { path: 'bin', type: 'dir' },
    { path: 'bin/sh', type: 'symlink', target: 'busybox' },
    { path: 'bin/busybox', data: Buffer.alloc(600 * 1024, 7), mode: 0o755 },
    { path: 'dev', type: 'dir' },
    { path: 'dev/null', type: 'char', rdev: [1, 3], mode: 0o666 },
    { path: 'zz', data: 'last' },
  ]);
  const router = await openRouter([`dir://${join(dir, 'store')}`, `00-7f=dir://${join(dir, 'low')}`]);
  const manifest = join(dir, 'x.fl');
  await packTree(tree, { manifest, router, tags: new Map([['author', 'vmimg tests']]) });
  await router.close();
  const q = (sql: string): string => {
    const r = run(sqlite3, [manifest, sql]);
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim();
  };
  for (const [table, cols] of Object.entries(RFS_COLUMNS)) {
    assert.deepEqual(q(`SELECT name, type, pk FROM pragma_table_info('${table}')`).split('\n'), cols, `${table} columns`);
  }
  assert.equal(q("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name"), 'block_ino\nnames\nparents');
  assert.equal(q('PRAGMA journal_mode'), 'delete');
  // rfs's walk: root, its non-directories, then directories last-in-first-out.
  assert.equal(
    q('SELECT ino, parent, name, printf("%o", mode), size, uid, gid, rdev, mtime, ctime FROM inode ORDER BY ino'),
    [
      '1|0|/|40755|0|0|0|0|0|0',
      '2|1|zz|100644|4|1000|100|0|1700000000|1700000000',
      '3|1|etc|40755|0|1000|100|0|1700000000|1700000000',
      '4|3|hosts|100644|10|0|0|0|1600000000|1600000000',
      '5|1|dev|40755|0|1000|100|0|1700000000|1700000000',
      '6|5|null|20666|0|1000|100|259|1700000000|1700000000',
      '7|1|bin|40755|0|1000|100|0|1700000000|1700000000',
      '8|7|busybox|100755|614400|1000|100|0|1700000000|1700000000',
      '9|7|sh|120644|7|1000|100|0|1700000000|1700000000',
    ].join('\n'),
  );
  assert.equal(q('SELECT ino, typeof(data), CAST(data AS TEXT) FROM extra'), '9|blob|busybox');
  assert.equal(q('SELECT ino, typeof(id), length(id), typeof(key), length(key) FROM block ORDER BY rowid'), ['2', '4', '8', '8'].map((i) => `${i}|blob|32|blob|32`).join('\n'));
  assert.equal(q('SELECT key, value FROM tag ORDER BY key'), 'author|vmimg tests\nversion|1');
  assert.equal(q('SELECT start, end, url FROM route ORDER BY rowid'), `0|255|dir://${join(dir, 'store')}\n0|127|dir://${join(dir, 'low')}`);
});

async function hostile(dir: string, name: string, mutate: (db: Database.Database) => void): Promise<string> {
  const path = join(dir, `${name}.fl`);
  const store = join(dir, 'store');
  const router = await openRouter([store]);
  await packTree(memoryTree([{ path: 'd', type: 'dir' }, { path: 'd/f', data: 'file content' }, { path: 'g', data: 'more' }]), { manifest: path, router });
  await router.close();
  const db = new Database(path);
  mutate(db);
  db.close();
  return path;
}

test('hostile manifests are CORRUPT_MANIFEST, and unpack writes nothing outside its target', async (t) => {
  const dir = tempDir(t, 'vmimg-flist-bad-');
  const cases: Array<[string, (db: Database.Database) => void, RegExp]> = [
    ['no-route', (db) => db.exec('DROP TABLE route'), /table 'route' is missing/],
    ['no-column', (db) => db.exec('ALTER TABLE block DROP COLUMN key'), /table 'block' lacks column\(s\) key/],
    ['no-root', (db) => db.exec('UPDATE inode SET parent = 5 WHERE ino = 1'), /no root directory/],
    ['dotdot', (db) => db.exec("UPDATE inode SET name = '..' WHERE name = 'g'"), /unsafe name "\.\."/],
    ['slash', (db) => db.exec("UPDATE inode SET name = '../../escape' WHERE name = 'f'"), /unsafe name/],
    ['dup', (db) => db.exec("UPDATE inode SET name = 'd' WHERE name = 'g'"), /two entries named "d"/],
    ['short-id', (db) => db.exec('UPDATE block SET id = substr(id, 1, 16)'), /32-byte id/],
    ['size', (db) => db.exec("UPDATE inode SET size = 99 WHERE name = 'g'"), /blocks hold 4 bytes, the manifest says 99/],
    ['negative', (db) => db.exec("UPDATE inode SET size = -5 WHERE name = 'g'"), /size -5 is not an integer/],
    ['many-blocks', (db) => db.exec("INSERT INTO block (ino, id, key) SELECT ino, id, key FROM block, (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5) WHERE ino = (SELECT ino FROM inode WHERE name = 'g')"), /has 6 blocks for 4 bytes/],
    ['few-blocks', (db) => db.exec(`UPDATE inode SET size = ${64 * 1024 * 1024} WHERE name = 'g'`), /has 1 blocks for 67108864 bytes/],
    ['loop', (db) => db.exec("INSERT INTO inode (ino, parent, name, mode) VALUES (50, 1, 'x', 16877); UPDATE inode SET parent = 50 WHERE ino = 1"), /no root directory/],
  ];
  for (const [name, mutate, re] of cases) {
    const manifest = await hostile(dir, name, mutate);
    const router = await openRouter([join(dir, 'store')]);
    const target = join(dir, 'out', name);
    await assert.rejects(unpackFlist(manifest, target, { router }), (e: unknown) => isVmimgError(e) && e.code === 'CORRUPT_MANIFEST' && re.test(e.message), name);
    assert.equal(existsSync(target), false, `${name}: the failed unpack left nothing`);
    await router.close();
  }
  assert.deepEqual(readdirSync(dir).sort(), [...cases.map(([n]) => `${n}.fl`), 'out', 'store'].sort(), 'nothing escaped the targets');
  assert.equal(existsSync(join(dir, 'escape')), false);
  writeFileSync(join(dir, 'text.fl'), 'not a database at all, just text that is long enough to look like a file header........');
  assert.throws(() => ManifestReader.open(join(dir, 'text.fl')), (e: unknown) => isVmimgError(e) && e.code === 'CORRUPT_MANIFEST');
  assert.throws(() => ManifestReader.open(join(dir, 'missing.fl')), (e: unknown) => isVmimgError(e) && e.code === 'FILE_NOT_FOUND');
});

test('a blob damaged in the store fails unpack with BLOB_CORRUPT; a missing one with BLOB_NOT_FOUND', async (t) => {
  const dir = tempDir(t, 'vmimg-flist-blob-');
  const store = join(dir, 'store');
  const router = await openRouter([store]);
  await packTree(memoryTree([{ path: 'f', data: 'precious bytes' }]), { manifest: join(dir, 'x.fl'), router });
  const [sub] = readdirSync(store);
  const [blob] = readdirSync(join(store, sub!));
  const path = join(store, sub!, blob!);
  const { readFileSync } = await import('node:fs');
  const good = readFileSync(path);
  const bad = Buffer.from(good);
  bad[3]! ^= 0x40;
  writeFileSync(path, bad);
  await assert.rejects(unpackFlist(join(dir, 'x.fl'), join(dir, 'o1'), { router }), (e: unknown) => isVmimgError(e) && e.code === 'BLOB_CORRUPT' && e.message.includes(blob!));
  assert.equal(existsSync(join(dir, 'o1')), false, 'a failed unpack removes the target it created');
  mkdirSync(join(dir, 'empty'));
  await assert.rejects(unpackFlist(join(dir, 'x.fl'), join(dir, 'empty'), { router }), (e: unknown) => isVmimgError(e) && e.code === 'BLOB_CORRUPT');
  assert.deepEqual(readdirSync(join(dir, 'empty')), [], 'an existing empty target is left empty');
  symlinkSync(join(dir, 'empty'), join(dir, 'via-link'));
  await assert.rejects(unpackFlist(join(dir, 'x.fl'), join(dir, 'via-link'), { router }), (e: unknown) => isVmimgError(e) && e.code === 'USAGE');
  (await import('node:fs')).rmSync(path);
  await assert.rejects(unpackFlist(join(dir, 'x.fl'), join(dir, 'o2'), { router }), (e: unknown) => isVmimgError(e) && e.code === 'BLOB_NOT_FOUND' && e.message.includes(blob!));
  // rfs's flat layout (<root>/<hex>) is read too.
  writeFileSync(join(store, blob!), good);
  const u = await unpackFlist(join(dir, 'x.fl'), join(dir, 'o3'), { router });
  assert.equal(u.bytes, 'precious bytes'.length);
  await router.close();
});
