import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { vmimg } from '../helpers/cli.js';
import { KERNEL_TABLE } from '../../src/rootfs/fetch/kernel.js';
import { serve, sha256, tempDir } from './server.js';

const KEY = '/s3/firecracker-ci/v1.10/x86_64/vmlinux-6.1.102';

function args(dir: string, base: string, extra: string[] = []): string[] {
  return ['fetch', 'kernel', '--version', '6.1', '--arch', 'x86_64', '--dest', join(dir, 'k'), '--cache-dir', join(dir, 'cache'), '--base-url', base, '--config', join(dir, 'none.json'), ...extra];
}

test('kernel table: every digest is 64 lowercase hex digits or null (not pinned)', () => {
  for (const [version, entry] of Object.entries(KERNEL_TABLE)) {
    for (const d of Object.values(entry.sha256)) assert.ok(d === null || /^[0-9a-f]{64}$/.test(d), version);
  }
  // The default version is pinned for both architectures (docs/fetch.md "Pinned digests").
  assert.match(KERNEL_TABLE['6.1']!.sha256.x86_64 ?? '', /^49ba99a5/);
  assert.match(KERNEL_TABLE['6.1']!.sha256.aarch64 ?? '', /^bb1f5091/);
});

test('fetch kernel: refused without a pinned digest or --sha256, before any request', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'none.json'), '{}');
  const fx = await serve(t);
  const r = await vmimg(args(dir, `${fx.base}/s3`, ['--version', '5.10']));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /Guest kernel 5\.10 \(x86_64\) has no pinned SHA256.*--sha256.*\[DIGEST_NOT_PINNED\]/);
  assert.equal(fx.log.length, 0);
  const unknown = await vmimg(args(dir, `${fx.base}/s3`, ['--version', '4.14', '--sha256', 'a'.repeat(64)]));
  assert.match(unknown.stderr, /Unknown guest kernel version '4\.14'.*\[INVALID_OPTION\]/);
  const bad = await vmimg(args(dir, `${fx.base}/s3`, ['--sha256', 'xyz']));
  assert.match(bad.stderr, /Not a SHA256 digest.*\[INVALID_OPTION\]/);
});

test('fetch kernel --sha256: installs vmlinux with a .sha256 sidecar; idempotent; a wrong digest leaves nothing', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'none.json'), '{}');
  const fx = await serve(t);
  const kernel = Buffer.alloc(300000, 7);
  fx.routes.set(KEY, { body: kernel });
  const digest = sha256(kernel);

  const wrong = await vmimg(args(dir, `${fx.base}/s3`, ['--sha256', 'c'.repeat(64)]));
  assert.equal(wrong.status, 1);
  assert.match(wrong.stderr, new RegExp(`expected c{64}, got ${digest}.*\\[CHECKSUM_MISMATCH\\]`));
  assert.throws(() => statSync(join(dir, 'k', 'vmlinux-6.1')));

  const ok = await vmimg(args(dir, `${fx.base}/s3`, ['--sha256', digest.toUpperCase()]));
  assert.equal(ok.status, 0, ok.stderr);
  assert.deepEqual(readFileSync(join(dir, 'k', 'vmlinux-6.1')), kernel);
  assert.equal(readFileSync(join(dir, 'k', 'vmlinux-6.1.sha256'), 'utf8'), `${digest}  vmlinux-6.1\n`);
  const before = fx.log.length;
  const again = await vmimg(args(dir, `${fx.base}/s3`, ['--sha256', digest, '--output', 'json']));
  assert.equal(JSON.parse(again.stdout).status, 'present');
  assert.equal(fx.log.length, before);
});

test('fetch kernel 6.1 without --sha256 checks the pinned digest: a file that differs is refused and nothing is installed', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'none.json'), '{}');
  const fx = await serve(t);
  const kernel = Buffer.alloc(300000, 9);
  fx.routes.set(KEY, { body: kernel });
  const r = await vmimg(args(dir, `${fx.base}/s3`));
  assert.equal(r.status, 1);
  assert.match(r.stderr, new RegExp(`expected ${KERNEL_TABLE['6.1']!.sha256.x86_64}, got ${sha256(kernel)}.*\\[CHECKSUM_MISMATCH\\]`));
  assert.equal(fx.count(KEY), 1);
  assert.throws(() => statSync(join(dir, 'k', 'vmlinux-6.1')));
});
