/**
 * vmdk children against qemu-img 7.2: a child records its parent's CID as parentCID (qemu-img
 * info's parent-cid) and the -b name verbatim as parentFileNameHint; a grandchild names only
 * its immediate parent; parents that are descriptor files or streamOptimized work; parents that
 * are not vmdk, missing parents and backing names qemu-img would mangle are rejected.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { createImage, type CreateRequest } from '../../../src/ops/create.js';
import { VmimgError } from '../../../src/util/errors.js';
import { diffMasked, readBytes } from '../../helpers/create.js';
import { oracle, qemuImg, tempDir } from '../../helpers/oracle.js';
import { comparePair, infoCid } from './pairs.js';
import { cidBytes, cidText, descriptorText } from './support.js';

function infoJson(path: string): Record<string, unknown> {
  const r = qemuImg(['info', '--output=json', path]);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

function parentCidOf(path: string): number {
  return (infoJson(path)['format-specific'] as { data: { 'parent-cid': number } }).data['parent-cid'];
}

test('a vmdk child records its parent CID and names its parent; a grandchild names only its parent', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-vmdk-');
  const base = join(dir, 'base.vmdk');
  assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', base, '10M']).status, 0);
  const baseCid = infoCid(base);

  mkdirSync(join(dir, 'c'));
  const child = await comparePair(join(dir, 'c'), { format: 'vmdk', name: 'child.vmdk', inputs: [base], backingFile: 'base.vmdk', backingFormat: 'vmdk' });
  assert.equal(child.result.virtualSize, 10n << 20n, 'size from the parent');
  assert.equal(parentCidOf(child.ours), baseCid);
  assert.equal(parentCidOf(child.theirs), baseCid);
  assert.match(descriptorText(readBytes(child.ours)), new RegExp(`\\nparentCID=${baseCid.toString(16)}\\ncreateType="monolithicSparse"\\nparentFileNameHint="base.vmdk"\\n# Extent description\\n`));
  assert.equal(infoJson(child.ours)['backing-filename'], 'base.vmdk');

  // Grandchild over qemu-img's child (copied to both sides, so both see the same parent CID).
  mkdirSync(join(dir, 'g'));
  const childCid = infoCid(child.theirs);
  const grand = await comparePair(join(dir, 'g'), {
    format: 'vmdk',
    name: 'grand.vmdk',
    size: '20M',
    options: ['adapter_type=lsilogic'],
    inputs: [base, child.theirs],
    backingFile: 'child.vmdk',
    backingFormat: 'vmdk',
  });
  assert.equal(parentCidOf(grand.ours), childCid);
  const text = descriptorText(readBytes(grand.ours));
  assert.match(text, /parentFileNameHint="child.vmdk"\n/);
  assert.doesNotMatch(text, /base\.vmdk/, 'only the immediate parent is named');

  // A grandchild over vmimg's own child.
  mkdirSync(join(dir, 'o'));
  const ownChild = join(dir, 'o', 'child.vmdk');
  await createImage({ filename: join(dir, 'o', 'base.vmdk'), format: 'vmdk', size: '10M' });
  await createImage({ filename: ownChild, format: 'vmdk', backingFile: 'base.vmdk', backingFormat: 'vmdk' });
  await createImage({ filename: join(dir, 'o', 'grand.vmdk'), format: 'vmdk', backingFile: 'child.vmdk', backingFormat: 'vmdk' });
  assert.equal(parentCidOf(join(dir, 'o', 'grand.vmdk')), infoCid(ownChild));
  assert.equal(parentCidOf(ownChild), infoCid(join(dir, 'o', 'base.vmdk')));
  const chain = qemuImg(['info', '--backing-chain', '--output=json', join(dir, 'o', 'grand.vmdk')]);
  assert.equal(chain.status, 0, chain.stderr);
  assert.equal((JSON.parse(chain.stdout) as unknown[]).length, 3);
});

test('children of descriptor-file, streamOptimized and subdirectory parents, and with -u', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-vmdk-');
  const flat = join(dir, 'flat.vmdk');
  assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', '-o', 'subformat=monolithicFlat', flat, '5M']).status, 0);
  const so = join(dir, 'so.vmdk');
  assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', '-o', 'subformat=streamOptimized', so, '3G']).status, 0);

  mkdirSync(join(dir, 'f'));
  const f = await comparePair(join(dir, 'f'), { format: 'vmdk', name: 'c.vmdk', inputs: [flat, join(dir, 'flat-flat.vmdk')], backingFile: 'flat.vmdk', backingFormat: 'vmdk' });
  assert.equal(parentCidOf(f.ours), infoCid(flat));
  assert.equal(f.result.virtualSize, 5n << 20n);

  mkdirSync(join(dir, 's'));
  const s = await comparePair(join(dir, 's'), { format: 'vmdk', name: 'c.vmdk', options: ['subformat=streamOptimized,zeroed_grain=on'], inputs: [so], backingFile: 'so.vmdk', backingFormat: 'vmdk' });
  assert.equal(parentCidOf(s.ours), infoCid(so));

  mkdirSync(join(dir, 'u'));
  const u = await comparePair(join(dir, 'u'), { format: 'vmdk', name: 'c.vmdk', size: '1G', inputs: [so], backingFile: 'so.vmdk', backingFormat: 'vmdk', unsafe: true });
  assert.equal(parentCidOf(u.ours), infoCid(so), '-u still reads the parent CID');

  const sub = join(dir, 'd');
  const converted = join(dir, 'p.vmdk');
  assert.equal(qemuImg(['convert', '-O', 'vmdk', so, converted]).status, 0);
  for (const side of ['q', 'v']) {
    mkdirSync(join(sub, side, 'parents'), { recursive: true });
    copyFileSync(converted, join(sub, side, 'parents', 'p.vmdk'));
  }
  const d = await comparePair(sub, { format: 'vmdk', name: 'c.vmdk', backingFile: 'parents/p.vmdk', backingFormat: 'vmdk' });
  assert.match(descriptorText(readBytes(d.ours)), /parentFileNameHint="parents\/p.vmdk"\n/);
  assert.equal(parentCidOf(d.ours), parentCidOf(d.theirs));
  assert.equal(parentCidOf(d.ours), infoCid(converted));
});

test('the longest backing name that survives the hint line is identical; one byte more is refused', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-vmdk-');
  // Names this long only resolve relative to the working directory (PATH_MAX), so both tools
  // run in the image's directory with relative names.
  const q = join(dir, 'q');
  const v = join(dir, 'v');
  mkdirSync(q);
  mkdirSync(v);
  for (const d of [q, v]) assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', 'p.vmdk', '1M'], d).status, 0);
  copyFileSync(join(q, 'p.vmdk'), join(v, 'p.vmdk'));
  const name = (length: number) => {
    const pairs = Math.floor((length - 'p.vmdk'.length) / 2);
    const prefix = './'.repeat(pairs);
    return prefix + '/'.repeat(length - 'p.vmdk'.length - prefix.length) + 'p.vmdk';
  };
  const cwd = process.cwd();
  try {
    assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', '-b', name(4074), '-F', 'vmdk', 'c.vmdk'], q).status, 0);
    const theirs = readBytes(join(q, 'c.vmdk'));
    process.chdir(v);
    await createImage({ filename: 'c.vmdk', format: 'vmdk', backingFile: name(4074), backingFormat: 'vmdk', random: () => cidBytes(Number.parseInt(cidText(theirs), 16)) });
    assert.equal(diffMasked(theirs, readBytes(join(v, 'c.vmdk'))), undefined);
    assert.equal(qemuImg(['info', 'c.vmdk'], v).status, 0);

    assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', '-b', name(4075), '-F', 'vmdk', 'long.vmdk'], q).status, 0, 'qemu-img writes it');
    assert.match(qemuImg(['info', 'long.vmdk'], q).stderr, /Invalid argument/, '... and cannot open it');
    await assert.rejects(
      createImage({ filename: 'long.vmdk', format: 'vmdk', backingFile: name(4075), backingFormat: 'vmdk' }),
      (e: unknown) => e instanceof VmimgError && e.code === 'PATH_TOO_LONG' && e.message.includes('4075'),
    );
  } finally {
    process.chdir(cwd);
  }
});

test('parents that are not vmdk, missing parents and non-vmdk backing_fmt are rejected like qemu-img does', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-vmdk-');
  assert.equal(qemuImg(['create', '-q', '-f', 'raw', join(dir, 'p.raw'), '1M']).status, 0);
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', join(dir, 'p.qcow2'), '1M']).status, 0);
  assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', join(dir, 'p.vmdk'), '1M']).status, 0);
  writeFileSync(join(dir, 'text.vmdk'), 'not a descriptor\n');
  const cases: Array<{ b: string; F: string; u?: boolean; size?: string; code: string; mentions: string }> = [
    { b: 'p.raw', F: 'raw', code: 'BACKING_FORMAT_UNSUPPORTED', mentions: 'vmdk' },
    // qemu-img probes the parent (raw); vmimg reads a signature-less parent as the -F format and fails.
    { b: 'p.raw', F: 'vmdk', u: true, size: '1M', code: 'BACKING_UNPARSABLE', mentions: 'invalid VMDK image descriptor' },
    { b: 'text.vmdk', F: 'vmdk', code: 'BACKING_UNPARSABLE', mentions: 'invalid VMDK image descriptor' },
    { b: 'p.qcow2', F: 'qcow2', code: 'BACKING_FORMAT_UNSUPPORTED', mentions: 'vmdk' },
    { b: 'p.qcow2', F: 'vmdk', u: true, size: '1M', code: 'BACKING_FORMAT_UNSUPPORTED', mentions: 'Invalid backing file format: qcow2' },
    { b: 'p.vmdk', F: 'raw', code: 'BACKING_FORMAT_UNSUPPORTED', mentions: 'must be a vmdk image' },
    { b: 'p.vmdk', F: 'qcow2', u: true, size: '1M', code: 'BACKING_FORMAT_UNSUPPORTED', mentions: 'must be a vmdk image' },
    { b: 'missing.vmdk', F: 'vmdk', code: 'BACKING_NOT_FOUND', mentions: 'missing.vmdk' },
    { b: 'missing.vmdk', F: 'vmdk', u: true, size: '1M', code: 'BACKING_NOT_FOUND', mentions: 'missing.vmdk' },
  ];
  for (const c of cases) {
    const label = JSON.stringify(c);
    const q = qemuImg(['create', '-q', '-f', 'vmdk', '-b', c.b, '-F', c.F, ...(c.u ? ['-u'] : []), join(dir, 'q.vmdk'), ...(c.size ? [c.size] : [])]);
    assert.notEqual(q.status, 0, `qemu-img accepted ${label}`);
    const req: CreateRequest = { filename: join(dir, 'v.vmdk'), format: 'vmdk', backingFile: c.b, backingFormat: c.F, unsafe: c.u ?? false };
    if (c.size) req.size = c.size;
    await assert.rejects(createImage(req), (e: unknown) => e instanceof VmimgError && e.code === c.code && e.message.includes(c.mentions), label);
  }
});
