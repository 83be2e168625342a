/**
 * Opening VHDX images (VHDX spec v1.00; QEMU 7.2 block/vhdx.c) and mapping them.
 *
 * Reads follow vhdx_co_readv, block by block through the BAT (payload entry of block j at index
 * j + ⌊j / chunk ratio⌋, §2.5):
 *
 * - FULLY_PRESENT (6): data at the entry's file offset plus the offset in the block;
 * - ZERO (2): zeros, and "zero" in map;
 * - NOT_PRESENT (0), UNDEFINED (1), UNMAPPED (3) and the v0.95 UNMAPPED (5): zeros in QEMU,
 *   "unallocated" here (§2.5.1.1: the block has no data in this file; a disk without a parent
 *   reads them as zeros);
 * - PARTIALLY_PRESENT (7, differencing disks only) and the undefined state 4: QEMU fails the
 *   read (EIO); map() refuses them as CORRUPT_IMAGE, as it does a FULLY_PRESENT entry at file
 *   offset 0 (inside the header section; QEMU would read the file's first bytes as the block).
 *
 * qemu-img 7.2's vhdx driver has no block status, so QEMU calls every range allocated data
 * without an offset; the image says so (qemuReportsAllData) and the generic map reports it that
 * way. map() itself answers the real allocation, which reads, the virtio device and anything
 * else built on the Extent union use.
 *
 * Differencing disks and logs to replay are refused at open (header.ts). The BAT is read
 * through a bounded page cache (bat.ts). Opened writable (not for check), the image writes in
 * place through write.ts; images whose header names a log are refused for writing.
 */
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import type { CheckFix, CheckResult, Extent, Image, ImageInfoFields, OpenOptions, WriteZeroesOptions } from '../image.js';
import { checkMapRange, pushExtent } from '../extents.js';
import { VhdxBat } from './bat.js';
import { checkVhdx } from './check.js';
import { readVhdxFacts } from './header.js';
import { payloadBatIndex } from './params.js';
import {
  PAYLOAD_BLOCK_FULLY_PRESENT,
  PAYLOAD_BLOCK_NOT_PRESENT,
  PAYLOAD_BLOCK_UNDEFINED,
  PAYLOAD_BLOCK_UNMAPPED,
  PAYLOAD_BLOCK_UNMAPPED_V095,
  PAYLOAD_BLOCK_ZERO,
} from './structs.js';
import { vhdxWritePath, vhdxWriteRefusal } from './write.js';

export async function openVhdx(storage: Storage, options: OpenOptions): Promise<Image> {
  const facts = await readVhdxFacts(storage, { check: options.check, replay: options.writable ?? false });
  const filename = options.filename;
  if (facts.virtualSize > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new VmimgError('UNSUPPORTED_IMAGE', `vhdx image '${storage.name}': virtual size ${facts.virtualSize} is beyond what vmimg can address (2^53 bytes)`, {
      virtualSize: facts.virtualSize.toString(),
    });
  }
  const virtualSize = Number(facts.virtualSize);
  const g = facts.geometry;
  const blockSize = g.blockSize;
  const bat = new VhdxBat(storage, facts.batRegion.fileOffset, g.batEntries, facts.fileLength);

  const writable = (options.writable ?? false) && !(options.check ?? false);
  if (writable) {
    const refusal = vhdxWriteRefusal(facts);
    if (refusal) throw new VmimgError('UNSUPPORTED_IMAGE', `vhdx image '${filename}' cannot be opened for writing: ${refusal}`, { file: filename });
  }
  const writer = writable ? vhdxWritePath(storage, facts, bat, virtualSize, filename, { barriers: options.writeBarriers ?? true }) : undefined;
  const notWritable = (): Promise<never> => Promise.reject(new VmimgError('WRITE_FAILED', `vhdx image '${filename}' was not opened for writing`, { file: filename }));

  const corrupt = (message: string, details: Record<string, unknown>): VmimgError =>
    new VmimgError('CORRUPT_IMAGE', `vhdx image '${storage.name}': ${message}`, { file: storage.name, ...details });

  return {
    format: 'vhdx',
    filename,
    storage,
    virtualSize,
    qemuReportsAllData: true,
    references: () => [],
    async map(start: number, length: number): Promise<Extent[]> {
      checkMapRange('vhdx', filename, virtualSize, start, length);
      const out: Extent[] = [];
      const end = start + length;
      for (let pos = start; pos < end; ) {
        const block = Math.floor(pos / blockSize);
        const inBlock = pos - block * blockSize;
        const n = Math.min(blockSize - inBlock, end - pos);
        const index = payloadBatIndex(g, block);
        const entry = bat.peek(index) ?? (await bat.get(index));
        switch (entry.state) {
          case PAYLOAD_BLOCK_ZERO:
            pushExtent(out, { kind: 'zero', start: pos, length: n });
            break;
          case PAYLOAD_BLOCK_NOT_PRESENT:
          case PAYLOAD_BLOCK_UNDEFINED:
          case PAYLOAD_BLOCK_UNMAPPED:
          case PAYLOAD_BLOCK_UNMAPPED_V095:
            pushExtent(out, { kind: 'unallocated', start: pos, length: n });
            break;
          case PAYLOAD_BLOCK_FULLY_PRESENT:
            if (entry.offset === 0) throw corrupt(`BAT entry ${index} (block ${block}) places the block at file offset 0, inside the header section`, { index });
            if (entry.offset + inBlock + n > Number.MAX_SAFE_INTEGER) throw corrupt(`BAT entry ${index} (block ${block}) points beyond any file`, { index });
            pushExtent(out, { kind: 'data', start: pos, length: n, storage, offset: entry.offset + inBlock });
            break;
          default:
            throw corrupt(`BAT entry ${index} (block ${block}) has state ${entry.state}, which a disk without a parent cannot have (QEMU fails the read)`, {
              index,
              state: entry.state,
            });
        }
        pos += n;
      }
      return out;
    },
    /** vhdx_get_info: the block size is the cluster size; 7.2 has no format-specific info. */
    info: (): ImageInfoFields => ({ clusterSize: blockSize }),
    check: async (_fix: CheckFix, report: (line: string) => void): Promise<CheckResult> => {
      const result = await checkVhdx(facts, bat, report);
      // vhdx_co_check: a log replayed when the image was opened counts as a fixed corruption.
      if (facts.logReplayed) result.corruptionsFixed++;
      return result;
    },
    writable,
    write: (offset: number, data: Uint8Array) => (writer ? writer.write(offset, data) : notWritable()),
    writeZeroes: (offset: number, length: number, zo?: WriteZeroesOptions) => (writer ? writer.writeZeroes(offset, length, zo) : notWritable()),
    flush: () => (writer ? writer.flush() : storage.flush()),
    close: () => storage.close(),
  };
}
