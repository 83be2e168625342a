/** `vmimg mkfs -t packagefs` and `vmimg packagefs ls|cat|verify`, raw and inside qcow2 (qemu-img convert). */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'node:test';
import { runCli } from '../../../src/cli/main.js';
import type { BinaryCliIO } from '../../../src/cli/packagefs.js';
import { openImageSource, PackagefsReader } from '../../../src/fs/packagefs/index.js';
import { defaultPolicy } from '../../../src/chain/policy.js';
import { oracle, qemuImg, tempDir } from '../../helpers/oracle.js';
import { makeTar, gzip } from '../../tree/make-tar.js';
import { sha256 } from './helpers.js';

async function vmimg(args: string[]): Promise<{ status: number; stdout: string; stderr: string; bytes: Buffer }> {
  let stdout = '';
  let stderr = '';
  const bytes: Buffer[] = [];
  const io: BinaryCliIO = { out: (t) => void (stdout += t), err: (t) => void (stderr += t), outBytes: (b) => void bytes.push(Buffer.from(b)) };
  const status = await runCli(args, io);
  return { status, stdout, stderr, bytes: Buffer.concat(bytes) };
}

function fixture(root: string): { dir: string; tar: string; files: Record<string, Buffer> } {
  const dir = join(root, 'src');
  mkdirSync(join(dir, 'etc'), { recursive: true });
  const files: Record<string, Buffer> = { 'etc/os-release': Buffer.from('ID=test\n'), 'etc/hosts': Buffer.from('127.0.0.1 localhost\n') };
  for (const [p, d] of Object.entries(files)) writeFileSync(join(dir, p), d);
  const blob = Buffer.alloc(200_000);
  for (let i = 0; i < blob.length; i++) blob[i] = (i * 13) & 0xff;
  files['opt/blob.bin'] = blob;
  files['etc/hosts'] = Buffer.from('10.0.0.1 top\n');
  const tar = join(root, 'layer.tar.gz');
  writeFileSync(tar, gzip(makeTar([{ name: 'opt/blob.bin', data: blob }, { name: 'etc/hosts', data: files['etc/hosts'] }, { name: 'usr/bin/sh', type: '2', linkname: 'busybox' }])));
  return { dir, tar, files };
}

test('mkfs -t packagefs from a directory overlaid with a tar.gz; ls, cat, verify; deterministic', async (t) => {
  const root = tempDir(t);
  const { dir, tar, files } = fixture(root);
  const img = join(root, 'out/p.img');
  const built = await vmimg(['mkfs', '-t', 'packagefs', '-o', img, '--mtime', '100', '--output', 'json', dir, tar]);
  assert.equal(built.status, 0, built.stderr);
  assert.equal(JSON.parse(built.stdout)['type'], 'packagefs');
  const again = await vmimg(['mkfs', '-t', 'packagefs', '-o', join(root, 'out/q.img'), '--mtime', '100', dir, tar]);
  assert.equal(again.status, 0, again.stderr);
  assert.equal(sha256(readFileSync(img)), sha256(readFileSync(join(root, 'out/q.img'))));
  const ls = await vmimg(['packagefs', 'ls', img]);
  assert.equal(ls.status, 0, ls.stderr);
  assert.match(ls.stdout, /^drwxr-xr-x 0\/0 +0 \/etc$/m);
  const lsR = await vmimg(['packagefs', 'ls', '-R', '--output', 'json', img, '/usr']);
  assert.deepEqual(JSON.parse(lsR.stdout).map((e: { path: string; target?: string }) => [e.path, e.target]), [['/usr/bin', undefined], ['/usr/bin/sh', 'busybox']]);
  for (const [p, data] of Object.entries(files)) {
    const cat = await vmimg(['packagefs', 'cat', img, p]);
    assert.equal(cat.status, 0, cat.stderr);
    assert.equal(sha256(cat.bytes), sha256(data), p);
  }
  const v = await vmimg(['packagefs', 'verify', img]);
  assert.equal(v.status, 0, v.stderr);
  assert.match(v.stdout, /4 entries checked, 0 mismatches/);
  const missing = await vmimg(['packagefs', 'cat', img, 'etc/nope']);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /'etc\/nope' is not in the packagefs image \[FILE_NOT_FOUND\]/);
});

test('a packagefs image converted to qcow2 by qemu-img reads back through the chain', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const root = tempDir(t);
  const { dir, tar, files } = fixture(root);
  const img = join(root, 'p.img');
  assert.equal((await vmimg(['mkfs', '-t', 'packagefs', '-o', img, dir, tar])).status, 0);
  const qcow = join(root, 'p.qcow2');
  const r = qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', '-c', img, qcow]);
  assert.equal(r.status, 0, r.stderr);
  const { source, chain } = await openImageSource(qcow, { policy: defaultPolicy(qcow) });
  try {
    const reader = await PackagefsReader.open(source);
    for (const [p, data] of Object.entries(files)) assert.equal(reader.stat(p)!.sha256.toString('hex'), sha256(data));
    assert.deepEqual((await reader.verify()).mismatches, []);
  } finally {
    await chain.close();
  }
  const cat = await vmimg(['packagefs', 'cat', qcow, 'opt/blob.bin']);
  assert.equal(sha256(cat.bytes), sha256(files['opt/blob.bin']!));
  assert.equal((await vmimg(['packagefs', 'verify', '-f', 'qcow2', qcow])).status, 0);
});

test('mkfs errors: unknown type, too small, bad flags; verify reports damaged content', async (t) => {
  const root = tempDir(t);
  const { dir } = fixture(root);
  const ext = await vmimg(['mkfs', '-t', 'ext9', '-o', join(root, 'x.img'), dir]);
  assert.equal(ext.status, 1);
  assert.match(ext.stderr, /mkfs type 'ext9' is not supported \(supported: packagefs, ext4, cpio\) \[UNSUPPORTED_OPTION\]/);
  const small = await vmimg(['mkfs', '-t', 'packagefs', '-o', join(root, 'x.img'), '--max-size', '1k', dir]);
  assert.equal(small.status, 1);
  assert.match(small.stderr, /needs 2048 bytes, more than the maximum of 1024 bytes \[FS_TOO_LARGE\]/);
  assert.equal(existsSync(join(root, 'x.img')), false);
  const owner = await vmimg(['mkfs', '-t', 'packagefs', '--owner', 'root', dir]);
  assert.match(owner.stderr, /--owner must be UID:GID, not 'root' \[INVALID_OPTION\]/);
  const img = join(root, 'ok.img');
  assert.equal((await vmimg(['mkfs', '-t', 'packagefs', '-o', img, dir])).status, 0);
  const bytes = readFileSync(img);
  bytes[bytes.length - 512] = bytes[bytes.length - 512]! ^ 1;
  writeFileSync(img, bytes);
  const v = await vmimg(['packagefs', 'verify', img]);
  assert.equal(v.status, 1);
  assert.match(v.stdout, /MISMATCH \/etc\//);
  assert.match(v.stderr, /1 of 2 entries .* do not match their sha256 \[CHECKSUM_MISMATCH\]/);
});

test('mkfs default output is build/pkgfs.img under the working directory', async (t) => {
  const root = tempDir(t);
  const { dir } = fixture(root);
  const old = process.cwd();
  process.chdir(root);
  try {
    assert.equal((await vmimg(['mkfs', '-t', 'packagefs', dir])).status, 0);
  } finally {
    process.chdir(old);
  }
  assert.ok(existsSync(join(root, 'build/pkgfs.img')));
});
