/**
 * convert --bitmaps into a new qcow2 whose header cluster holds the backing file name but not
 * also the bitmaps extension (512-byte clusters, a long backing name). qemu-img 7.2 copies the
 * data, then fails to store the bitmaps at close ("Lost persistent bitmaps … Failed to update
 * bitmap extension: No space left on device") and exits 0 with a target without them. vmimg
 * refuses before creating anything, naming the bitmaps extension as the cause (not the backing
 * file name, which fits: the same convert without --bitmaps succeeds). With -n into such an existing
 * image qemu-img writes the data and then loses the bitmaps the same way; vmimg refuses before
 * writing anything, and the target stays byte-identical.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { vmimg } from '../helpers/cli.js';
import { oracle, qemuImg, qemuInfo, tempDir } from '../helpers/oracle.js';

test('convert --bitmaps: no room for the bitmaps extension next to a long backing name is refused up front, named as such', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-bitmaps-header-');
  const src = join(dir, 'src.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', src, '4M']).status, 0);
  assert.equal(qemuImg(['bitmap', '--add', '-f', 'qcow2', src, 'a']).status, 0);
  // 112 header + 16 backing format + 8 end + 32 bitmaps extension + name > 512 >= without bitmaps.
  const sub = join(dir, 'a'.repeat(200));
  mkdirSync(sub);
  const base = join(sub, `${'c'.repeat(140)}.qcow2`).slice(dir.length + 1);
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', join(dir, base), '4M']).status, 0);
  const args = (out: string): string[] => ['convert', '-O', 'qcow2', '-o', 'cluster_size=512', '-B', base, '-F', 'qcow2', src, join(dir, out)];

  // The name fits without the bitmaps extension (both tools).
  const plain = await vmimg(args('plain.qcow2'));
  assert.equal(plain.status, 0, plain.stderr);

  // qemu-img: exit 0, the bitmaps lost with a warning.
  const theirs = qemuImg(['convert', '--bitmaps', ...args('q.qcow2').slice(1)], dir);
  assert.equal(theirs.status, 0, theirs.stderr);
  assert.match(theirs.stderr, /Lost persistent bitmaps .*No space left on device/);
  assert.equal(JSON.stringify(qemuInfo(join(dir, 'q.qcow2'))).includes('"bitmaps"'), false);

  const ours = await vmimg(['convert', '--bitmaps', ...args('v.qcow2').slice(1)]);
  assert.equal(ours.status, 1, ours.stderr);
  assert.match(ours.stderr, /Cannot store persistent bitmaps in .*no room for the bitmaps extension/);
  assert.match(ours.stderr, /\[UNSUPPORTED_OPTION\]/);
  assert.equal(existsSync(join(dir, 'v.qcow2')), false);

  // -n into the existing image without room (plain.qcow2): refused before any guest write.
  copyFileSync(join(dir, 'plain.qcow2'), join(dir, 'n-theirs.qcow2'));
  const intoTheirs = qemuImg(['convert', '-n', '--bitmaps', '-f', 'qcow2', '-O', 'qcow2', src, join(dir, 'n-theirs.qcow2')], dir);
  assert.equal(intoTheirs.status, 0, intoTheirs.stderr);
  assert.match(intoTheirs.stderr, /Lost persistent bitmaps .*No space left on device/);
  const before = readFileSync(join(dir, 'plain.qcow2'));
  const intoOurs = await vmimg(['convert', '-n', '--bitmaps', '-f', 'qcow2', '-O', 'qcow2', src, join(dir, 'plain.qcow2')]);
  assert.equal(intoOurs.status, 1, intoOurs.stderr);
  assert.match(intoOurs.stderr, /no room in the header cluster for the bitmaps extension/);
  assert.ok(readFileSync(join(dir, 'plain.qcow2')).equals(before), 'the target changed');
});
