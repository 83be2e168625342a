/**
 * qcow2 create against qemu-img 7.2: for every matrix case both tools create the image side by
 * side and the files must be byte-identical, the Formatting lines equal, `qemu-img check` clean on
 * ours and `qemu-img info` agree. Also: the inputs qemu-img rejects are rejected with stable codes,
 * a new image sized from a qcow2 backing file gets the size qemu-img gives it, and readHeader
 * opens exactly the corrupted headers qemu-img info opens.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { qcow2Driver } from '../../../src/formats/qcow2/driver.js';
import type { HeaderSummary } from '../../../src/formats/types.js';
import { createImage } from '../../../src/ops/create.js';
import { FileStorage } from '../../../src/storage/file.js';
import { VmimgError } from '../../../src/util/errors.js';
import { createPair, diffMasked, readBytes } from '../../helpers/create.js';
import { oracle, qemuImg, qemuInfo, tempDir } from '../../helpers/oracle.js';
import { qcow2Matrix } from './matrix.js';
import { applyPoke, POKES } from './pokes.js';

const INFO_FIELDS = ['virtual-size', 'cluster-size', 'format', 'format-specific', 'backing-filename', 'backing-filename-format', 'dirty-flag'];

/** A json: filename that opens the image with its backing file detached (it need not exist). */
function withoutBacking(path: string): string {
  return `json:${JSON.stringify({ driver: 'qcow2', backing: null, file: { driver: 'file', filename: path } })}`;
}

function infoFields(path: string): Record<string, unknown> {
  const info = qemuInfo(path, 'qcow2');
  return Object.fromEntries(INFO_FIELDS.map((k) => [k, info[k]]));
}

test('qcow2 create matrix: byte-identical to qemu-img, same Formatting line, check clean, same info', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-qcow2-');
  const cases = qcow2Matrix();
  assert.ok(cases.length >= 200, `matrix has ${cases.length} cases`);
  let n = 0;
  for (const c of cases) {
    const label = JSON.stringify(c);
    const caseDir = join(dir, String(n++));
    mkdirSync(caseDir);
    const pair = await createPair(caseDir, {
      format: 'qcow2',
      name: 't.qcow2',
      size: c.size,
      options: c.options,
      backingFile: c.backingFile,
      backingFormat: c.backingFormat,
      unsafe: c.backingFile !== undefined,
    });
    assert.equal(pair.formatting, pair.qemu.stdout.trimEnd(), label);
    const theirs = readBytes(pair.theirs);
    const ours = readBytes(pair.ours);
    assert.equal(diffMasked(theirs, ours), undefined, label);
    assert.equal(pair.result.fileLength, theirs.length, label);
    const check = qemuImg(['check', withoutBacking(pair.ours)]);
    assert.equal(check.status, 0, `${label}: ${check.stdout}${check.stderr}`);
    assert.match(check.stdout, /No errors were found on the image\./, label);
    assert.deepEqual(infoFields(pair.ours), infoFields(pair.theirs), label);
    // Same allocation too: preallocation=metadata's COW zeros in a last partial cluster are
    // written (qemu-img map shows that block as data).
    if (c.options.some((o) => o.includes('preallocation=metadata'))) {
      const map = (path: string): string => qemuImg(['map', '--output=json', withoutBacking(path)]).stdout;
      assert.equal(map(pair.ours), map(pair.theirs), `${label}: qemu-img map`);
    }
  }
});

/** Inputs qemu-img 7.2 rejects, with the code vmimg must give. */
const REJECTED: Array<{ options: string[]; size: string; code: string; mentions: string; backing?: boolean }> = [
  { options: ['cluster_size=1000'], size: '1G', code: 'INVALID_OPTION', mentions: '1000' },
  { options: ['cluster_size=256'], size: '1G', code: 'INVALID_OPTION', mentions: '256' },
  { options: ['cluster_size=4M'], size: '1G', code: 'INVALID_OPTION', mentions: '4194304' },
  { options: ['refcount_bits=3'], size: '1G', code: 'INVALID_OPTION', mentions: '3' },
  { options: ['refcount_bits=128'], size: '1G', code: 'INVALID_OPTION', mentions: '128' },
  { options: ['refcount_bits=0'], size: '1G', code: 'INVALID_OPTION', mentions: '0' },
  { options: ['compat=1.2'], size: '1G', code: 'INVALID_OPTION', mentions: '1.2' },
  { options: ['compat=0.10,refcount_bits=8'], size: '1G', code: 'INVALID_OPTION', mentions: 'refcount_bits' },
  { options: ['compat=0.10,lazy_refcounts=on'], size: '1G', code: 'INVALID_OPTION', mentions: 'lazy_refcounts' },
  { options: ['compat=v2,compression_type=zstd'], size: '1G', code: 'INVALID_OPTION', mentions: 'zstd' },
  { options: ['compat=0.10,extended_l2=on'], size: '1G', code: 'INVALID_OPTION', mentions: 'extended_l2' },
  { options: ['extended_l2=on,cluster_size=8k'], size: '1G', code: 'INVALID_OPTION', mentions: '8192' },
  { options: ['compression_type=lz4'], size: '1G', code: 'INVALID_OPTION', mentions: 'lz4' },
  { options: ['preallocation=foo'], size: '1G', code: 'INVALID_OPTION', mentions: 'foo' },
  { options: ['preallocation=metadata'], size: '1G', code: 'INVALID_OPTION', mentions: 'metadata', backing: true },
  { options: ['cluster_size=512'], size: '1P', code: 'SIZE_OUT_OF_RANGE', mentions: 'too large' },
  { options: ['cluster_size=512,refcount_bits=64'], size: '128T', code: 'SIZE_OUT_OF_RANGE', mentions: 'too large' },
  { options: [], size: '4P', code: 'SIZE_OUT_OF_RANGE', mentions: 'too large' },
  { options: ['extended_l2=on'], size: '2P', code: 'SIZE_OUT_OF_RANGE', mentions: 'too large' },
];

test('qcow2 create rejects what qemu-img rejects, with stable codes', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-qcow2-');
  for (const r of REJECTED) {
    const backing = r.backing ? ['-u', '-b', 'base.qcow2', '-F', 'qcow2'] : [];
    const label = JSON.stringify(r);
    const q = qemuImg(['create', '-f', 'qcow2', ...r.options.flatMap((o) => ['-o', o]), ...backing, 'q.qcow2', r.size], dir);
    assert.notEqual(q.status, 0, `qemu-img accepted ${label}`);
    await assert.rejects(
      createImage({
        filename: join(dir, 'v.qcow2'),
        format: 'qcow2',
        size: r.size,
        optionStrings: r.options,
        ...(r.backing ? { backingFile: 'base.qcow2', backingFormat: 'qcow2', unsafe: true } : {}),
      }),
      (e: unknown) => e instanceof VmimgError && e.code === r.code && e.message.includes(r.mentions),
      label,
    );
  }
});

test('qcow2 backing file names that do not fit cluster 0 are rejected like qemu-img does', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-qcow2-');
  for (const [options, length] of [
    ['cluster_size=512,compat=0.10', 417],
    ['cluster_size=512', 377],
    ['cluster_size=64k', 1024],
  ] as const) {
    const name = 'n'.repeat(length);
    const q = qemuImg(['create', '-f', 'qcow2', '-o', options, '-u', '-b', name, '-F', 'raw', 'q.qcow2', '1M'], dir);
    assert.notEqual(q.status, 0, `${options} ${length}`);
    await assert.rejects(
      createImage({ filename: join(dir, 'v.qcow2'), format: 'qcow2', size: '1M', optionStrings: [options], backingFile: name, backingFormat: 'raw', unsafe: true }),
      (e: unknown) => e instanceof VmimgError && e.code === 'PATH_TOO_LONG' && e.message.includes(String(length)),
    );
  }
});

test('qcow2 over a qcow2 backing file without a size takes the backing virtual size', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-qcow2-');
  for (const [i, size] of ['1000', '1G', '7777777'].entries()) {
    const base = join(dir, `base${i}.qcow2`);
    assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', base, size]).status, 0);
    const caseDir = join(dir, `c${i}`);
    mkdirSync(caseDir);
    const pair = await createPair(caseDir, { format: 'qcow2', name: 'o.qcow2', inputs: [base], backingFile: `base${i}.qcow2`, backingFormat: 'qcow2' });
    assert.equal(pair.formatting, pair.qemu.stdout.trimEnd());
    assert.equal(diffMasked(readBytes(pair.theirs), readBytes(pair.ours)), undefined, size);
    assert.equal(pair.result.virtualSize, BigInt(qemuInfo(pair.theirs, 'qcow2')['virtual-size'] as number));
  }
});

test('qcow2 readHeader accepts and rejects exactly what qemu-img info does', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-qcow2-');
  const base = join(dir, 'base.qcow2');
  const overlay = join(dir, 'overlay.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', base, '64M']).status, 0);
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-u', '-b', 'base.qcow2', '-F', 'qcow2', overlay, '64M']).status, 0);
  for (const poke of POKES) {
    const path = join(dir, `${poke.name}.qcow2`);
    writeFileSync(path, applyPoke(readBytes(poke.overlay ? overlay : base), poke));
    const info = qemuImg(['info', '--output=json', '-f', 'qcow2', path]);
    const ours = await readHeaderOf(path).catch((e: unknown) => e as VmimgError);
    if (info.status === 0) {
      assert.equal(poke.qemu, undefined, `${poke.name}: qemu-img opens it`);
      assert.ok(!(ours instanceof VmimgError), `${poke.name}: ${String(ours)}`);
      assert.equal(ours.virtualSize, BigInt((JSON.parse(info.stdout) as { 'virtual-size': number })['virtual-size']), poke.name);
    } else {
      assert.ok(ours instanceof VmimgError && ours.code === poke.code, `${poke.name}: ${String(ours)}`);
      assert.ok(info.stderr.includes(poke.qemu!), `${poke.name}: qemu-img says ${info.stderr}`);
      assert.ok(ours.message.endsWith(poke.qemu!), `${poke.name}: ${ours.message}`);
    }
  }
});

async function readHeaderOf(path: string): Promise<HeaderSummary> {
  const storage = await FileStorage.open(path);
  try {
    return await qcow2Driver.readHeader(storage);
  } finally {
    await storage.close();
  }
}
