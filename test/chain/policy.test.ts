/**
 * The chain Policy against hostile images (issue "Safety"): references to /etc/passwd through a
 * backing file, a vmdk extent and a qcow2 data-file are reported and never read; backing loops
 * and over-deep chains are refused; backing names that leave the image's tree need --allow-dir
 * or --allow-any-path; `info` does not open backing files unless --backing-chain.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openChain } from '../../src/chain/open.js';
import { defaultPolicy } from '../../src/chain/policy.js';
import { VmimgError } from '../../src/util/errors.js';
import { vmimg, type CliResult } from '../helpers/cli.js';
import { oracle, qemuImg, run, tempDir } from '../helpers/oracle.js';

/** The first line of the host's /etc/passwd: must never appear in any output. */
const PASSWD_HEAD = readFileSync('/etc/passwd', 'utf8').split('\n')[0]!;

function mk(dir: string, args: string[]): void {
  const r = qemuImg(args, dir);
  assert.equal(r.status, 0, `qemu-img ${args.join(' ')}: ${r.stderr}`);
}

function noLeak(r: CliResult, what: string): void {
  assert.ok(!r.stdout.includes(PASSWD_HEAD) && !r.stderr.includes(PASSWD_HEAD), `${what} printed /etc/passwd`);
}

async function denied(args: string[], code: string, what: string): Promise<CliResult> {
  const r = await vmimg(args);
  // compare's error statuses (qemu-img): 2 opening, 3 block status, 4 reading; others exit 1.
  if (args[0] === 'compare') assert.ok(r.status >= 2, `${what}: ${r.status} ${r.stderr}`);
  else assert.equal(r.status, 1, `${what}: ${r.stdout}${r.stderr}`);
  assert.match(r.stderr, new RegExp(code), what);
  noLeak(r, what);
  return r;
}

/** Every reading command refuses the image; the convert target never appears. */
async function neverRead(dir: string, image: string, code: string, chainInfoDenied = true): Promise<void> {
  const out = join(dir, 'out.raw');
  await denied(['map', image], code, 'map');
  await denied(['map', '--output=json', image], code, 'map json');
  await denied(['convert', '-O', 'raw', image, out], code, 'convert');
  assert.ok(!existsSync(out), 'convert left a target');
  await denied(['compare', image, image], code, 'compare');
  if (chainInfoDenied) await denied(['info', '--backing-chain', image], code, 'info --backing-chain');
}

test('a qcow2 backing file naming /etc/passwd is reported by info and never read', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t);
  mk(dir, ['create', '-q', '-f', 'qcow2', '-u', '-b', '/etc/passwd', '-F', 'raw', 'evil.qcow2', '1M']);
  const image = join(dir, 'evil.qcow2');
  const info = await vmimg(['info', '--output=json', image]);
  assert.equal(info.status, 0, info.stderr);
  const fields = JSON.parse(info.stdout) as Record<string, unknown>;
  assert.equal(fields['backing-filename'], '/etc/passwd');
  assert.equal(fields['backing-filename-format'], 'raw');
  await neverRead(dir, image, 'REFERENCE_DENIED');
  const safety = await vmimg(['info', '--safety-check', image]);
  assert.notEqual(safety.status, 0);
  assert.match(safety.stderr, /backing/i);
  noLeak(safety, 'safety');
});

test('a vmdk FLAT extent naming /etc/passwd is listed by info and never read', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t);
  const image = join(dir, 'evil.vmdk');
  writeFileSync(
    image,
    '# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\n' +
      '# Extent description\nRW 8 FLAT "/etc/passwd" 0\n\n# The Disk Data Base\n#DDB\nddb.virtualHWVersion = "4"\n',
  );
  const info = await vmimg(['info', '--output=json', image]);
  assert.equal(info.status, 0, info.stderr);
  assert.match(info.stdout, /"filename": "\/etc\/passwd"/);
  // info (even --backing-chain) describes extents without reading them.
  await neverRead(dir, image, 'REFERENCE_DENIED', false);
  const chainInfo = await vmimg(['info', '--backing-chain', image]);
  assert.equal(chainInfo.status, 0, chainInfo.stderr);
  noLeak(chainInfo, 'info --backing-chain');
  const safety = await vmimg(['info', '--safety-check', image]);
  assert.notEqual(safety.status, 0);
  noLeak(safety, 'safety');
});

test('a qcow2 external data-file naming /etc/passwd is reported by info and never read', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t);
  // qemu-img create makes (truncates) the data file, so it gets an 11-byte name that is then
  // patched to "/etc/passwd" inside the header extension (same length, no other change).
  mk(dir, ['create', '-q', '-f', 'qcow2', '-o', 'data_file=abcdefghijk,data_file_raw=on', 'evil.qcow2', '1M']);
  const image = join(dir, 'evil.qcow2');
  const bytes = readFileSync(image);
  const at = bytes.indexOf('abcdefghijk');
  assert.ok(at > 0 && at < 4096);
  bytes.write('/etc/passwd', at);
  writeFileSync(image, bytes);
  const theirs = JSON.parse(qemuImg(['info', '--output=json', image]).stdout) as { 'format-specific': { data: Record<string, unknown> } };
  assert.equal(theirs['format-specific'].data['data-file'], '/etc/passwd');
  const info = await vmimg(['info', '--output=json', image]);
  assert.equal(info.status, 0, info.stderr);
  assert.deepEqual(JSON.parse(info.stdout)['format-specific'], theirs['format-specific']);
  const out = join(dir, 'out.raw');
  await denied(['map', image], 'REFERENCE_DENIED', 'map');
  await denied(['convert', '-O', 'raw', image, out], 'REFERENCE_DENIED', 'convert');
  assert.ok(!existsSync(out));
  const safety = await vmimg(['info', '--safety-check', image]);
  assert.notEqual(safety.status, 0);
  assert.match(safety.stderr, /data_file/);
});

test('backing loops (self and two-image) are refused with BACKING_LOOP', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t);
  mk(dir, ['create', '-q', '-f', 'qcow2', 'a.qcow2', '1M']);
  mk(dir, ['create', '-q', '-f', 'qcow2', '-b', 'a.qcow2', '-F', 'qcow2', 'b.qcow2']);
  mk(dir, ['rebase', '-u', '-b', 'b.qcow2', '-F', 'qcow2', 'a.qcow2']);
  mk(dir, ['create', '-q', '-f', 'qcow2', 'self.qcow2', '1M']);
  mk(dir, ['rebase', '-u', '-b', 'self.qcow2', '-F', 'qcow2', 'self.qcow2']);
  for (const name of ['b.qcow2', 'self.qcow2']) {
    const image = join(dir, name);
    assert.equal((await vmimg(['info', image])).status, 0, 'plain info does not follow the loop');
    await neverRead(dir, image, 'BACKING_LOOP');
    await assert.rejects(openChain(image, { policy: defaultPolicy(image) }), (e: unknown) => e instanceof VmimgError && e.code === 'BACKING_LOOP');
  }
  // qemu-img agrees that these chains cannot be opened.
  assert.notEqual(qemuImg(['info', '--backing-chain', join(dir, 'b.qcow2')]).status, 0);
});

test('a chain deeper than the policy limit is refused with CHAIN_TOO_DEEP', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t);
  mk(dir, ['create', '-q', '-f', 'qcow2', 'l0.qcow2', '1M']);
  for (let i = 1; i <= 5; i++) mk(dir, ['create', '-q', '-f', 'qcow2', '-b', `l${i - 1}.qcow2`, '-F', 'qcow2', `l${i}.qcow2`]);
  const top = join(dir, 'l5.qcow2');
  const chain = await openChain(top, { policy: { ...defaultPolicy(top), maxDepth: 5 } });
  assert.equal(chain.layers.length, 6);
  await chain.close();
  await assert.rejects(openChain(top, { policy: { ...defaultPolicy(top), maxDepth: 4 } }), (e: unknown) => e instanceof VmimgError && e.code === 'CHAIN_TOO_DEEP');
});

test('a backing file outside the image tree needs --allow-dir or --allow-any-path; info does not open it', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const root = tempDir(t);
  run('mkdir', ['-p', join(root, 'base'), join(root, 'vm')]);
  mk(root, ['create', '-q', '-f', 'qcow2', 'base/b.qcow2', '4M']);
  assert.equal(run('qemu-io', ['-c', 'write -P 0x42 0 1M', join(root, 'base/b.qcow2')]).status, 0);
  mk(join(root, 'vm'), ['create', '-q', '-f', 'qcow2', '-b', '../base/b.qcow2', '-F', 'qcow2', 'top.qcow2']);
  const top = join(root, 'vm', 'top.qcow2');

  const info = await vmimg(['info', '--output=json', top]);
  assert.equal(info.status, 0, info.stderr);
  const theirs = JSON.parse(qemuImg(['info', '--output=json', top]).stdout) as Record<string, unknown>;
  const ours = JSON.parse(info.stdout) as Record<string, unknown>;
  for (const k of ['backing-filename', 'full-backing-filename', 'backing-filename-format']) assert.equal(ours[k], theirs[k], k);
  await neverRead(join(root, 'vm'), top, 'REFERENCE_DENIED');

  const out = join(root, 'vm', 'out.raw');
  const viaDir = await vmimg(['convert', '--allow-dir', join(root, 'base'), '-O', 'raw', top, out]);
  assert.equal(viaDir.status, 0, viaDir.stderr);
  assert.equal(qemuImg(['compare', '-f', 'raw', out, top]).status, 0);
  const chain = await vmimg(['info', '--backing-chain', '--allow-any-path', '--output=json', top]);
  assert.equal(chain.status, 0, chain.stderr);
  assert.equal((JSON.parse(chain.stdout) as unknown[]).length, 2);
});
