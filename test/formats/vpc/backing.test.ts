/**
 * vpc and vhdx images as backing files: a qcow2 created over one without a size takes the
 * backing image's virtual size, which vmimg reads with the vpc/vhdx readHeader. qemu-img and
 * vmimg must print the same Formatting line (it carries the size) and give the same size.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { createPair } from '../../helpers/create.js';
import { oracle, qemuImg, qemuInfo, tempDir } from '../../helpers/oracle.js';

const BASES: Array<{ name: string; format: string; size: string; options: string[] }> = [
  { name: 'dyn.vhd', format: 'vpc', size: '100M', options: [] },
  { name: 'fixed.vhd', format: 'vpc', size: '10M', options: ['subformat=fixed'] },
  { name: 'forced.vhd', format: 'vpc', size: '12345678', options: ['force_size=on'] },
  { name: 'big.vhd', format: 'vpc', size: '300G', options: [] },
  { name: 'dyn.vhdx', format: 'vhdx', size: '67109376', options: [] },
  { name: 'fixed.vhdx', format: 'vhdx', size: '3M', options: ['subformat=fixed,block_state_zero=off'] },
  { name: 'empty.vhdx', format: 'vhdx', size: '0', options: [] },
];

test('qcow2 over a vpc or vhdx backing file (made by qemu-img) gets the size qemu-img gives it', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-vhd-backing-');
  for (const [i, base] of BASES.entries()) {
    const path = join(dir, base.name);
    assert.equal(qemuImg(['create', '-q', '-f', base.format, ...base.options.flatMap((o) => ['-o', o]), path, base.size]).status, 0, base.name);
    const caseDir = join(dir, String(i));
    mkdirSync(caseDir);
    const pair = await createPair(caseDir, { format: 'qcow2', name: 'o.qcow2', inputs: [path], backingFile: base.name, backingFormat: base.format });
    assert.equal(pair.formatting, pair.qemu.stdout.trimEnd(), base.name);
    const expected = qemuInfo(path, base.format)['virtual-size'] as number;
    assert.equal(pair.result.virtualSize, BigInt(expected), base.name);
  }
});
