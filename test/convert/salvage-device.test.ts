/**
 * convert --salvage over real kernel EIO: a device-mapper device whose table puts an `error`
 * target over three 4 KiB pages of a loop device (buffered reads fail per page, for both tools).
 * The device holds a raw image, then a qcow2 image; vmimg's output and warnings must equal
 * qemu-img's. Needs root, losetup, dmsetup and a kernel with device-mapper (skipped otherwise:
 * a machine capability, not an outside tool); the devices are removed afterwards.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { vmimg } from '../helpers/cli.js';
import { seededRandom } from '../helpers/random.js';
import { oracle, qemuImg, run, tempDir } from '../helpers/oracle.js';

const SIZE = 4 << 20;
/** The failing sectors: [BAD, BAD + BAD_SECTORS). */
const BAD = 2000;
const BAD_SECTORS = 24;

/** A dm device over `file` with the error segment; undefined (after t.skip) when impossible. */
function errorDevice(t: TestContext, file: string, name: string): string | undefined {
  const attach = spawnSync('losetup', ['-f', '--show', file], { encoding: 'utf8' });
  if (attach.status !== 0) return void t.skip(`no loop device here: ${attach.stderr.trim()}`);
  const loop = attach.stdout.trim();
  t.after(() => void spawnSync('losetup', ['-d', loop]));
  const sectors = SIZE / 512;
  const table = [`0 ${BAD} linear ${loop} 0`, `${BAD} ${BAD_SECTORS} error`, `${BAD + BAD_SECTORS} ${sectors - BAD - BAD_SECTORS} linear ${loop} ${BAD + BAD_SECTORS}`].join('\n');
  const create = run('dmsetup', ['create', name], { input: `${table}\n` });
  if (create.status !== 0) return void t.skip(`no device-mapper here: ${create.stderr.trim().split('\n')[0]}`);
  t.after(() => void spawnSync('dmsetup', ['remove', name]));
  return `/dev/mapper/${name}`;
}

function ready(t: TestContext): string | undefined {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'losetup') || !oracle(t, 'dmsetup')) return undefined;
  if (process.getuid?.() !== 0) return void t.skip('needs root for loop and device-mapper devices');
  return tempDir(t, 'vmimg-salvage-dev-');
}

function errors(stderr: string, prefix: string): string[] {
  return stderr.split('\n').filter((l) => l.includes('error while reading')).map((l) => l.slice(prefix.length));
}

async function compareSalvage(dir: string, device: string, format: string): Promise<{ q: Buffer; v: Buffer; warnings: string[] }> {
  const q = join(dir, `q-${format}.raw`);
  const v = join(dir, `v-${format}.raw`);
  const theirs = qemuImg(['convert', '--salvage', '-f', format, '-O', 'raw', device, q]);
  const ours = await vmimg(['convert', '--salvage', '-f', format, '-O', 'raw', device, v]);
  assert.equal(theirs.status, 0, theirs.stderr);
  assert.equal(ours.status, 0, ours.stderr);
  assert.deepEqual(errors(ours.stderr, 'vmimg: '), errors(theirs.stderr, 'qemu-img: '));
  const failing = await vmimg(['convert', '-f', format, '-O', 'raw', device, join(dir, `fail-${format}.raw`)]);
  assert.equal(failing.status, 1);
  assert.match(failing.stderr, /^vmimg: error while reading at byte \d+: .*EIO/);
  assert.equal(qemuImg(['convert', '-f', format, '-O', 'raw', device, join(dir, `qfail-${format}.raw`)]).status, 1);
  return { q: readFileSync(q), v: readFileSync(v), warnings: errors(ours.stderr, 'vmimg: ') };
}

test('salvage a raw image on a device with an error segment: zeros for exactly the failing sectors', async (t) => {
  const dir = ready(t);
  if (!dir) return;
  const file = join(dir, 'disk.raw');
  const bytes = seededRandom(3)(SIZE);
  writeFileSync(file, bytes);
  const device = errorDevice(t, file, `vmimg-salvage-raw-${process.pid}`);
  if (!device) return;
  const { q, v, warnings } = await compareSalvage(dir, device, 'raw');
  assert.deepEqual(v, q);
  const expected = Buffer.from(bytes);
  expected.fill(0, BAD * 512, (BAD + BAD_SECTORS) * 512);
  assert.deepEqual(v, expected);
  assert.equal(warnings.length, BAD_SECTORS);
  assert.equal(warnings[0], `warning: error while reading offset ${BAD * 512}: Input/output error`);
});

test('salvage a qcow2 image on a device with an error segment inside a data cluster', async (t) => {
  const dir = ready(t);
  if (!dir) return;
  const src = join(dir, 'src.raw');
  writeFileSync(src, seededRandom(5)(2 << 20));
  const file = join(dir, 'disk.qcow2');
  assert.equal(qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', src, file]).status, 0);
  const length = readFileSync(file).length;
  assert.ok(length <= SIZE && length > (BAD + BAD_SECTORS) * 512, `qcow2 of ${length} bytes`);
  spawnSync('truncate', ['-s', String(SIZE), file]);
  const device = errorDevice(t, file, `vmimg-salvage-qcow2-${process.pid}`);
  if (!device) return;
  const { q, v, warnings } = await compareSalvage(dir, device, 'qcow2');
  assert.deepEqual(v, q);
  assert.equal(warnings.length, BAD_SECTORS);
});
