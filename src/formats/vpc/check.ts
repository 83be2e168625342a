/**
 * `check` for VHD images. qemu-img 7.2 has none for vpc ("This image format does not support
 * checks", exit 63); vmimg checks the tables the way qemu-img checks vhdx BATs and reports in
 * the same shape (corruptions counted, one line per problem, JSON check-errors / corruptions /
 * filename / format, exit 2 when something was found). What is checked, for every allocated
 * BAT entry (VHD spec "Block Allocation Table and Data Blocks"):
 *
 * 1. its block — sector bitmap plus Block Size bytes of data — ends inside the file (the file
 *    length rounded up to sectors, as QEMU sees it; vpc_open refuses the whole image otherwise);
 * 2. the block overlaps none of the image's own structures: the footer copy at offset 0, the
 *    dynamic disk header, the BAT (rounded up to a sector, as QEMU places the first block) and
 *    the footer in the last 512 bytes;
 * 3. no two blocks overlap each other.
 *
 * Fixed disks have no tables: nothing to check beyond what opening verified (the footer).
 * Memory is bounded: the BAT is scanned in chunks, and the overlap pass keeps two numbers per
 * allocated block, for at most OVERLAP_CHECK_LIMIT blocks (more is reported as a check error,
 * "check not completed", rather than allocated).
 */
import { emptyCheckResult, type CheckResult } from '../image.js';
import { SECTOR_SIZE } from '../../util/units.js';
import { BAT_ENTRY_SIZE, BAT_UNUSED, type VpcBat } from './bat.js';
import { DYN_HEADER_SIZE, FOOTER_SIZE } from './footer.js';
import { sectorBitmapSize, type VpcFacts } from './header.js';

/** Most allocated blocks the overlap pass sorts (2^22 blocks: 48 MiB of working memory). */
export const OVERLAP_CHECK_LIMIT = 1 << 22;

interface Structure {
  what: string;
  start: number;
  end: number;
}

const range = (start: number, end: number): string => `${start}-${end}`;

export async function checkVpc(facts: VpcFacts, bat: VpcBat | undefined, report: (line: string) => void): Promise<CheckResult> {
  const result = emptyCheckResult();
  const dyn = facts.dynamicHeader;
  if (!dyn || !bat) return result;
  const fileLength = facts.fileLength;
  const blockBytes = sectorBitmapSize(dyn.blockSize) + dyn.blockSize;
  const tableOffset = Number(dyn.tableOffset);
  const structures: Structure[] = [
    { what: 'footer copy', start: 0, end: FOOTER_SIZE },
    { what: 'dynamic disk header', start: Number(facts.footer.dataOffset), end: Number(facts.footer.dataOffset) + DYN_HEADER_SIZE },
    { what: 'BAT', start: tableOffset, end: Math.ceil((tableOffset + bat.entries * BAT_ENTRY_SIZE) / SECTOR_SIZE) * SECTOR_SIZE },
    { what: 'footer', start: fileLength - FOOTER_SIZE, end: fileLength },
  ];

  // Pass 1: bounds and structures, counting the blocks that lie in the file.
  let inFile = 0;
  await bat.scan((index, entry) => {
    if (entry === BAT_UNUSED) return;
    const start = entry * SECTOR_SIZE;
    const end = start + blockBytes;
    if (end > fileLength) {
      result.corruptions++;
      report(`VPC BAT entry ${index} block ${range(start, end)} points after end of file (${fileLength}). Image has probably been truncated.`);
      return;
    }
    inFile++;
    for (const s of structures) {
      if (start < s.end && s.start < end) {
        result.corruptions++;
        report(`VPC BAT entry ${index} block ${range(start, end)} overlaps with the ${s.what} ${range(s.start, s.end)}`);
        break;
      }
    }
  });

  // Pass 2: blocks against each other, in file order.
  if (inFile > OVERLAP_CHECK_LIMIT) {
    result.checkErrors++;
    report(`VPC image has ${inFile} allocated blocks; vmimg checks at most ${OVERLAP_CHECK_LIMIT} for overlaps with each other`);
    return result;
  }
  const starts = new Float64Array(inFile);
  const indexes = new Uint32Array(inFile);
  let n = 0;
  await bat.scan((index, entry) => {
    if (entry === BAT_UNUSED || entry * SECTOR_SIZE + blockBytes > fileLength) return;
    starts[n] = entry * SECTOR_SIZE;
    indexes[n++] = index;
  });
  const order = new Uint32Array(n).map((_, i) => i);
  order.sort((a, b) => starts[a]! - starts[b]! || indexes[a]! - indexes[b]!);
  // The block reaching furthest so far; a block starting before its end overlaps it.
  let reach = -1;
  for (const k of order) {
    const start = starts[k]!;
    if (reach >= 0 && start < starts[reach]! + blockBytes) {
      result.corruptions++;
      report(
        `VPC BAT entry ${indexes[k]} block ${range(start, start + blockBytes)} overlaps with BAT entry ${indexes[reach]} block ${range(starts[reach]!, starts[reach]! + blockBytes)}`,
      );
    }
    if (reach < 0 || start + blockBytes > starts[reach]! + blockBytes) reach = k;
  }
  return result;
}
