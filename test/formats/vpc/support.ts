/**
 * Helpers for the vpc and vhdx tests: a CreateContext from option text, a planned image as
 * bytes, a seeded byte source, a sparse-aware masked file comparison (fixed images are sparse
 * files of up to terabytes), and qemu-io round trips.
 */
import assert from 'node:assert/strict';
import { CreateOptions, type OptionSpec } from '../../../src/formats/options.js';
import type { CreateContext, Layout } from '../../../src/formats/types.js';
import { FileStorage } from '../../../src/storage/file.js';
import { diffMasked } from '../../helpers/create.js';
import { qemuImg, run } from '../../helpers/oracle.js';
import { seededRandom } from '../../helpers/random.js';

export { seededRandom };

export function ctxFor(
  specs: readonly OptionSpec[],
  size: bigint,
  options: Record<string, string> = {},
  extra: { random?: (n: number) => Uint8Array; now?: () => number } = {},
): CreateContext {
  const o = new CreateOptions(specs);
  for (const [k, v] of Object.entries(options)) o.setText(k, v);
  o.setText('size', size.toString());
  return {
    filename: 't.img',
    size,
    options: o,
    sizeFromBacking: false,
    random: extra.random ?? seededRandom(1),
    now: extra.now ?? (() => Date.UTC(2024, 0, 2, 3, 4, 5)),
  };
}


/** A byte source that hands out the given chunks in order (to replay another tool's randomness). */
export function replayRandom(chunks: Uint8Array[]): (n: number) => Uint8Array {
  const queue = [...chunks];
  return (n) => {
    const next = queue.shift();
    if (!next || next.length !== n) throw new Error(`unexpected random(${n}) request`);
    return next;
  };
}

/** The file a Layout describes (writes must be ascending, non-overlapping and inside the file). */
export function materialize(layout: Layout): Uint8Array {
  const out = new Uint8Array(layout.length);
  let end = 0;
  for (const w of layout.writes) {
    assert.ok(w.offset >= end, `write at ${w.offset} overlaps or precedes the previous one ending at ${end}`);
    assert.ok(w.offset + w.data.length <= layout.length, `write at ${w.offset} runs past the file length ${layout.length}`);
    out.set(w.data, w.offset);
    end = w.offset + w.data.length;
  }
  return out;
}

async function dataRanges(s: FileStorage, length: number): Promise<Array<[number, number]>> {
  const ranges: Array<[number, number]> = [];
  for (let off = 0; off < length; ) {
    const st = await s.blockStatus(off, length - off);
    if (st.length <= 0) break;
    if (st.data) ranges.push([off, off + st.length]);
    off += st.length;
  }
  return ranges;
}

function union(a: Array<[number, number]>, b: Array<[number, number]>): Array<[number, number]> {
  const all = [...a, ...b].sort((x, y) => x[0] - y[0]);
  const out: Array<[number, number]> = [];
  for (const r of all) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
    else out.push([r[0], r[1]]);
  }
  return out;
}

const CHUNK = 16 * 1024 * 1024;

/**
 * Compares two files byte for byte outside the `masked` [offset, length] ranges, reading only
 * where either file has data (holes read as zeros in both). Returns undefined when equal.
 */
export async function diffFiles(pathA: string, pathB: string, masked: Array<[number, number]> = []): Promise<string | undefined> {
  const a = await FileStorage.open(pathA);
  const b = await FileStorage.open(pathB);
  try {
    const length = await a.size();
    if ((await b.size()) !== length) return `length differs: ${length} vs ${await b.size()}`;
    for (const [start, end] of union(await dataRanges(a, length), await dataRanges(b, length))) {
      for (let off = start; off < end; off += CHUNK) {
        const n = Math.min(CHUNK, end - off);
        const local = masked.map(([o, l]): [number, number] => [o - off, l]);
        const d = diffMasked(await a.read(off, n), await b.read(off, n), local);
        if (d) return d.replace(/at byte (\d+) \(0x[0-9a-f]+\)/, (_, i: string) => `at byte ${off + Number(i)} (0x${(off + Number(i)).toString(16)})`);
      }
    }
    return undefined;
  } finally {
    await a.close();
    await b.close();
  }
}

/** Guest writes qemu-io makes in a round trip: at the start, in the middle, in the last sector. */
export function roundTripWrites(virtualSize: number, count = 3): string[] {
  if (virtualSize < 4096) return [];
  if (count === 1) return [`write -P 0x5a 0 4k`];
  const mid = Math.floor(virtualSize / 2 / 512) * 512;
  return [`write -P 0x5a 0 4k`, `write -P 0xa5 ${mid} ${Math.min(65536, virtualSize - mid)}`, `write -P 0x3c ${virtualSize - 512} 512`];
}

/** Largest disk whose whole contents a round trip compares (qemu-img compare reads every byte of a vhdx). */
export const COMPARE_LIMIT = 512 * 1024 * 1024;

/**
 * Writes the same patterns into both images with qemu-io (`writeCount` 3: first, middle and last
 * sector; 1: the first 4 KiB only, for formats where a write allocates a large block). Up to COMPARE_LIMIT, `qemu-img compare`
 * then checks that the two read the same everywhere; for larger disks, qemu-io reads the patterns
 * back from both (`read -P`, which fails on a mismatch). Returns a description of the first
 * problem, or undefined.
 */
export function roundTrip(format: string, theirs: string, ours: string, virtualSize: number, writeCount = 3): string | undefined {
  const writes = roundTripWrites(virtualSize, writeCount);
  const cmds = writes.flatMap((c) => ['-c', c]);
  for (const path of [theirs, ours]) {
    const r = run('qemu-io', ['-f', format, ...cmds, path]);
    if (r.status !== 0 || /error|failed/i.test(r.stderr + r.stdout)) return `qemu-io write on ${path}: ${r.stdout}${r.stderr}`;
  }
  if (virtualSize <= COMPARE_LIMIT) {
    const cmp = qemuImg(['compare', '-f', format, '-F', format, theirs, ours]);
    return cmp.status === 0 && /Images are identical/.test(cmp.stdout) ? undefined : `qemu-img compare: ${cmp.status} ${cmp.stdout}${cmp.stderr}`;
  }
  const reads = writes.flatMap((c) => ['-c', c.replace(/^write/, 'read')]);
  for (const path of [theirs, ours]) {
    const r = run('qemu-io', ['-f', format, '-r', ...reads, path]);
    if (r.status !== 0 || /error|failed|mismatch/i.test(r.stderr + r.stdout)) return `qemu-io read on ${path}: ${r.stdout}${r.stderr}`;
  }
  return undefined;
}
