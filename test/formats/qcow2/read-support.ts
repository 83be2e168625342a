/**
 * Helpers for the qcow2 read/check tests: build images with qemu-img and qemu-io, poke bytes,
 * and compare what vmimg prints (info, map, check) and reads (the whole disk through the
 * ChainReader) with what qemu-img 7.2 prints and `qemu-img convert -O raw` produces.
 *
 * Tests work inside their temporary directory (process.chdir) with relative file names, so
 * names recorded in images (backing files, data files) resolve the same way for both tools:
 * QEMU opens a relative data file name relative to its working directory, vmimg relative to
 * the image's directory, and here the two are the same.
 */
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { openChain } from '../../../src/chain/open.js';
import { defaultPolicy } from '../../../src/chain/policy.js';
import { ChainReader } from '../../../src/chain/read.js';
import { vmimg, type CliResult } from '../../helpers/cli.js';
import { writeRange } from '../../helpers/images.js';
import { oracle, qemuImg, run, tempDir, type RunResult } from '../../helpers/oracle.js';

/** A temporary directory made the working directory for the test; undefined without oracles. */
export function workDir(t: TestContext): string | undefined {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return undefined;
  const dir = tempDir(t, 'vmimg-qcow2-read-');
  const previous = process.cwd();
  process.chdir(dir);
  t.after(() => process.chdir(previous));
  return dir;
}

/** Runs a tool in the working directory and fails on a non-zero status. */
export function sh(cmd: string, args: string[]): RunResult {
  const r = run(cmd, args);
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stdout}${r.stderr}`);
  return r;
}

/** qemu-img create -q -f qcow2 [-o opts] [extra...] name size. */
export function create(name: string, size: string, opts = '', extra: string[] = []): void {
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', ...(opts ? ['-o', opts] : []), ...extra, name, size]);
}

/** qemu-io commands against a qcow2 image. */
export function io(name: string, commands: string[], format = 'qcow2'): void {
  const r = run('qemu-io', ['-f', format, ...commands.flatMap((c) => ['-c', c]), name]);
  assert.ok(r.status === 0 && !/error|failed|can't/i.test(r.stdout + r.stderr), `qemu-io ${commands.join('; ')} ${name}: ${r.stdout}${r.stderr}`);
}

/** Overwrites bytes of a file in place (test/helpers/images.ts writeRange). */
export const poke = writeRange;

export function be64(value: bigint | number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(value));
  return b;
}

export function be32(value: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, value >>> 0);
  return b;
}

export function be16(value: number): Uint8Array {
  const b = new Uint8Array(2);
  new DataView(b.buffer).setUint16(0, value);
  return b;
}

/** Header and table facts of a qcow2 file, read directly (independent of the reader under test). */
export interface Layout {
  clusterSize: number;
  l1Offset: number;
  reftableOffset: number;
  /** First refcount block. */
  refblock: number;
  refcountBits: number;
  /** Offset of the first L2 table (L1 entry 0), 0 if none. */
  l2: number;
  fileLength: number;
}

export function layout(path: string): Layout {
  const b = readFileSync(path);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const mask = (1n << 56n) - 1n;
  const l1Offset = Number(v.getBigUint64(40));
  const reftableOffset = Number(v.getBigUint64(48));
  const version = v.getUint32(4);
  return {
    clusterSize: 2 ** v.getUint32(20),
    l1Offset,
    reftableOffset,
    refblock: Number(v.getBigUint64(reftableOffset)),
    refcountBits: version >= 3 ? 2 ** v.getUint32(96) : 16,
    l2: v.getUint32(36) > 0 ? Number(v.getBigUint64(l1Offset) & mask & ~0x1ffn) : 0,
    fileLength: b.length,
  };
}

/** Sets the 16-bit refcount of `cluster` (first refcount block only). */
export function setRefcount16(path: string, cluster: number, value: number): void {
  const l = layout(path);
  assert.equal(l.refcountBits, 16);
  poke(path, l.refblock + cluster * 2, be16(value));
}

const both = [['--output=json'], []];

function where(args: string[]): string {
  return `${args.join(' ')} (in ${process.cwd()})`;
}

/** `vmimg info` and `qemu-img info` print the same (JSON and human) and both succeed. */
export async function sameInfo(name: string, extra: string[] = []): Promise<void> {
  for (const out of both) {
    const args = ['info', ...out, ...extra, name];
    const theirs = qemuImg(args);
    const ours = await vmimg(args);
    assert.equal(theirs.status, 0, theirs.stderr);
    assert.equal(ours.status, 0, ours.stderr);
    assert.equal(ours.stdout, theirs.stdout, where(args));
  }
}

/** `vmimg map` and `qemu-img map` print the same (JSON and human) and exit alike. */
export async function sameMap(name: string, extra: string[] = []): Promise<void> {
  for (const out of both) {
    const args = ['map', ...out, ...extra, name];
    const theirs = qemuImg(args);
    const ours = await vmimg(args);
    assert.equal(ours.stdout, theirs.stdout, where(args));
    assert.equal(ours.status, theirs.status, `${where(args)}: ${ours.stderr} / ${theirs.stderr}`);
  }
}

/** Error lines without the program prefix (and vmimg's [CODE] suffix), for comparing messages. */
export function messages(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => l.replace(/^(qemu-img|vmimg): /, '').replace(/ \[[A-Z_]+\]$/, ''));
}

export interface Compared {
  ours: CliResult;
  theirs: RunResult;
}

/** Runs `check` with `args` through both tools on copies (`<name>.q` / `<name>.v`) of an image. */
export async function checkBoth(name: string, args: string[] = []): Promise<Compared> {
  sh('cp', [name, `${name}.q`]);
  sh('cp', [name, `${name}.v`]);
  const theirs = qemuImg(['check', ...args, `${name}.q`]);
  const ours = await vmimg(['check', ...args, `${name}.v`]);
  return { ours, theirs };
}

/**
 * check (human and JSON, optionally repairing) prints the same stdout, messages and status, and
 * a repair leaves the same bytes. `keepsDirtyBit`: the repair fails, and QEMU still clears the
 * dirty bit when it closes the image while vmimg keeps it (the refcounts are still wrong).
 */
export async function sameCheck(name: string, repair?: 'leaks' | 'all', keepsDirtyBit = false): Promise<void> {
  for (const out of both) {
    const args = [...out, ...(repair ? ['-r', repair] : [])];
    const { ours, theirs } = await checkBoth(name, args);
    const label = `check ${args.join(' ')} ${name}`;
    assert.equal(ours.stdout.replaceAll(`${name}.v`, name), theirs.stdout.replaceAll(`${name}.q`, name), `${label}: ${ours.stderr}`);
    assert.deepEqual(messages(ours.stderr), messages(theirs.stderr), label);
    assert.equal(ours.status, theirs.status, label);
    if (repair) {
      // The repaired files are identical, and qemu-img finds ours as consistent as its own.
      const v = readFileSync(`${name}.v`);
      const q = readFileSync(`${name}.q`);
      if (keepsDirtyBit) {
        assert.equal(v[79]! & 1, 1, `${label}: dirty bit kept`);
        assert.equal(q[79]! & 1, 0, `${label}: QEMU cleared the dirty bit`);
        v[79] = v[79]! & ~1;
      }
      assert.ok(v.equals(q), `${label}: repaired files differ`);
      const after = qemuImg(['check', `${name}.v`]);
      const afterTheirs = qemuImg(['check', `${name}.q`]);
      assert.equal(after.status, afterTheirs.status, `${label}: qemu-img check after repair: ${after.stdout}${after.stderr}`);
    }
    rmSync(`${name}.q`);
    rmSync(`${name}.v`);
  }
}

const READ_CHUNK = 8 * 1024 * 1024;

/**
 * Reads the whole disk of `name` (with its backing chain, under the default policy) through
 * vmimg's ChainReader and compares it with `qemu-img convert -O raw`, byte for byte.
 */
export async function sameContent(name: string): Promise<void> {
  const raw = `${name}.content.raw`;
  sh('qemu-img', ['convert', '-O', 'raw', name, raw]);
  const chain = await openChain(name, { policy: defaultPolicy(name) });
  const fd = openSync(raw, 'r');
  try {
    const reader = new ChainReader(chain.layers);
    const theirs = Buffer.alloc(READ_CHUNK);
    for (let pos = 0; pos < reader.virtualSize; pos += READ_CHUNK) {
      const n = Math.min(READ_CHUNK, reader.virtualSize - pos);
      const ours = Buffer.from(await reader.read(pos, n));
      const got = readSync(fd, theirs, 0, n, pos);
      theirs.fill(0, got, n);
      if (!ours.equals(theirs.subarray(0, n))) {
        let i = 0;
        while (ours[i] === theirs[i]) i++;
        assert.fail(`${name}: guest byte ${pos + i} reads ${ours[i]} through vmimg, ${theirs[i]} through qemu-img`);
      }
    }
  } finally {
    closeSync(fd);
    await chain.close();
    rmSync(raw);
  }
}

/** info, map and the guest bytes all agree with qemu-img. */
export async function sameEverything(name: string): Promise<void> {
  await sameInfo(name);
  await sameMap(name);
  await sameContent(name);
}
