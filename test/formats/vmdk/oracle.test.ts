/**
 * vmdk create against qemu-img 7.2: for every matrix case both tools create the image side by
 * side and the files must be byte-identical except the CID's hex digits, the Formatting lines
 * equal, `qemu-img check` clean on ours and `qemu-img info` agree (all but the CID). Also: the
 * inputs qemu-img rejects are rejected with stable codes, and the inputs for which qemu-img
 * writes an image it cannot open (or one that contradicts itself) are refused.
 */
import assert from 'node:assert/strict';
import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { optionsHelp } from '../../../src/formats/options.js';
import { MAX_CREATE_BYTES, VMDK_OPTIONS } from '../../../src/formats/vmdk/params.js';
import { createImage } from '../../../src/ops/create.js';
import { VmimgError } from '../../../src/util/errors.js';
import { diffMasked } from '../../helpers/create.js';
import { readRange } from '../../helpers/images.js';
import { oracle, qemuImg, tempDir } from '../../helpers/oracle.js';
import { vmdkMatrix } from './matrix.js';
import { comparePair, infoFields } from './pairs.js';

test('vmdk create matrix: byte-identical to qemu-img but for the CID, same Formatting line, check clean, same info', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-vmdk-');
  const cases = vmdkMatrix();
  assert.ok(cases.length >= 100, `matrix has ${cases.length} cases`);
  let n = 0;
  let exact = 0;
  for (const c of cases) {
    const caseDir = join(dir, String(n++));
    mkdirSync(caseDir);
    const r = await comparePair(caseDir, { format: 'vmdk', name: c.name ?? 't.vmdk', size: c.size, options: c.options });
    if (r.recreatedWithTheirCid) exact++;
  }
  t.diagnostic(`${cases.length} cases; ${exact} compared after re-creating with qemu-img's CID (hex lengths differed)`);
});

/** Inputs qemu-img 7.2 rejects, with the code vmimg gives. */
const REJECTED: Array<{ options: string[]; size: string; code: string; mentions: string }> = [
  { options: ['adapter_type=IDE'], size: '1G', code: 'INVALID_OPTION', mentions: "'IDE'" },
  { options: ['adapter_type=foo'], size: '1G', code: 'INVALID_OPTION', mentions: "'foo'" },
  { options: ['adapter_type='], size: '1G', code: 'INVALID_OPTION', mentions: "''" },
  { options: ['subformat=foo'], size: '1G', code: 'INVALID_OPTION', mentions: "'foo'" },
  { options: ['subformat=monolithicflat'], size: '1G', code: 'INVALID_OPTION', mentions: 'monolithicflat' },
  { options: ['subformat='], size: '1G', code: 'INVALID_OPTION', mentions: "''" },
  { options: ['subformat=foo,adapter_type=bar'], size: '1G', code: 'INVALID_OPTION', mentions: "'bar'" },
  { options: ['compat6=on,hwversion=7'], size: '1G', code: 'INVALID_OPTION', mentions: 'compat6 cannot be enabled with hwversion set' },
  { options: ['compat6=on,hwversion=', 'subformat=monolithicFlat'], size: '1G', code: 'INVALID_OPTION', mentions: 'compat6' },
  { options: ['zeroed_grain=maybe'], size: '1G', code: 'INVALID_OPTION', mentions: 'zeroed_grain' },
  { options: ['compat6=2'], size: '1G', code: 'INVALID_OPTION', mentions: 'compat6' },
  { options: ['bogus=1'], size: '1G', code: 'UNKNOWN_OPTION', mentions: 'bogus' },
  { options: ['cluster_size=64k'], size: '1G', code: 'UNKNOWN_OPTION', mentions: 'cluster_size' },
];

test('vmdk create rejects what qemu-img rejects, with stable codes', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-vmdk-');
  for (const r of REJECTED) {
    const label = JSON.stringify(r);
    const q = qemuImg(['create', '-f', 'vmdk', ...r.options.flatMap((o) => ['-o', o]), 'q.vmdk', r.size], dir);
    assert.notEqual(q.status, 0, `qemu-img accepted ${label}`);
    await assert.rejects(
      createImage({ filename: join(dir, 'v.vmdk'), format: 'vmdk', size: r.size, optionStrings: r.options }),
      (e: unknown) => e instanceof VmimgError && e.code === r.code && e.message.includes(r.mentions),
      label,
    );
  }
});

test('subformats and protocol options qemu-img accepts but vmimg does not implement are UNSUPPORTED_OPTION', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-vmdk-');
  for (const o of ['subformat=monolithicFlat', 'subformat=twoGbMaxExtentSparse', 'subformat=twoGbMaxExtentFlat', 'nocow=on', 'preallocation=full', 'extent_size_hint=1M']) {
    const q = qemuImg(['create', '-f', 'vmdk', '-o', o, `q${o.replace(/\W/g, '')}.vmdk`, '100M'], dir);
    assert.equal(q.status, 0, `qemu-img creates ${o}: ${q.stderr}`);
    await assert.rejects(
      createImage({ filename: join(dir, 'v.vmdk'), format: 'vmdk', size: '100M', optionStrings: [o] }),
      (e: unknown) => e instanceof VmimgError && e.code === 'UNSUPPORTED_OPTION' && e.message.includes(o.split('=')[0] === 'subformat' ? o.split('=')[1]! : o.split('=')[0]!),
      o,
    );
  }
});

test('inputs for which qemu-img writes an image it cannot use are refused', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-vmdk-');
  const refused: Array<{ size: string; options: string[]; code: string; mentions: string; why: (q: string) => void }> = [
    {
      size: '0',
      options: [],
      code: 'SIZE_OUT_OF_RANGE',
      mentions: 'size 0',
      why: (q) => assert.match(qemuImg(['info', q]).stderr, /Unsupported image type 'monolithicSparse'/),
    },
    {
      size: String(MAX_CREATE_BYTES + 512n),
      options: [],
      code: 'SIZE_OUT_OF_RANGE',
      mentions: 'too large',
      // The grain count wrapped: one directory sector, no grain tables, for 2^39 sectors.
      why: (q) => assert.equal(statSync(q).size, 65536),
    },
    {
      size: '9223372036854775807',
      options: [],
      code: 'SIZE_OUT_OF_RANGE',
      mentions: 'too large',
      why: (q) => assert.match(qemuImg(['info', q]).stderr, /File too large/),
    },
    {
      size: '1M',
      options: [`toolsversion=${'t'.repeat(11000)}`],
      code: 'INVALID_OPTION',
      mentions: 'descriptor would be',
      // The descriptor ran over the first grain directory.
      why: (q) => assert.equal(readRange(q, 21 * 512, 4).toString('latin1'), 'tttt'),
    },
  ];
  for (const r of refused) {
    const q = join(dir, 'q.vmdk');
    const res = qemuImg(['create', '-q', '-f', 'vmdk', ...r.options.flatMap((o) => ['-o', o]), q, r.size]);
    assert.equal(res.status, 0, `qemu-img creates it: ${res.stderr}`);
    r.why(q);
    await assert.rejects(
      createImage({ filename: join(dir, 'v.vmdk'), format: 'vmdk', size: r.size, optionStrings: r.options }),
      (e: unknown) => e instanceof VmimgError && e.code === r.code && e.message.includes(r.mentions),
      r.size,
    );
  }
});


test('the largest vmdk (2^32 − 512 grains, a 34 GB sparse file): metadata identical to qemu-img', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-vmdk-');
  const size = String(MAX_CREATE_BYTES - 100n);
  mkdirSync(join(dir, 'q'));
  mkdirSync(join(dir, 'v'));
  const theirs = join(dir, 'q', 'big.vmdk');
  const ours = join(dir, 'v', 'big.vmdk');
  assert.equal(qemuImg(['create', '-q', '-f', 'vmdk', theirs, size]).status, 0);
  const head = readRange(theirs, 0, 11264);
  const cid = Number.parseInt(/CID=([0-9a-f]+)\n/.exec(head.toString('latin1'))![1]!, 16);
  const cidLE = Buffer.alloc(4);
  cidLE.writeUInt32LE(cid);
  await createImage({ filename: ours, format: 'vmdk', size, random: () => new Uint8Array(cidLE) });
  assert.equal(statSync(ours).size, statSync(theirs).size);
  assert.equal(statSync(ours).size, 34426912768);
  // Header + descriptor, both grain directories (32 MiB each) with the sectors around them, the tail.
  for (const [offset, length] of [
    [0, 11264],
    [21 * 512 - 512, 65536 * 512 + 1024],
    [33619985 * 512 - 512, 65536 * 512 + 1024],
    [34426912768 - 65536, 65536],
  ] as const) {
    assert.equal(diffMasked(readRange(theirs, offset, length), readRange(ours, offset, length)), undefined, `range ${offset}+${length}`);
  }
  assert.deepEqual(infoFields(ours), infoFields(theirs));
});

test('vmdk -o help lists the options with qemu-img 7.2 help texts', (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const q = qemuImg(['create', '-f', 'vmdk', '-o', 'help']);
  assert.equal(q.status, 0);
  const theirs = q.stdout.split('\n\n')[0] + '\n';
  assert.equal(optionsHelp('vmdk', VMDK_OPTIONS), theirs);
});
