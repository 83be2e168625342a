/**
 * Writing opened VHD images in place (the optional write side of the Image contract, see
 * src/formats/image.ts), for `convert -n` and the virtio-blk device model.
 *
 * - Fixed disks: guest byte x is file byte x; writes go straight to the file.
 * - Dynamic disks (VHD spec "Block Allocation Table and Data Blocks"; QEMU 7.2 vpc.c
 *   alloc_block): a write to an unallocated block appends the block where the footer was (the
 *   first free byte: past the BAT and every allocated block), with a sector bitmap of all ones
 *   as QEMU writes it and the whole data area written (zeros around the guest data, so stale
 *   bytes in the file can never show through), then the footer at the new end, then the BAT
 *   entry. A crash before the BAT update leaves only an unreferenced block.
 * - Differencing disks are refused (their parent is not read, so a partial write could not
 *   preserve what the guest should see).
 * Writes that are all zeros to unallocated blocks allocate nothing: those blocks read as zeros.
 */
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import { SECTOR_SIZE } from '../../util/units.js';
import { BAT_UNUSED, type VpcBat } from './bat.js';
import { DISK_TYPE_DIFFERENCING, encodeFooter } from './footer.js';
import { sectorBitmapSize, type VpcFacts } from './header.js';
import { allZero, checkWriteRange, serialQueue } from '../write-common.js';

export interface VpcWritePath {
  write(offset: number, data: Uint8Array): Promise<void>;
  writeZeroes(offset: number, length: number): Promise<void>;
  flush(): Promise<void>;
}

const ZERO_CHUNK = 1 << 20;

/** Why `facts` cannot be written in place, or undefined. */
export function vpcWriteRefusal(facts: VpcFacts): string | undefined {
  if (facts.footer.diskType === DISK_TYPE_DIFFERENCING) return 'differencing VHDs (type 4) cannot be written: their parent is not read';
  return undefined;
}

/** `passthrough`: the image reads as a fixed disk (guest byte x is file byte x), as image.ts decides. */
export function vpcWritePath(storage: Storage, facts: VpcFacts, bat: VpcBat | undefined, passthrough: boolean, virtualSize: number, filename: string): VpcWritePath {
  const dyn = facts.dynamicHeader;
  const blockSize = dyn?.blockSize ?? 0;
  const bitmapSize = dyn ? sectorBitmapSize(blockSize) : 0;
  const footer = encodeFooter(facts.footer, true);
  let freeOffset: number | undefined;

  const bounds = (offset: number, length: number): void => checkWriteRange('vpc', filename, virtualSize, offset, length);
  /** Calls run one after another (block allocation reads and moves the free offset). */
  const serial = serialQueue();

  /** QEMU's free_data_block_offset: past the BAT and past every allocated block. */
  async function firstFree(): Promise<number> {
    if (freeOffset !== undefined) return freeOffset;
    let free = Math.ceil((bat!.tableOffset + bat!.entries * 4) / SECTOR_SIZE) * SECTOR_SIZE;
    await bat!.scan((_i, entry) => {
      if (entry !== BAT_UNUSED) free = Math.max(free, entry * SECTOR_SIZE + bitmapSize + blockSize);
    });
    freeOffset = free;
    return free;
  }

  async function allocate(index: number, inBlock: number, data: Uint8Array): Promise<void> {
    const at = await firstFree();
    if ((at / SECTOR_SIZE) >= BAT_UNUSED) throw new VmimgError('SIZE_OUT_OF_RANGE', `vpc image '${filename}' is full: block offset ${at} does not fit a BAT entry`, { at });
    const block = new Uint8Array(bitmapSize + blockSize);
    block.fill(0xff, 0, bitmapSize);
    block.set(data, bitmapSize + inBlock);
    await storage.write(at, block);
    await storage.write(at + block.length, footer);
    await bat!.set(index, at / SECTOR_SIZE);
    freeOffset = at + block.length;
  }

  async function writeDynamic(offset: number, data: Uint8Array): Promise<void> {
    for (let done = 0; done < data.length; ) {
      const pos = offset + done;
      const index = Math.floor(pos / blockSize);
      const inBlock = pos - index * blockSize;
      const n = Math.min(blockSize - inBlock, data.length - done);
      const piece = data.subarray(done, done + n);
      const entry = await bat!.get(index);
      if (entry !== BAT_UNUSED) await storage.write(entry * SECTOR_SIZE + bitmapSize + inBlock, piece);
      else if (!allZero(piece)) await allocate(index, inBlock, piece);
      done += n;
    }
  }

  async function zeroDynamic(offset: number, length: number): Promise<void> {
    const zeros = new Uint8Array(Math.min(ZERO_CHUNK, blockSize));
    for (let done = 0; done < length; ) {
      const pos = offset + done;
      const index = Math.floor(pos / blockSize);
      const inBlock = pos - index * blockSize;
      const n = Math.min(blockSize - inBlock, length - done);
      const entry = await bat!.get(index);
      if (entry !== BAT_UNUSED) {
        const base = entry * SECTOR_SIZE + bitmapSize + inBlock;
        for (let k = 0; k < n; k += zeros.length) await storage.write(base + k, zeros.subarray(0, Math.min(zeros.length, n - k)));
      }
      done += n;
    }
  }

  async function zeroFixed(offset: number, length: number): Promise<void> {
    const zeros = new Uint8Array(Math.min(ZERO_CHUNK, length));
    for (let k = 0; k < length; k += zeros.length) await storage.write(offset + k, zeros.subarray(0, Math.min(zeros.length, length - k)));
  }

  const fixed = passthrough || !dyn || !bat;
  return {
    write: (offset, data) =>
      serial(async () => {
        bounds(offset, data.length);
        if (fixed) await storage.write(offset, data);
        else await writeDynamic(offset, data);
      }),
    writeZeroes: (offset, length) =>
      serial(async () => {
        bounds(offset, length);
        if (fixed) await zeroFixed(offset, length);
        else await zeroDynamic(offset, length);
      }),
    flush: () => serial(() => storage.flush()),
  };
}
