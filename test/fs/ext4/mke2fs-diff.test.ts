/**
 * Differential checks against `mke2fs -t ext4 -d` (e2fsprogs as the judge): the same directory
 * built by both at the same size, inode count, UUID and hash seed gives the same debugfs facts
 * per path and the same dumpe2fs header apart from the differences docs/ext4.md lists; and the
 * regressions the differential run found (superblock time from future mtimes, error messages).
 */
import assert from 'node:assert/strict';
import { linkSync, mkdirSync, symlinkSync, utimesSync, writeFileSync, chmodSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { execFileSync } from 'node:child_process';
import { buildExt4, planExt4 } from '../../../src/fs/ext4/index.js';
import { oracle, run, tempDir } from '../../helpers/oracle.js';
import { vmimg } from '../../helpers/cli.js';
import { assertFsckClean, memoryTree } from './helpers.js';

const UUID = '11111111-2222-4333-8444-555555555555';
const SEED = '66666666-7777-4888-9999-aaaaaaaaaaaa';

/** A directory any user can create: every unprivileged entry type, modes, odd times and names. */
function makeSource(src: string): void {
  mkdirSync(join(src, 'd/sub'), { recursive: true });
  mkdirSync(join(src, 'many'));
  for (let i = 0; i < 400; i++) writeFileSync(join(src, 'many', `entry-${String(i).padStart(4, '0')}-${'n'.repeat(i % 30)}`), i % 2 ? `${i}` : '');
  writeFileSync(join(src, 'empty'), '');
  writeFileSync(join(src, 'multi'), Buffer.alloc(3 * 1024 * 1024 + 17, 0x5a));
  writeFileSync(join(src, 'd/a'), 'linked');
  linkSync(join(src, 'd/a'), join(src, 'd/sub/b'));
  symlinkSync('short/target', join(src, 'sym-short'));
  symlinkSync('t'.repeat(59), join(src, 'sym-59'));
  symlinkSync('t'.repeat(60), join(src, 'sym-60'));
  symlinkSync('L/'.repeat(200), join(src, 'sym-long'));
  execFileSync('mkfifo', [join(src, 'fifo')]);
  writeFileSync(join(src, 'odd name \u00e9 -x'), 'odd');
  for (const [name, mode] of [['setuid', 0o4755], ['setgid', 0o2711], ['sticky', 0o1644], ['none', 0o000]] as const) {
    writeFileSync(join(src, name), name);
    chmodSync(join(src, name), mode);
  }
  chmodSync(join(src, 'd/sub'), 0o1777);
  for (const [name, seconds] of [['t-1960', -315_619_200.5], ['t-2040', 2_208_988_800.25], ['t-2100', 4_102_444_800]] as const) {
    writeFileSync(join(src, name), name);
    utimesSync(join(src, name), seconds, seconds);
  }
}

/** Per-path debugfs facts that both tools must agree on (mke2fs -d keeps whole-second mtimes only). */
function facts(debugfs: string, image: string, paths: string[]): string[] {
  const r = run(debugfs, ['-f', '-', image], { input: paths.map((p) => `stat "${p}"`).join('\n') + '\n' });
  return r.stdout.split(/^debugfs: stat .*$/m).slice(1).map((block, i) => {
    const pick = (re: RegExp): string => re.exec(block)?.[1] ?? '-';
    return [paths[i], pick(/Type: (\S+)/), pick(/Mode: +(\d+)/), pick(/Flags: (0x[0-9a-f]+)/), pick(/User: +(\d+)/), pick(/Group: +(\d+)/),
      pick(/Size: (\d+)/), pick(/Links: (\d+)/), pick(/ mtime: (0x[0-9a-f]+):/), pick(/Fast link dest: "(.*)"/), pick(/Size of extra inode fields: (\d+)/)].join(' ');
  });
}

/** dumpe2fs -h lines minus times, checksums and the fields docs/ext4.md says differ. */
function header(dumpe2fs: string, image: string): string[] {
  return run(dumpe2fs, ['-h', image]).stdout.split('\n')
    .filter((l) => !/time:|Lifetime|Checksum:|created|Last |Mount count|Check interval|Next check|Overhead clusters|^Free blocks/.test(l));
}

for (const features of ['', '^dir_index', '^metadata_csum,^64bit,^huge_file']) {
  test(`a directory built by vmimg and by mke2fs -d${features ? ` (-O ${features})` : ''}: same debugfs facts per path and the same superblock`, async (t) => {
    const mke2fs = oracle(t, 'mke2fs');
    const debugfs = oracle(t, 'debugfs');
    const dumpe2fs = oracle(t, 'dumpe2fs');
    if (!mke2fs || !debugfs || !dumpe2fs) return;
    const dir = tempDir(t, 'vmimg-ext4-diff-');
    const src = join(dir, 'src');
    makeSource(src);
    const ours = join(dir, 'v.img');
    const r = await vmimg(['mkfs', '-t', 'ext4', '-L', 'lbl', '-U', UUID, '--hash-seed', SEED, '--size', '64M', ...(features ? ['-O', features] : []), src, ours]);
    assert.equal(r.status, 0, r.stderr);
    assertFsckClean(t, ours);
    const inodes = /Inode count: +(\d+)/.exec(run(dumpe2fs, ['-h', ours]).stdout)![1]!;
    const theirs = join(dir, 'm.img');
    const m = run(mke2fs, ['-q', '-F', '-t', 'ext4', '-b', '4096', '-I', '256', '-N', inodes, '-m', '0', '-L', 'lbl', '-U', UUID,
      '-E', `hash_seed=${SEED}`, '-O', `^has_journal,^resize_inode${features ? ',' + features : ''}`, '-d', src, theirs, `${statSync(ours).size / 1024}k`]);
    assert.equal(m.status, 0, m.stderr);
    assertFsckClean(t, theirs);
    const paths = execFileSync('find', ['.', '-mindepth', '1'], { cwd: src, encoding: 'utf8' }).split('\n').filter(Boolean).map((p) => p.slice(1)).sort();
    assert.ok(paths.length > 400, `${paths.length} paths`);
    assert.deepEqual(facts(debugfs, ours, paths), facts(debugfs, theirs, paths));
    assert.deepEqual(header(dumpe2fs, ours), header(dumpe2fs, theirs));
  });
}

test('xattrs and ACLs of a directory source reach the image as mke2fs -d copies them (debugfs ea_list per path)', async (t) => {
  const mke2fs = oracle(t, 'mke2fs');
  const debugfs = oracle(t, 'debugfs');
  const setfattr = oracle(t, 'setfattr');
  const setfacl = oracle(t, 'setfacl');
  if (!mke2fs || !debugfs || !setfattr || !setfacl) return;
  const dir = tempDir(t, 'vmimg-ext4-xattr-');
  const src = join(dir, 'src');
  mkdirSync(join(src, 'sub'), { recursive: true });
  writeFileSync(join(src, 'a'), 'a');
  writeFileSync(join(src, 'sub/b'), 'b');
  writeFileSync(join(src, 'big'), 'c');
  symlinkSync('a', join(src, 'link')); // its own (none), never a's: links are not followed
  const set = (path: string, name: string, value: string): void => void execFileSync(setfattr, ['-n', name, '-v', value, join(src, path)]);
  set('a', 'user.color', 'red');
  set('a', 'user.empty', '""');
  set('sub', 'user.bin', '0sAAEC/w==');
  set('big', 'user.large', `0s${Buffer.alloc(3000, 7).toString('base64')}`); // past the inode: an xattr block
  execFileSync(setfacl, ['-m', 'u:1234:rw,g:55:r', join(src, 'sub/b')]);
  execFileSync(setfacl, ['-d', '-m', 'g:55:rx', join(src, 'sub')]);
  if (process.getuid?.() === 0) {
    set('a', 'security.capability', '0sAQAAAgAgAAAAAAAAAAAAAAAAAAA='); // cap_net_raw+ep, as on ping
    set('sub/b', 'trusted.x', '1');
  }
  const ours = join(dir, 'v.img');
  const r = await vmimg(['mkfs', '-t', 'ext4', '--size', '64M', src, ours]);
  assert.equal(r.status, 0, r.stderr);
  assertFsckClean(t, ours);
  const theirs = join(dir, 'm.img');
  const m = run(mke2fs, ['-q', '-F', '-t', 'ext4', '-b', '4096', '-d', src, theirs, '64M']);
  assert.equal(m.status, 0, m.stderr);
  const paths = ['/', '/a', '/sub', '/sub/b', '/big', '/link'];
  const list = (image: string): string => run(debugfs, ['-f', '-', image], { input: paths.map((p) => `ea_list "${p}"`).join('\n') + '\n' }).stdout;
  const want = list(theirs);
  assert.match(want, /user\.color \(3\) = "red"/);
  assert.match(want, /system\.posix_acl_access/);
  assert.equal(list(ours), want);
});

test('-i BYTES gives the inode count mke2fs -i gives at the same size', async (t) => {
  const mke2fs = oracle(t, 'mke2fs');
  const dumpe2fs = oracle(t, 'dumpe2fs');
  if (!mke2fs || !dumpe2fs) return;
  const dir = tempDir(t, 'vmimg-ext4-diff-');
  mkdirSync(join(dir, 'src'));
  writeFileSync(join(dir, 'src/f'), 'x');
  const count = (image: string): string => /Inode count: +(\d+)/.exec(run(dumpe2fs, ['-h', image]).stdout)?.[1] ?? '?';
  for (const ratio of ['4096', '65536']) {
    const r = await vmimg(['mkfs', '-t', 'ext4', '--size', '300M', '-i', ratio, join(dir, 'src'), join(dir, 'v.img')]);
    assert.equal(r.status, 0, r.stderr);
    const m = run(mke2fs, ['-q', '-F', '-t', 'ext4', '-b', '4096', '-I', '256', '-i', ratio, '-O', '^has_journal,^resize_inode', join(dir, 'm.img'), '300M']);
    assert.equal(m.status, 0, m.stderr);
    assert.equal(count(join(dir, 'v.img')), count(join(dir, 'm.img')), `-i ${ratio}`);
  }
});

test('mtimes after the build clock (2100) do not become the superblock time: e2fsck finds nothing "in the future"', async (t) => {
  const saved = process.env['SOURCE_DATE_EPOCH'];
  delete process.env['SOURCE_DATE_EPOCH'];
  try {
    const tree = memoryTree([
      { path: 'past', data: 'p', mtimeNs: 1_600_000_000_500_000_000n },
      { path: 'y2100', data: 'f', mtimeNs: 4_102_444_800_000_000_000n },
      { path: 'y2300', data: 'g', mtimeNs: 10_413_792_000_000_000_007n },
    ]);
    assert.equal(planExt4(tree).time, 1_600_000_000, 'the newest mtime not after now');
    const image = join(tempDir(t, 'vmimg-ext4-diff-'), 'f.img');
    await buildExt4(tree, image);
    assertFsckClean(t, image);
  } finally {
    if (saved !== undefined) process.env['SOURCE_DATE_EPOCH'] = saved;
  }
});

test('mkfs errors name the offending value', async (t) => {
  const dir = tempDir(t, 'vmimg-ext4-diff-');
  mkdirSync(join(dir, 'src'));
  writeFileSync(join(dir, 'src/f'), 'x');
  const cases: Array<[string[], RegExp]> = [
    [['-J', '--size', '5M'], /journal needs a filesystem of at least 8388608 bytes, not 5242880/],
    [['--mtime', '-5'], /--mtime.*not -5/],
    [['--size', '20k'], /filesystem of 20480 bytes; it fits in \d+ bytes/],
    [['-N', '3'], /inode count .* not 3\b/],
    [['-O', 'bigalloc'], /'bigalloc'/],
    [['-L', 'x'.repeat(17)], /label 'x{17}'/],
    [['-i', '512'], /bytes per inode .* not 512/],
    [['-i', 'lots'], /-i .* not 'lots'/],
    [['--size', '64T'], /too many inodes \(4294967296; .*-i/],
    [['--size', '17T', '-O', '^64bit'], /18691697672192 bytes has 4563402752 blocks; .*64bit/],
  ];
  for (const [args, want] of cases) {
    const r = await vmimg(['mkfs', '-t', 'ext4', ...args, join(dir, 'src'), join(dir, 'o.img')]);
    assert.notEqual(r.status, 0, args.join(' '));
    assert.match(r.stderr, want, args.join(' '));
  }
  const missing = await vmimg(['mkfs', '-t', 'ext4', join(dir, 'nope'), join(dir, 'o.img')]);
  assert.match(missing.stderr, /nope/);
  assert.equal(run('ls', [dir]).stdout.includes('o.img'), false, 'no output left behind');
});
