/**
 * `check` for VHDX images: qemu-img 7.2's vhdx_co_check, plus what its reads trip over and
 * what its check leaves out.
 *
 * QEMU's part (same messages, same counts; each problem is one corruption, exit 2): every
 * FULLY_PRESENT BAT entry is run through vhdx_check_bat_entries (bat.ts) — offset overflow,
 * start or end past the end of the file, overlap with the log or a region. (QEMU also counts a
 * log replayed at open as a fixed corruption, and so does vmimg: image.ts.)
 *
 * vmimg's additions, reported in the same way:
 * - a payload entry in state 4 (undefined) or PARTIALLY_PRESENT (7, only meaningful with a
 *   parent): QEMU's reads fail on them with EIO;
 * - a FULLY_PRESENT payload entry at file offset 0 (inside the header section);
 * - a FULLY_PRESENT payload entry overlapping the log or a region that QEMU's counter skipped
 *   (it skips one present entry after every chunk-ratio of them, meaning the sector bitmap
 *   entries, but counts only present ones), with QEMU's message;
 * - payload blocks that overlap each other (VHDX spec §2.5: every block has its own space).
 *
 * Memory is bounded: the BAT is scanned in chunks, and the overlap pass keeps three numbers per
 * present block, for at most OVERLAP_CHECK_LIMIT blocks (more is a check error).
 */
import { emptyCheckResult, type CheckResult } from '../image.js';
import { BatEntryChecker, type VhdxBat } from './bat.js';
import type { VhdxFacts } from './header.js';
import { PAYLOAD_BLOCK_FULLY_PRESENT, PAYLOAD_BLOCK_PARTIALLY_PRESENT } from './structs.js';

/** Most present blocks the overlap pass sorts (2^22: 64 MiB of working memory). */
export const OVERLAP_CHECK_LIMIT = 1 << 22;

const INVALID_PAYLOAD_STATES = new Set([4, PAYLOAD_BLOCK_PARTIALLY_PRESENT]);

export async function checkVhdx(facts: VhdxFacts, bat: VhdxBat, report: (line: string) => void): Promise<CheckResult> {
  const result = emptyCheckResult();
  const g = facts.geometry;
  const virtualSize = Number(facts.virtualSize);
  const fileLength = facts.fileLength;
  const stride = g.chunkRatio + 1;
  const checker = new BatEntryChecker(g, facts.virtualSize, fileLength, facts.regions);
  const problem = (line: string): void => {
    result.corruptions++;
    report(line);
  };

  // Pass 1: QEMU's entry checks and vmimg's state checks, counting the blocks to compare.
  let present = 0;
  await bat.scan((index, entry) => {
    for (const line of checker.problems(index, entry)) problem(line);
    if (index % stride === g.chunkRatio) return; // a sector bitmap entry
    const block = index - Math.floor(index / stride);
    if (INVALID_PAYLOAD_STATES.has(entry.state)) {
      problem(`VHDX BAT entry ${index} (payload block ${block}) has state ${entry.state}, which a disk without a parent cannot have`);
    } else if (entry.state === PAYLOAD_BLOCK_FULLY_PRESENT) {
      const clash = checker.regionChecked ? undefined : checker.regionOverlap(entry);
      if (clash) problem(clash);
      if (entry.offset === 0) problem(`VHDX BAT entry ${index} (payload block ${block}) places the block at file offset 0, inside the header section`);
      else if (entry.offset < fileLength) present++;
    }
  });

  // Pass 2: present payload blocks against each other, in file order.
  if (present > OVERLAP_CHECK_LIMIT) {
    result.checkErrors++;
    report(`VHDX image has ${present} present blocks; vmimg checks at most ${OVERLAP_CHECK_LIMIT} for overlaps with each other`);
    return result;
  }
  const starts = new Float64Array(present);
  const ends = new Float64Array(present);
  const indexes = new Uint32Array(present);
  let n = 0;
  await bat.scan((index, entry) => {
    if (index % stride === g.chunkRatio || entry.state !== PAYLOAD_BLOCK_FULLY_PRESENT || entry.offset === 0 || entry.offset >= fileLength) return;
    const block = index - Math.floor(index / stride);
    starts[n] = entry.offset;
    ends[n] = entry.offset + Math.max(0, Math.min(g.blockSize, virtualSize - block * g.blockSize));
    indexes[n++] = index;
  });
  const order = new Uint32Array(n).map((_, i) => i);
  order.sort((a, b) => starts[a]! - starts[b]! || indexes[a]! - indexes[b]!);
  let reach = -1;
  for (const k of order) {
    if (reach >= 0 && starts[k]! < ends[reach]!) {
      problem(`VHDX BAT entry ${indexes[k]} block ${starts[k]}-${ends[k]} overlaps with BAT entry ${indexes[reach]} block ${starts[reach]}-${ends[reach]}`);
    }
    if (reach < 0 || ends[k]! > ends[reach]!) reach = k;
  }
  return result;
}
