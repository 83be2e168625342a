/** Hostile and broken archives are refused with a clear, coded error naming the member. */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'node:test';
import { loadTree, treeFromLayers } from '../../src/tree/index.js';
import { readTarStream } from '../../src/tree/tar.js';
import { isVmimgError } from '../../src/util/errors.js';
import { tempDir } from '../helpers/oracle.js';
import { gzip, makeTar, type TarMember } from './make-tar.js';

async function load(members: TarMember[] | Buffer): Promise<unknown> {
  const bytes = Buffer.isBuffer(members) ? members : makeTar(members);
  const src = await readTarStream([bytes], 'hostile.tar');
  try {
    return treeFromLayers([src.entries], { sourceDateEpoch: null });
  } finally {
    await src.close();
  }
}

function rejectsWith(code: string, pattern: RegExp) {
  return (e: unknown): boolean => {
    assert.ok(isVmimgError(e), `expected a VmimgError, got ${String(e)}`);
    assert.equal(e.code, code, e.fullMessage());
    assert.match(e.fullMessage(), pattern);
    return true;
  };
}

const unsafe: Array<[string, TarMember[], RegExp]> = [
  ['dot-dot member', [{ name: '../evil', data: 'x' }], /'\.\.\/evil' contains a '\.\.' component/],
  ['dot-dot inside', [{ name: 'a/../../evil', data: 'x' }], /a\/\.\.\/\.\.\/evil/],
  ['absolute member', [{ name: '/etc/passwd', data: 'x' }], /'\/etc\/passwd' is absolute/],
  ['NUL in pax path', [{ name: 'ok', pax: [['path', 'a\0b']], data: 'x' }], /a\\x00b' contains a NUL byte/],
  ['dot-dot via pax path', [{ name: 'ok', pax: [['path', 'x/../../../root/.ssh/authorized_keys']], data: 'x' }], /authorized_keys/],
  ['hard link to ..', [{ name: 'h', type: '1', linkname: '../../etc/shadow' }], /hard link target of 'h'/],
  ['hard link to absolute', [{ name: 'h', type: '1', linkname: '/etc/shadow' }], /'\/etc\/shadow' is absolute/],
  ['root as a file', [{ name: './', type: '0', data: '' }], /names the root/],
];

for (const [label, members, pattern] of unsafe) {
  test(`refused: ${label}`, async () => {
    await assert.rejects(load(members), rejectsWith('UNSAFE_PATH', pattern));
  });
}

test('symlink targets are data: absolute and .. targets are kept, not followed', async () => {
  const tree = (await load([{ name: 'l1', type: '2', linkname: '/etc/shadow' }, { name: 'l2', type: '2', linkname: '../../x' }])) as { entries: { symlinkTarget?: Buffer }[] };
  assert.deepEqual(tree.entries.map((e) => e.symlinkTarget?.toString()), [undefined, '/etc/shadow', '../../x']);
});

test('broken archives: truncation, bad checksum, bad gzip, missing link target, sparse, file as parent', async (t) => {
  const good = makeTar([{ name: 'a', data: 'x'.repeat(2000) }]);
  await assert.rejects(load(good.subarray(0, 1200)), rejectsWith('CORRUPT_ARCHIVE', /Unexpected end of data/));
  const bad = Buffer.from(good);
  bad[10] = bad[10]! ^ 1;
  await assert.rejects(load(bad), rejectsWith('CORRUPT_ARCHIVE', /Invalid tar header/));
  const gz = gzip(good);
  await assert.rejects(load(gz.subarray(0, gz.length - 12)), rejectsWith('CORRUPT_ARCHIVE', /hostile\.tar/));
  await assert.rejects(load([{ name: 'h', type: '1', linkname: 'nowhere' }]), rejectsWith('CORRUPT_ARCHIVE', /'h' names 'nowhere', which is not in the tree/));
  await assert.rejects(load([{ name: 'd', type: '5' }, { name: 'h', type: '1', linkname: 'd' }]), rejectsWith('UNSUPPORTED_ENTRY', /names directory 'd'/));
  await assert.rejects(load([{ name: 's', type: 'S', data: '' }]), rejectsWith('UNSUPPORTED_ENTRY', /'s' has an unsupported tar entry type/));
  await assert.rejects(load([{ name: 'f', data: 'x' }, { name: 'f/g', data: 'y' }]), rejectsWith('CORRUPT_ARCHIVE', /'f\/g' lies below 'f', which is not a directory/));
  await assert.rejects(load([{ name: 'f', pax: [['mtime', 'soon']], data: 'x' }]), rejectsWith('CORRUPT_ARCHIVE', /pax 'mtime' value 'soon'/));
  await assert.rejects(load(Buffer.concat([makeTar([], { end: false }), Buffer.from('20 path=unterminated'), Buffer.alloc(492)])), (e: unknown) => isVmimgError(e));
  // through loadTree too: the error names the archive file
  const dir = tempDir(t);
  writeFileSync(join(dir, 'evil.tar'), makeTar([{ name: '../x', data: 'x' }]));
  await assert.rejects(loadTree([join(dir, 'evil.tar')]), rejectsWith('UNSAFE_PATH', /while reading archive '.*evil\.tar'.*'\.\.\/x'/));
});

test('malformed pax headers are refused, not misparsed', async () => {
  const recordless = makeTar([{ name: 'f', pax: [['path', 'ok']], data: 'x' }]);
  // corrupt the length field of the pax record ("11 path=ok\n" → "99 path=ok\n") and fix the checksum-free body
  const at = recordless.indexOf(Buffer.from('11 path=ok'));
  recordless.write('99', at, 'latin1');
  await assert.rejects(load(recordless), rejectsWith('CORRUPT_ARCHIVE', /Malformed pax extended header record/));
});
