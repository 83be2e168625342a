/**
 * The reader against filesystems made by vmimg's own ext4 writer (mkfs -t ext4), from the folder
 * and from a GNU tar of it carrying the user xattrs, with metadata_csum on and off, 64bit on and
 * off, with a journal; raw and written as qcow2 (read through the image layer). Every entry must
 * equal the folder (times aside: vmimg stamps SOURCE_DATE_EPOCH).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { defaultPolicy } from '../../../src/chain/policy.js';
import { Ext4Reader } from '../../../src/fs/ext4/read/reader.js';
import { openImageSource } from '../../../src/fs/packagefs/source.js';
import { vmimg } from '../../helpers/cli.js';
import { oracle, run, tempDir } from '../../helpers/oracle.js';
import { checkLookups, compareTree, hostXattrs, sourceTree } from './tree.js';

test('vmimg mkfs -t ext4 images read back equal to their source', async (t) => {
  if (!oracle(t, 'python3') || !oracle(t, 'tar')) return;
  const dir = tempDir(t, 'vmimg-ext4-read-w-');
  const src = sourceTree(dir, { bigDir: true, xattrs: true });
  const xattrs = hostXattrs(src);
  const tarball = join(dir, 'src.tar');
  const tr = run('tar', ['--xattrs', '--xattrs-include=user.*', '--numeric-owner', '-cf', tarball, '-C', src, '.']);
  assert.equal(tr.status, 0, tr.stderr);
  const cases: Array<[string, string[], boolean]> = [
    ['dir-default.img', [src], false],
    ['tar-default.img', [tarball], true],
    ['tar-nocsum.img', ['-O', '^metadata_csum', tarball], true],
    ['tar-32bit-journal.img', ['-O', '^64bit', '-J', tarball], true],
    ['tar.qcow2', ['--format', 'qcow2', tarball], true],
  ];
  for (const [name, args, withXattrs] of cases) {
    await t.test(name, async () => {
      const out = join(dir, name);
      const made = await vmimg(['mkfs', '-t', 'ext4', ...args, out]);
      assert.equal(made.status, 0, made.stderr);
      const { source, chain } = await openImageSource(out, { policy: defaultPolicy(out) });
      try {
        const fs = await Ext4Reader.open(source);
        const n = await compareTree(fs, src, { links: true, ...(withXattrs ? { xattrs } : {}) });
        assert.ok(n > 3000, `${n} entries compared`);
        await checkLookups(fs);
        assert.equal(fs.geometry.csum, !name.includes('nocsum'));
        assert.equal(fs.geometry.bit64, !name.includes('32bit'));
      } finally {
        await chain.close();
      }
    });
  }
});
