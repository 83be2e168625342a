/**
 * The CVE-2022-47951 class: a vmdk descriptor can name any file as an extent, and qemu-img
 * reads it. vmimg opens extent files (and parentFileNameHint backing files) only through the
 * chain Policy: by default a referenced file must lie in the image's own directory tree. Such an
 * image is reported by `info` (its extent names included), never read: map, convert, check and
 * ChainReader fail with REFERENCE_DENIED and the file's bytes appear in no output. The secret
 * here is a temporary file, never a real host file.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ChainReader } from '../../../src/chain/read.js';
import { openChain } from '../../../src/chain/open.js';
import { defaultPolicy } from '../../../src/chain/policy.js';
import { VmimgError } from '../../../src/util/errors.js';
import { vmimg, type CliResult } from '../../helpers/cli.js';
import { oracle, qemuImg, tempDir } from '../../helpers/oracle.js';
import { sameAsQemu, sameContentAsQemu, sh } from './reader-support.js';

const SECRET = 'TOP-SECRET-HOST-FILE-CONTENT-' + 'x7Qp';

function secretFile(dir: string): string {
  const path = join(dir, 'secret.txt');
  writeFileSync(path, Buffer.alloc(1024 * 1024, SECRET + '\n'));
  return path;
}

function descriptor(createType: string, extentLines: string[]): string {
  return `# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="${createType}"\n\n# Extent description\n${extentLines.join('\n')}\n\n# The Disk Data Base\n#DDB\nddb.virtualHWVersion = "4"\n`;
}

/**
 * info --output=json of an image whose extent vmimg does not open equals qemu-img's except for
 * actual-size, which in qemu-img also counts the allocation of the extent file it opened.
 */
async function sameInfoButActualSize(path: string): Promise<Record<string, unknown>> {
  const info = await vmimg(['info', '--output=json', path]);
  assert.equal(info.status, 0, info.stderr);
  const ours = JSON.parse(info.stdout) as Record<string, unknown>;
  const theirs = JSON.parse(qemuImg(['info', '--output=json', path]).stdout) as Record<string, unknown>;
  assert.deepEqual({ ...ours, 'actual-size': 0 }, { ...theirs, 'actual-size': 0 });
  return ours;
}

function assertNoSecret(r: CliResult, what: string): void {
  assert.ok(!r.stdout.includes(SECRET) && !r.stderr.includes(SECRET), `${what} printed the secret`);
}

function assertDenied(r: CliResult, what: string): void {
  assert.equal(r.status, 1, `${what}: ${r.stderr}`);
  assert.match(r.stderr, /REFERENCE_DENIED/, what);
  assertNoSecret(r, what);
}

test('a FLAT extent naming a file outside the image directory: reported by info, never read', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const images = tempDir(t);
  const secret = secretFile(tempDir(t));
  const evil = join(images, 'evil.vmdk');
  writeFileSync(evil, descriptor('monolithicFlat', [`RW 2048 FLAT "${secret}" 0`]));

  const ours = await sameInfoButActualSize(evil);
  assert.equal((ours['format-specific'] as { data: { extents: Array<{ filename: string }> } }).data.extents[0]!.filename, secret);

  const out = join(images, 'out.raw');
  assertDenied(await vmimg(['map', evil]), 'map');
  assertDenied(await vmimg(['map', '--output=json', evil]), 'map json');
  assertDenied(await vmimg(['convert', '-O', 'raw', evil, out]), 'convert');
  assert.ok(!existsSync(out) || !readFileSync(out).includes(SECRET), 'convert wrote the secret');
  assertDenied(await vmimg(['check', evil]), 'check');
  const compare = await vmimg(['compare', evil, evil]); // its statuses: 2 open, 3 allocation, 4 read error
  assert.ok(compare.status >= 2, `compare: ${compare.status}`);
  assert.match(compare.stderr, /REFERENCE_DENIED/);
  assertNoSecret(compare, 'compare');
  const chain = await openChain(evil, { policy: defaultPolicy(evil) });
  try {
    await assert.rejects(new ChainReader(chain.layers).read(0, 4096), (e: unknown) => e instanceof VmimgError && e.code === 'REFERENCE_DENIED');
  } finally {
    await chain.close();
  }

  const safety = await vmimg(['info', '--safety-check', evil]);
  assert.equal(safety.status, 1);
  assert.match(safety.stderr, /Unsupported subformat \('monolithicflat'\)/);
  assertNoSecret(safety, 'info --safety-check');

  // The user may allow it: then vmimg reads what qemu-img reads.
  const allowed = await vmimg(['convert', '--allow-any-path', '-O', 'raw', evil, out]);
  assert.equal(allowed.status, 0, allowed.stderr);
  assert.ok(readFileSync(out).includes(SECRET), 'with --allow-any-path the extent is read');
  const mapAllowed = await vmimg(['map', '--output=json', '--allow-any-path', evil]);
  assert.equal(mapAllowed.stdout, qemuImg(['map', '--output=json', evil]).stdout);
  await sameContentAsQemu(images, evil, { ...defaultPolicy(evil), mode: 'allow-all' });
});

test("relative '../' extent and backing names that leave the image's directory are refused; --allow-dir admits them", async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const root = tempDir(t);
  const sub = join(root, 'sub');
  mkdirSync(sub);
  writeFileSync(join(root, 'outside.raw'), Buffer.alloc(64 * 1024, 0x5a));
  const esc = join(sub, 'esc.vmdk');
  writeFileSync(esc, descriptor('monolithicFlat', ['RW 128 FLAT "../outside.raw" 0']));
  assertDenied(await vmimg(['map', esc]), 'map of a ../ flat extent');
  assertDenied(await vmimg(['convert', '-O', 'raw', esc, join(sub, 'o.raw')]), 'convert of a ../ flat extent');
  await sameInfoButActualSize(esc);
  const allowed = await vmimg(['map', '--output=json', '--allow-dir', root, esc]);
  assert.equal(allowed.stdout, qemuImg(['map', '--output=json', esc]).stdout);

  // A child whose parentFileNameHint is ../base.vmdk.
  sh(root, 'qemu-img', ['create', '-q', '-f', 'vmdk', 'base.vmdk', '1M']);
  sh(root, 'qemu-io', ['-f', 'vmdk', '-c', 'write -P 0x61 0 64k', 'base.vmdk']);
  sh(sub, 'qemu-img', ['create', '-q', '-f', 'vmdk', '-b', '../base.vmdk', '-F', 'vmdk', 'child.vmdk']);
  const child = join(sub, 'child.vmdk');
  await sameAsQemu(['info', '--output=json', child]);
  assertDenied(await vmimg(['map', child]), 'map through a ../ backing file');
  assertDenied(await vmimg(['info', '--backing-chain', child]), 'info --backing-chain through a ../ backing file');
  const safety = await vmimg(['info', '--safety-check', child]);
  assert.equal(safety.status, 1);
  assert.match(safety.stderr, /Image has a backing file/);
  const mapAllowed = await vmimg(['map', '--output=json', '--allow-dir', root, child]);
  assert.equal(mapAllowed.stdout, qemuImg(['map', '--output=json', child]).stdout);
});

test('a SPARSE extent outside the directory is listed by info without being opened; allowed, info equals qemu-img', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const images = tempDir(t);
  const elsewhere = tempDir(t);
  sh(elsewhere, 'qemu-img', ['create', '-q', '-f', 'vmdk', 'ext.vmdk', '1M']);
  sh(elsewhere, 'qemu-io', ['-f', 'vmdk', '-c', 'write -P 0x77 0 64k', 'ext.vmdk']);
  const path = join(images, 'sp.vmdk');
  writeFileSync(path, descriptor('twoGbMaxExtentSparse', [`RW 2048 SPARSE "${join(elsewhere, 'ext.vmdk')}"`]));
  const info = await vmimg(['info', '--output=json', path]);
  assert.equal(info.status, 0, info.stderr);
  const extent = (JSON.parse(info.stdout) as { 'format-specific': { data: { extents: Array<Record<string, unknown>> } } })['format-specific'].data.extents[0]!;
  assert.deepEqual(extent, { 'virtual-size': 1048576, filename: join(elsewhere, 'ext.vmdk'), format: 'SPARSE' });
  assertDenied(await vmimg(['map', path]), 'map of a denied sparse extent');
  const allowed = await vmimg(['info', '--output=json', '--allow-any-path', path]);
  assert.equal(allowed.stdout, qemuImg(['info', '--output=json', path]).stdout);
});

test('safety rules on embedded descriptors qemu-img ignores: extent names with "/", unknown lines', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vmdk', 'ok.vmdk', '1M']);
  const ok = await vmimg(['info', '--safety-check', join(dir, 'ok.vmdk')]);
  assert.equal(ok.status, 0, ok.stderr);
  const base = readFileSync(join(dir, 'ok.vmdk'));
  const text = base.subarray(512, 512 + 10240).toString('latin1').replace(/\0+$/, '');
  for (const [name, edit, reason] of [
    ['slash.vmdk', (s: string) => s.replace('SPARSE "ok.vmdk"', 'SPARSE "../ok.vmdk"'), /Invalid extent filenames found/],
    ['junk.vmdk', (s: string) => s.replace('# The Disk Data Base', 'run me please'), /Invalid VMDK descriptor data/],
    ['noext.vmdk', (s: string) => s.replace(/RW 2048 SPARSE "ok.vmdk"\n/, ''), /No extents found/],
  ] as const) {
    const img = Buffer.from(base);
    img.fill(0, 512, 512 + 10240);
    img.write(edit(text), 512, 'latin1');
    writeFileSync(join(dir, name), img);
    await sameAsQemu(['info', '--output=json', join(dir, name)]); // QEMU ignores an embedded extent line
    const r = await vmimg(['info', '--safety-check', join(dir, name)]);
    assert.equal(r.status, 1, `${name}: ${r.stderr}`);
    assert.match(r.stderr, reason, name);
  }
});
