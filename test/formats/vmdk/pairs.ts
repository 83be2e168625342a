/**
 * Side-by-side vmdk creation with qemu-img and vmimg (test/helpers/create.ts) and the checks
 * every pair must pass: equal Formatting lines, byte equality except the CID's hex digits,
 * `qemu-img check` clean on ours, equal `qemu-img info` (everything but the CID).
 *
 * The CID is printed without zero padding, so when the two random CIDs differ in length the
 * descriptors shift; then ours is created once more with qemu-img's CID as its randomness and
 * must equal qemu-img's file exactly.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { createImage } from '../../../src/ops/create.js';
import { createPair, diffMasked, readBytes, type Pair, type PairSpec } from '../../helpers/create.js';
import { qemuImg } from '../../helpers/oracle.js';
import { CID_OFFSET, cidBytes, cidText } from './support.js';

const INFO_FIELDS = ['virtual-size', 'cluster-size', 'format', 'format-specific', 'backing-filename', 'backing-filename-format', 'full-backing-filename', 'dirty-flag'];

/** `qemu-img info --output=json` run in the image's directory (so names are relative), minus the CID. */
export function infoFields(path: string): Record<string, unknown> {
  const r = qemuImg(['info', '--output=json', '-f', 'vmdk', basename(path)], dirname(path));
  if (r.status !== 0) throw new Error(`qemu-img info ${path}: ${r.stderr}`);
  const info = JSON.parse(r.stdout) as Record<string, unknown>;
  const spec = info['format-specific'] as { data: Record<string, unknown> } | undefined;
  if (spec) delete spec.data['cid'];
  return Object.fromEntries(INFO_FIELDS.map((k) => [k, info[k]]));
}

/** The `cid` qemu-img info reports. */
export function infoCid(path: string): number {
  const r = qemuImg(['info', '--output=json', '-f', 'vmdk', basename(path)], dirname(path));
  if (r.status !== 0) throw new Error(`qemu-img info ${path}: ${r.stderr}`);
  return ((JSON.parse(r.stdout) as { 'format-specific': { data: { cid: number } } })['format-specific']).data.cid;
}

export interface Compared extends Pair {
  recreatedWithTheirCid: boolean;
}

export async function comparePair(dir: string, spec: PairSpec): Promise<Compared> {
  const label = JSON.stringify(spec);
  const pair = await createPair(dir, spec);
  assert.equal(pair.formatting, pair.qemu.stdout.trimEnd(), label);
  const theirs = readBytes(pair.theirs);
  let ours = readBytes(pair.ours);
  assert.equal(pair.result.fileLength, theirs.length, label);
  const theirCid = cidText(theirs);
  let recreated = false;
  if (cidText(ours).length === theirCid.length) {
    assert.equal(diffMasked(theirs, ours, [[CID_OFFSET, theirCid.length]]), undefined, label);
  } else {
    const again = join(dir, 'v2');
    mkdirSync(again);
    for (const input of spec.inputs ?? []) copyFileSync(input, join(again, basename(input)));
    // A parent named by a relative path with directories (parents/p.vmdk) sits beside `ours`.
    if (spec.backingFile !== undefined && spec.backingFile.includes('/') && !spec.backingFile.startsWith('/')) {
      const target = join(again, spec.backingFile);
      mkdirSync(dirname(target), { recursive: true });
      copyFileSync(join(dirname(pair.ours), spec.backingFile), target);
    }
    await createImage({
      filename: join(again, spec.name),
      format: spec.format,
      size: spec.size,
      optionStrings: spec.options,
      backingFile: spec.backingFile,
      backingFormat: spec.backingFormat,
      unsafe: spec.unsafe,
      random: () => cidBytes(Number.parseInt(theirCid, 16)),
    });
    ours = readBytes(join(again, spec.name));
    assert.equal(diffMasked(theirs, ours), undefined, `${label} (with qemu-img's CID ${theirCid})`);
    recreated = true;
  }
  const check = qemuImg(['check', '-f', 'vmdk', basename(pair.ours)], dirname(pair.ours));
  assert.equal(check.status, 0, `${label}: ${check.stdout}${check.stderr}`);
  assert.match(check.stdout, /No errors were found on the image\./, label);
  assert.deepEqual(infoFields(pair.ours), infoFields(pair.theirs), label);
  return { ...pair, recreatedWithTheirCid: recreated };
}
