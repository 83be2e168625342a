/**
 * Writing opened VHDX images in place (the optional write side of the Image contract, see
 * src/formats/image.ts), for `convert -n` and the virtio-blk device model. Follows QEMU 7.2's
 * vhdx_co_writev / vhdx_allocate_block (block/vhdx.c) except where noted; see
 * docs/formats/vhdx.md "Writing in place".
 *
 * - Payload block j's entry sits at BAT index j + ⌊j / chunk ratio⌋ (spec §2.5). A FULLY_PRESENT
 *   (6) block is written where its entry points. Fixed disks made with block_state_zero=off are
 *   all FULLY_PRESENT, so they are written in place; everything else allocates.
 * - A non-zero write to a block in a zero-reading state (NOT_PRESENT 0, UNDEFINED 1, ZERO 2,
 *   UNMAPPED 3 / v0.95 5) allocates a block: at the first 1 MiB boundary (FileOffsetMB, §2.5)
 *   past the end of the file, past every region (log, BAT, metadata, others) and past every
 *   FULLY_PRESENT block. The file is first extended by a whole block (QEMU's truncate with
 *   BDRV_REQ_ZERO_WRITE): the new block lies wholly past the old end, so every byte the write
 *   does not cover reads as zeros and no stale byte can show, without writing zeros. Then the
 *   guest data, then the BAT entry becomes FULLY_PRESENT with that offset.
 * - A write that is all zeros to such a block allocates nothing (it already reads as zeros).
 * - States 4 and 7 (PARTIALLY_PRESENT, differencing only) fail as CORRUPT_IMAGE, like reads
 *   (QEMU: EIO). Differencing disks never get here: the reader refuses them.
 *
 * BAT updates are written directly into the BAT (one 8-byte entry inside one sector), not
 * journalled through the log as QEMU does (vhdx_log_write_and_flush, which replays its entry
 * at once and leaves the log GUID zero again). The log stays empty and the log GUID zero
 * throughout, so there is never anything to replay; images with a log GUID are refused for
 * writing. Crash ordering: header update (new GUIDs) → data → BAT entry, with a flush between
 * stages when OpenOptions.writeBarriers is on (the default). A crash before the BAT write leaves
 * at most an unreferenced block at the end of the file (readers never see it); the entry itself
 * is one aligned 8-byte store in one sector.
 *
 * Headers (§2.2.2; QEMU's vhdx_update_headers): before the first change to the file after it was
 * opened, both headers are rewritten with a fresh FileWriteGuid and DataWriteGuid, the
 * non-current one first with sequence number + 1, then the other with + 2, so a valid current
 * header exists at every moment. Opening writable changes nothing until something is written.
 *
 * writeZeroes: zero-reading blocks stay as they are. A whole FULLY_PRESENT block with mayUnmap
 * becomes ZERO (2, offset 0 as QEMU writes non-present states) — unless the file parameters
 * carry LeaveBlockAllocated (§3.5.2.1, fixed disks) — and its bytes are then punched out of the
 * file where the storage can (the reference is dropped before the space). Everything else gets
 * zeros written. (QEMU 7.2's vhdx has no write-zeroes or discard: its block layer writes zero
 * buffers, which allocates blocks.)
 */
import { randomBytes } from 'node:crypto';
import type { Storage } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import type { WriteZeroesOptions } from '../image.js';
import { overlaps, type VhdxBat } from './bat.js';
import { isZeroGuid, randomGuid } from './guid.js';
import type { VhdxFacts } from './header.js';
import { writeHeaderPair } from './header-update.js';
import { payloadBatIndex } from './params.js';
import {
  MiB,
  PARAMS_LEAVE_BLOCKS_ALLOCATED,
  PAYLOAD_BLOCK_FULLY_PRESENT,
  PAYLOAD_BLOCK_NOT_PRESENT,
  PAYLOAD_BLOCK_UNDEFINED,
  PAYLOAD_BLOCK_UNMAPPED,
  PAYLOAD_BLOCK_UNMAPPED_V095,
  PAYLOAD_BLOCK_ZERO,
  type VhdxHeader,
} from './structs.js';
import { allZero, checkWriteRange, serialQueue } from '../write-common.js';

export interface VhdxWritePath {
  write(offset: number, data: Uint8Array): Promise<void>;
  writeZeroes(offset: number, length: number, options?: WriteZeroesOptions): Promise<void>;
  flush(): Promise<void>;
}

export interface VhdxWriteOptions {
  /** Flush between dependent stages (OpenOptions.writeBarriers). */
  barriers: boolean;
  /** Randomness for the new header GUIDs (default: crypto). */
  random?: (n: number) => Uint8Array;
}

const ZERO_CHUNK = 1 << 20;
const U64_MAX = (1n << 64n) - 1n;

/** Zero-reading states of a disk without a parent (§2.5.1.1). */
function readsAsZeros(state: number): boolean {
  return (
    state === PAYLOAD_BLOCK_NOT_PRESENT ||
    state === PAYLOAD_BLOCK_UNDEFINED ||
    state === PAYLOAD_BLOCK_ZERO ||
    state === PAYLOAD_BLOCK_UNMAPPED ||
    state === PAYLOAD_BLOCK_UNMAPPED_V095
  );
}

/** Why `facts` cannot be written in place, or undefined. */
export function vhdxWriteRefusal(facts: VhdxFacts): string | undefined {
  // A log with entries to apply was replayed when the image was opened writable (log.ts); a log
  // GUID left standing (a log with nothing valid in it) is refused, as QEMU refuses the BAT
  // updates of such an image (vhdx_log_write: ENOTSUP), so a written image always ends with a
  // zero log GUID.
  if (!isZeroGuid(facts.header.logGuid)) return 'its header names a log (non-zero log GUID) with nothing to replay; vmimg does not write VHDX logs';
  if (facts.header.sequenceNumber >= U64_MAX - 1n) return `the header sequence number ${facts.header.sequenceNumber} cannot be advanced`;
  return undefined;
}

export function vhdxWritePath(storage: Storage, facts: VhdxFacts, bat: VhdxBat, virtualSize: number, filename: string, options: VhdxWriteOptions): VhdxWritePath {
  const g = facts.geometry;
  const blockSize = g.blockSize;
  const leaveAllocated = (facts.fileParameters.flags & PARAMS_LEAVE_BLOCKS_ALLOCATED) !== 0;
  const random = options.random ?? ((n: number) => new Uint8Array(randomBytes(n)));
  let headersUpdated = false;
  /** The first byte past every block and region (known after the first allocation's scan). */
  let freeOffset: number | undefined;

  const corrupt = (message: string, details: Record<string, unknown>): VmimgError =>
    new VmimgError('CORRUPT_IMAGE', `vhdx image '${filename}': ${message}`, { file: filename, ...details });
  const bounds = (offset: number, length: number): void => checkWriteRange('vhdx', filename, virtualSize, offset, length);
  /** Calls run one after another (allocation reads and moves the free offset). */
  const serial = serialQueue();
  const barrier = async (): Promise<void> => {
    if (options.barriers) await storage.flush();
  };

  /** vhdx_update_headers: both headers, fresh GUIDs, before the first change (§2.2.2). */
  async function beforeFirstChange(): Promise<void> {
    if (headersUpdated) return;
    const current = facts.header;
    const next: VhdxHeader = { ...current, fileWriteGuid: randomGuid(random), dataWriteGuid: randomGuid(random) };
    await writeHeaderPair(storage, current, facts.headerIndex, next, barrier);
    headersUpdated = true;
  }

  /** The file offset of FULLY_PRESENT block `block` (entry at `index`), checked for writing. */
  function presentOffset(index: number, block: number, offset: number): number {
    if (offset < MiB) throw corrupt(`BAT entry ${index} (block ${block}) places the block at file offset ${offset}, inside the header section`, { index });
    if (offset + blockSize > Number.MAX_SAFE_INTEGER) throw corrupt(`BAT entry ${index} (block ${block}) points beyond any file`, { index });
    // The open-time check (QEMU's) skips some entries; writing must never land on metadata.
    const clash = overlaps(facts.regions, BigInt(offset), BigInt(blockSize));
    if (clash) throw corrupt(`BAT entry ${index} (block ${block}) at ${offset} overlaps the region ${clash.start}..${clash.end}`, { index, offset });
    return offset;
  }

  /** Where the next block goes: 1 MiB-aligned, past the file, every region and every block. */
  async function nextFree(): Promise<number> {
    if (freeOffset === undefined) {
      let end = await storage.size();
      for (const r of facts.regions) {
        const regionEnd = r.end < r.start ? U64_MAX : r.end;
        if (regionEnd > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`a region ends at ${regionEnd}, beyond what vmimg can address`, {});
        end = Math.max(end, Number(regionEnd));
      }
      await bat.scan((_i, e) => {
        if (e.state === PAYLOAD_BLOCK_FULLY_PRESENT) end = Math.max(end, e.offset + blockSize);
      });
      freeOffset = end;
    }
    const at = Math.ceil(freeOffset / MiB) * MiB;
    if (at + blockSize > Number.MAX_SAFE_INTEGER) throw new VmimgError('SIZE_OUT_OF_RANGE', `vhdx image '${filename}' is full: a block at ${at} is beyond what vmimg can address`, { at });
    return at;
  }

  async function allocate(index: number, inBlock: number, data: Uint8Array): Promise<void> {
    const at = await nextFree();
    await storage.truncate(at + blockSize);
    await storage.write(at + inBlock, data);
    freeOffset = at + blockSize;
    await barrier();
    await bat.set(index, PAYLOAD_BLOCK_FULLY_PRESENT, at);
  }

  async function writeZerosAt(at: number, length: number): Promise<void> {
    const zeros = new Uint8Array(Math.min(ZERO_CHUNK, length));
    for (let k = 0; k < length; k += zeros.length) await storage.write(at + k, zeros.subarray(0, Math.min(zeros.length, length - k)));
  }

  /** Calls `fn` for each block-sized piece of [offset, offset+length), in order. */
  async function eachBlock(offset: number, length: number, fn: (block: number, index: number, inBlock: number, done: number, n: number) => Promise<void>): Promise<void> {
    for (let done = 0; done < length; ) {
      const pos = offset + done;
      const block = Math.floor(pos / blockSize);
      const inBlock = pos - block * blockSize;
      const n = Math.min(blockSize - inBlock, length - done);
      await fn(block, payloadBatIndex(g, block), inBlock, done, n);
      done += n;
    }
  }

  const badState = (index: number, block: number, state: number): VmimgError =>
    corrupt(`BAT entry ${index} (block ${block}) has state ${state}, which a disk without a parent cannot have`, { index, state });

  async function write(offset: number, data: Uint8Array): Promise<void> {
    await eachBlock(offset, data.length, async (block, index, inBlock, done, n) => {
      const piece = data.subarray(done, done + n);
      const entry = await bat.get(index);
      if (entry.state === PAYLOAD_BLOCK_FULLY_PRESENT) {
        const at = presentOffset(index, block, entry.offset);
        await beforeFirstChange();
        await storage.write(at + inBlock, piece);
      } else if (readsAsZeros(entry.state)) {
        if (allZero(piece)) return;
        await beforeFirstChange();
        await allocate(index, inBlock, piece);
      } else {
        throw badState(index, block, entry.state);
      }
    });
  }

  async function writeZeroes(offset: number, length: number, zo: WriteZeroesOptions = {}): Promise<void> {
    await eachBlock(offset, length, async (block, index, inBlock, _done, n) => {
      const entry = await bat.get(index);
      if (readsAsZeros(entry.state)) return;
      if (entry.state !== PAYLOAD_BLOCK_FULLY_PRESENT) throw badState(index, block, entry.state);
      const at = presentOffset(index, block, entry.offset);
      await beforeFirstChange();
      const blockLength = Math.min(blockSize, virtualSize - block * blockSize);
      if (zo.mayUnmap && !leaveAllocated && inBlock === 0 && n === blockLength) {
        await bat.set(index, PAYLOAD_BLOCK_ZERO, 0);
        await barrier();
        if (storage.punchHole) await storage.punchHole(at, blockSize);
        return;
      }
      await writeZerosAt(at + inBlock, n);
    });
  }

  return {
    write: (offset, data) =>
      serial(async () => {
        bounds(offset, data.length);
        await write(offset, data);
      }),
    writeZeroes: (offset, length, zo) =>
      serial(async () => {
        bounds(offset, length);
        await writeZeroes(offset, length, zo);
      }),
    flush: () => serial(() => storage.flush()),
  };
}
