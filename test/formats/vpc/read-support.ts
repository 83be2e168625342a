/**
 * Helpers for the vpc and vhdx read tests: running tools, poking bytes, and comparing what
 * vmimg says about an image (info, map, check, the guest bytes) with what qemu-img 7.2 says.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ChainReader } from '../../../src/chain/read.js';
import { openImage } from '../../../src/chain/open.js';
import { DENY_ALL } from '../../../src/chain/policy.js';
import type { Extent, Image } from '../../../src/formats/image.js';
import { vmimg, type CliResult } from '../../helpers/cli.js';
import { readRange, writeRange } from '../../helpers/images.js';
import { qemuImg, run } from '../../helpers/oracle.js';

/** Runs a tool in `dir` and fails the test on a non-zero status. */
export function sh(dir: string, cmd: string, args: string[]): void {
  const r = run(cmd, args, { cwd: dir });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stdout}${r.stderr}`);
}

/** qemu-io writes (`-c` commands) into an image. */
export function qemuIo(dir: string, format: string, file: string, commands: string[]): void {
  const r = run('qemu-io', ['-f', format, ...commands.flatMap((c) => ['-c', c]), file], { cwd: dir });
  assert.ok(r.status === 0 && !/error|failed/i.test(r.stdout + r.stderr), `qemu-io ${commands.join('; ')} on ${file}: ${r.stdout}${r.stderr}`);
}

/** Overwrites bytes of a file in place (test/helpers/images.ts writeRange). */
export const poke = writeRange;

export { readRange };

export function u32be(value: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, value >>> 0);
  return b;
}

export function u64le(value: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, value, true);
  return b;
}

const fmtArgs = (format?: string): string[] => (format ? ['-f', format] : []);

/** `vmimg info` and `qemu-img info` (JSON and human) print the same and both succeed. */
export async function sameInfo(path: string, format?: string): Promise<void> {
  for (const out of [['--output=json'], []]) {
    const ours = await vmimg(['info', ...fmtArgs(format), ...out, path]);
    const theirs = qemuImg(['info', ...fmtArgs(format), ...out, path]);
    assert.equal(theirs.status, 0, theirs.stderr);
    assert.equal(ours.status, 0, ours.stderr);
    assert.equal(ours.stdout, theirs.stdout, `info ${out.join(' ')} ${path}`);
  }
}

/** `vmimg map` and `qemu-img map` (JSON and human) print the same and exit alike. */
export async function sameMap(path: string, format?: string, extra: string[] = []): Promise<void> {
  for (const out of [['--output=json'], []]) {
    const ours = await vmimg(['map', ...fmtArgs(format), ...out, ...extra, path]);
    const theirs = qemuImg(['map', ...fmtArgs(format), ...out, ...extra, path]);
    assert.equal(ours.stdout, theirs.stdout, `map ${out.join(' ')} ${extra.join(' ')} ${path}`);
    assert.equal(ours.status, theirs.status, `map status: ${ours.stderr} / ${theirs.stderr}`);
  }
}

/** Strips the program prefix of error lines ("qemu-img: ", "vmimg: ") so messages compare. */
export function messages(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => l.replace(/^(qemu-img|vmimg): /, ''));
}

export interface CheckPair {
  ours: CliResult;
  theirs: { status: number; stdout: string; stderr: string };
}

/** `check` (human and JSON) by both tools; asserts equal stdout, status and messages. */
export async function sameCheck(path: string, format?: string): Promise<void> {
  for (const out of [['--output=json'], []]) {
    const ours = await vmimg(['check', ...fmtArgs(format), ...out, path]);
    const theirs = qemuImg(['check', ...fmtArgs(format), ...out, path]);
    assert.equal(ours.stdout, theirs.stdout, `check ${out.join(' ')} ${path}: ${ours.stderr}`);
    assert.equal(ours.status, theirs.status, `check status ${path}`);
    assert.deepEqual(messages(ours.stderr), messages(theirs.stderr), `check messages ${path}`);
  }
}

export async function withImage<T>(path: string, format: string | undefined, body: (image: Image) => Promise<T>): Promise<T> {
  const { image } = await openImage(path, { format, policy: DENY_ALL });
  try {
    return await body(image);
  } finally {
    await image.close();
  }
}

const READ_CHUNK = 4 * 1024 * 1024;

/**
 * Reads the whole disk through vmimg's ChainReader and compares it with `qemu-img convert -O
 * raw` of the same image, byte for byte.
 */
export async function sameContent(dir: string, path: string, format?: string): Promise<void> {
  const raw = join(dir, 'content-check.raw');
  const r = qemuImg(['convert', ...fmtArgs(format), '-O', 'raw', path, raw]);
  assert.equal(r.status, 0, r.stderr);
  await withImage(path, format, async (image) => {
    const reader = new ChainReader([image]);
    for (let pos = 0; pos < image.virtualSize; pos += READ_CHUNK) {
      const n = Math.min(READ_CHUNK, image.virtualSize - pos);
      const ours = Buffer.from(await reader.read(pos, n));
      const theirs = readRange(raw, pos, n);
      if (!ours.equals(theirs)) {
        let i = 0;
        while (ours[i] === theirs[i]) i++;
        assert.fail(`${path}: guest byte ${pos + i} reads ${ours[i]} through vmimg, ${theirs[i]} through qemu-img`);
      }
    }
  });
}

/** The extents of the whole disk, checked to be contiguous, merged and in range. */
export async function wholeMap(image: Image, window = 1 << 30): Promise<Extent[]> {
  const all: Extent[] = [];
  for (let pos = 0; pos < image.virtualSize; pos += window) {
    const n = Math.min(window, image.virtualSize - pos);
    const extents = await image.map(pos, n);
    let at = pos;
    for (const e of extents) {
      assert.equal(e.start, at, 'extents are contiguous');
      assert.ok(e.length > 0, 'extents are not empty');
      at += e.length;
    }
    assert.equal(at, pos + n, 'extents cover the request');
    all.push(...extents);
  }
  return all;
}

/** The kind of the extent that covers guest offset `at`. */
export function kindAt(extents: readonly Extent[], at: number): Extent | undefined {
  return extents.find((e) => e.start <= at && at < e.start + e.length);
}
