/**
 * `vmimg fs ls|cat|stat` over an image vmimg made (qcow2, read through the image layer): listing,
 * file bytes, inode fields and symlink targets equal the source folder; errors carry codes.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { vmimg } from '../../helpers/cli.js';
import { tempDir } from '../../helpers/oracle.js';
import { sourceTree } from './tree.js';

test('vmimg fs ls, cat and stat read inside an image', async (t) => {
  const dir = tempDir(t, 'vmimg-fs-cli-');
  const src = sourceTree(dir);
  const img = join(dir, 'root.qcow2');
  const made = await vmimg(['mkfs', '-t', 'ext4', '--format', 'qcow2', src, img]);
  assert.equal(made.status, 0, made.stderr);

  const ls = await vmimg(['fs', 'ls', img, '/usr/bin']);
  assert.equal(ls.status, 0, ls.stderr);
  assert.deepEqual(ls.stdout.trim().split('\n').map((l) => l.split(/\s+/).slice(5).join(' ')), ['chain -> /usr/bin/fast', 'fast -> tool', 'rel -> ../local/bin/agent', `slow -> /${'x'.repeat(100)}/target`, 'tool', 'tool-link', 'up -> ../../../../../..']);
  assert.match(ls.stdout, /^-rwxr-xr-x +2 0 0 +3000000 tool$/m);

  const lsJson = JSON.parse((await vmimg(['fs', 'ls', img, '/home', '--output', 'json'])).stdout);
  assert.deepEqual(lsJson.map((e: { name: string; uid: number; gid: number; mode: string }) => [e.name, e.uid, e.gid, e.mode]), [['user', 1000, 1000, '040755']]);

  const cat = await vmimg(['fs', 'cat', img, '/usr/bin/chain']);
  assert.equal(cat.status, 0, cat.stderr);
  assert.ok(cat.bytes.equals(readFileSync(join(src, 'usr', 'bin', 'tool'))), 'cat follows symlinks to the file bytes');

  const st = JSON.parse((await vmimg(['fs', 'stat', img, '/usr/bin/rel', '--no-follow', '--output', 'json'])).stdout);
  assert.deepEqual([st.path, st.mode, st.target], ['/usr/bin/rel', '0120777', '../local/bin/agent']);
  const followed = JSON.parse((await vmimg(['fs', 'stat', img, '/usr/bin/rel', '--output', 'json'])).stdout);
  assert.deepEqual([followed.path, followed.mode, followed.size], ['/usr/local/bin/agent', '0100755', 21]);

  const missing = await vmimg(['fs', 'cat', img, '/nope']);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /'\/nope' does not exist in the filesystem \[FS_PATH_NOT_FOUND\]/);
  const notFile = await vmimg(['fs', 'cat', img, '/etc']);
  assert.match(notFile.stderr, /'\/etc' is not a regular file \[FS_WRONG_TYPE\]/);
  const loop = await vmimg(['fs', 'stat', img, '/loop-a']);
  assert.match(loop.stderr, /more than 40 symlinks resolving '\/loop-a'.*\[CORRUPT_IMAGE\]/);
});
