/**
 * Opening VHD images (VHD spec v1.0; QEMU 7.2 block/vpc.c) and answering map() the way
 * qemu-img 7.2's block status does:
 *
 * - A footer typed fixed (Disk Type 2) reads straight through: guest byte x is file byte x for
 *   the whole virtual size (vpc_co_preadv), past the end of the file as zeros. QEMU marks the
 *   status BDRV_BLOCK_RECURSE, so holes of the file (and anything past its end) are "zero" and
 *   "data" at once, with their offset.
 * - Otherwise the BAT decides, one block at a time (vpc_co_block_status): an allocated block is
 *   data at entry × 512 + bitmap size + offset in block; an unallocated one is zero and present
 *   (QEMU answers BDRV_BLOCK_ZERO, which its block layer counts as allocated: a VHD has no
 *   backing file in QEMU or vmimg; a differencing disk's parent is ignored by both, which
 *   safetyIssues() reports). The sector bitmaps are not consulted: QEMU 7.2 never reads
 *   them (it sets every bit when it allocates a block), so a block is all data or all zero.
 *
 * Sizes and the open-time checks are header.ts's (vpc_open's order and messages). Extents are
 * merged when they have the same kind and, for data, contiguous host offsets; the BAT is read
 * through a bounded page cache (bat.ts).
 */
import type { Storage } from '../../storage/types.js';
import { SECTOR_SIZE } from '../../util/units.js';
import { checkMapRange, pushExtent } from '../extents.js';
import type { CheckFix, CheckResult, Extent, Image, ImageInfoFields, OpenOptions } from '../image.js';
import { BAT_UNUSED, VpcBat } from './bat.js';
import { checkVpc } from './check.js';
import { DISK_TYPE_DIFFERENCING, DISK_TYPE_FIXED } from './footer.js';
import { readVpcFacts, sectorBitmapSize, type VpcFacts } from './header.js';
import { VmimgError } from '../../util/errors.js';
import { vpcWritePath, vpcWriteRefusal } from './write.js';

/**
 * The file's bytes [start, start+length) as they are: data where the file has data, holes and
 * the part past its end as zero-and-data (QEMU's BDRV_BLOCK_RECURSE into the file).
 */
async function mapPassthrough(storage: Storage, start: number, length: number): Promise<Extent[]> {
  const size = await storage.size();
  const out: Extent[] = [];
  const end = start + length;
  for (let pos = start; pos < end; ) {
    const want = end - pos;
    let st: { data: boolean; length: number };
    if (pos >= size) st = { data: false, length: want };
    else if (storage.blockStatus) st = await storage.blockStatus(pos, want);
    else st = { data: true, length: Math.min(want, size - pos) };
    const n = Math.min(Math.max(1, st.length), want);
    pushExtent(out, st.data ? { kind: 'data', start: pos, length: n, storage, offset: pos } : { kind: 'zero', start: pos, length: n, storage, offset: pos, data: true });
    pos += n;
  }
  return out;
}

export async function openVpc(storage: Storage, options: OpenOptions): Promise<Image> {
  const facts: VpcFacts = await readVpcFacts(storage, { check: options.check });
  // ≤ 2040 GiB (header.ts), so a safe integer.
  const virtualSize = Number(facts.virtualSize);
  // QEMU decides how to read by the footer's type, wherever the footer came from.
  const passthrough = facts.footer.diskType === DISK_TYPE_FIXED;
  const dyn = facts.dynamicHeader;
  const bat = dyn ? new VpcBat(storage, Number(dyn.tableOffset), dyn.maxTableEntries) : undefined;
  const blockSize = dyn?.blockSize ?? 0;
  const bitmapSize = dyn ? sectorBitmapSize(dyn.blockSize) : 0;
  const filename = options.filename;
  const writable = (options.writable ?? false) && !(options.check ?? false);
  if (writable) {
    const refusal = vpcWriteRefusal(facts);
    if (refusal) throw new VmimgError('UNSUPPORTED_IMAGE', `vpc image '${filename}' cannot be opened for writing: ${refusal}`, { file: filename });
  }
  const writer = writable ? vpcWritePath(storage, facts, bat, passthrough, virtualSize, filename) : undefined;
  const notWritable = (): never => {
    throw new VmimgError('WRITE_FAILED', `vpc image '${filename}' was not opened for writing`, { file: filename });
  };

  async function mapBlocks(start: number, length: number): Promise<Extent[]> {
    const out: Extent[] = [];
    const end = start + length;
    for (let pos = start; pos < end; ) {
      const index = Math.floor(pos / blockSize);
      const inBlock = pos - index * blockSize;
      const n = Math.min(blockSize - inBlock, end - pos);
      const entry = bat!.peek(index) ?? (await bat!.get(index));
      if (entry === BAT_UNUSED) pushExtent(out, { kind: 'zero', start: pos, length: n });
      else pushExtent(out, { kind: 'data', start: pos, length: n, storage, offset: entry * SECTOR_SIZE + bitmapSize + inBlock });
      pos += n;
    }
    return out;
  }

  return {
    format: 'vpc',
    filename,
    storage,
    virtualSize,
    references: () => [],
    /**
     * A differencing disk (type 4) names a parent by its locators; QEMU, like vmimg, reads it as
     * if it had none (unallocated blocks read as zeros), so its contents are not the disk's.
     */
    safetyIssues: (): string[] =>
      facts.footer.diskType === DISK_TYPE_DIFFERENCING ? ['VHD is a differencing disk (type 4): its parent is not read, so unallocated blocks read as zeros'] : [],
    async map(start: number, length: number): Promise<Extent[]> {
      checkMapRange('vpc', filename, virtualSize, start, length);
      if (length === 0) return [];
      return passthrough || !bat ? mapPassthrough(storage, start, length) : mapBlocks(start, length);
    },
    /** vpc_get_info: the block size is the cluster size, except for disks typed fixed. */
    info: (): ImageInfoFields => (passthrough ? {} : { clusterSize: blockSize }),
    check: (_fix: CheckFix, report: (line: string) => void): Promise<CheckResult> => checkVpc(facts, bat, report),
    writable,
    write: (offset: number, data: Uint8Array) => (writer ? writer.write(offset, data) : notWritable()),
    writeZeroes: (offset: number, length: number) => (writer ? writer.writeZeroes(offset, length) : notWritable()),
    flush: () => (writer ? writer.flush() : storage.flush()),
    close: () => storage.close(),
  };
}
