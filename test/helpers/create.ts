/**
 * Creates the same image with qemu-img and with vmimg, side by side, for oracle comparisons.
 * Both are created under the same base name in sibling directories (`q/` for qemu-img, `v/` for
 * vmimg), so names recorded inside images (vmdk extent names) agree.
 */
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createImage, type CreateResult } from '../../src/ops/create.js';
import { qemuImg, type RunResult } from './oracle.js';

export interface PairSpec {
  format: string;
  /** Image file base name, e.g. "t.qcow2". */
  name: string;
  size?: string;
  /** -o strings, passed identically to both tools. */
  options?: string[];
  backingFile?: string;
  backingFormat?: string;
  unsafe?: boolean;
  /** Files (paths) copied into both directories first, e.g. backing images. */
  inputs?: string[];
}

export interface Pair {
  /** Path of qemu-img's image. */
  theirs: string;
  /** Path of vmimg's image. */
  ours: string;
  qemu: RunResult;
  result: CreateResult;
  /** The Formatting line vmimg produced (with the file name as given to qemu-img). */
  formatting: string;
}

export async function createPair(dir: string, spec: PairSpec): Promise<Pair> {
  const qdir = join(dir, 'q');
  const vdir = join(dir, 'v');
  mkdirSync(qdir, { recursive: true });
  mkdirSync(vdir, { recursive: true });
  for (const input of spec.inputs ?? []) {
    const base = input.split('/').pop()!;
    copyFileSync(input, join(qdir, base));
    copyFileSync(input, join(vdir, base));
  }
  const args = ['create', '-f', spec.format];
  for (const o of spec.options ?? []) args.push('-o', o);
  if (spec.backingFile !== undefined) args.push('-b', spec.backingFile);
  if (spec.backingFormat !== undefined) args.push('-F', spec.backingFormat);
  if (spec.unsafe) args.push('-u');
  args.push(spec.name);
  if (spec.size !== undefined) args.push(spec.size);
  const qemu = qemuImg(args, qdir);
  if (qemu.status !== 0) throw new Error(`qemu-img ${args.join(' ')} failed: ${qemu.stderr}`);

  let formatting = '';
  const ours = join(vdir, spec.name);
  const result = await createImage({
    filename: ours,
    format: spec.format,
    size: spec.size,
    optionStrings: spec.options,
    backingFile: spec.backingFile,
    backingFormat: spec.backingFormat,
    unsafe: spec.unsafe,
    onFormatting: (line) => (formatting = line.replace(`'${ours}'`, `'${spec.name}'`)),
  });
  return { theirs: join(qdir, spec.name), ours, qemu, result, formatting };
}

export function readBytes(path: string): Buffer {
  return readFileSync(path);
}

/**
 * Compares two files byte for byte except in `masked` ranges ([offset, length] pairs, applied to
 * both). Returns undefined when equal, else a description of the first difference.
 */
export function diffMasked(a: Uint8Array, b: Uint8Array, masked: Array<[number, number]> = []): string | undefined {
  if (a.length !== b.length) return `length differs: ${a.length} vs ${b.length}`;
  const skip = new Uint8Array(a.length);
  for (const [off, len] of masked) skip.fill(1, Math.max(0, off), Math.min(a.length, off + len));
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i] && !skip[i]) {
      return `first difference at byte ${i} (0x${i.toString(16)}): ${a[i]} vs ${b[i]}`;
    }
  }
  return undefined;
}
