/**
 * The descriptor change QEMU 7.2 makes when a vmdk is written (block/vmdk.c vmdk_pwritev →
 * vmdk_write_cid): on the first write after each open the CID becomes a new random 32-bit value,
 * so that children recording this image's CID as their parentCID notice that it changed.
 *
 * QEMU's edit, reproduced on the descriptor's C string: in the first DESC_SIZE − 1 bytes at the
 * descriptor offset (0x200 in a sparse file, 0 in a descriptor file), everything from one byte
 * past the first "CID" up to the first "parentCID" is replaced by the new value in `%x` and a
 * newline; the text from "parentCID" on follows unchanged.
 *
 * Where vmimg writes the result (QEMU always writes DESC_SIZE bytes back, which can run over
 * tables that follow a short embedded descriptor, or cut a descriptor file longer than DESC_SIZE):
 * - a sparse file: only the bytes that changed, and only when they lie inside the header's
 *   descriptor area and before every table; otherwise the CID is left as it is;
 * - a descriptor file: the new text; a shorter text is first ended by a NUL (QEMU's reader stops
 *   there), then the file is cut to the text, so a crash in between leaves a readable file. A
 *   descriptor file longer than vmimg reads (1 MiB − 1) keeps its CID.
 */
import { randomInt } from 'node:crypto';
import type { Storage } from '../../storage/types.js';
import { DESC_SIZE, MAX_DESCRIPTOR_READ } from './constants.js';
import { cStringEnd, strstr } from './cscan.js';

/** Where the descriptor lives and which bytes of that file may be rewritten. */
export interface CidTarget {
  storage: Storage;
  /** 'sparse': embedded at byte 0x200; 'file': the whole file is the descriptor. */
  kind: 'sparse' | 'file';
  /** Sparse: the byte range the CID edit may touch (the descriptor area, clipped before the tables). */
  area?: { start: number; end: number };
}

/** QEMU's vmdk_write_cid edit of `text` (a C string); undefined when it has no "parentCID". */
export function editCid(text: Uint8Array, cid: number): Uint8Array | undefined {
  const end = Math.min(cStringEnd(text), DESC_SIZE - 1);
  const parent = strstr(text, 'parentCID', 0, end);
  if (parent < 0) return undefined;
  const at = strstr(text, 'CID', 0, end);
  // The name and the one byte after it ('=') are kept.
  const valueAt = at + 4;
  if (valueAt > end) return undefined;
  const value = Buffer.from(`${(cid >>> 0).toString(16)}\n`, 'latin1');
  const tail = text.subarray(parent, cStringEnd(text));
  const out = new Uint8Array(valueAt + value.length + tail.length);
  out.set(text.subarray(0, valueAt));
  out.set(value, valueAt);
  out.set(tail, valueAt + value.length);
  return out;
}

/** A fresh CID as QEMU draws it (g_random_int: any 32-bit value). */
export function randomCid(): number {
  return randomInt(0, 2 ** 32);
}

/** Writes a new CID into the descriptor; false when vmimg leaves the CID unchanged (see above). */
export async function writeCid(t: CidTarget, cid: number): Promise<boolean> {
  if (t.kind === 'sparse') {
    const area = t.area;
    if (!area) return false;
    const old = await t.storage.read(0x200, DESC_SIZE);
    old[DESC_SIZE - 1] = 0;
    const text = old.subarray(0, cStringEnd(old));
    const next = editCid(old, cid);
    if (!next) return false;
    // The changed bytes: from the first difference to the end of the longer string and its NUL.
    let first = 0;
    while (first < next.length && first < text.length && next[first] === text[first]) first++;
    const stop = Math.max(next.length, text.length) + 1;
    if (0x200 + first < area.start || 0x200 + stop > area.end || stop > DESC_SIZE) return false;
    const bytes = new Uint8Array(stop - first);
    bytes.set(next.subarray(first), 0);
    await t.storage.write(0x200 + first, bytes);
    return true;
  }
  const size = await t.storage.size();
  if (size > MAX_DESCRIPTOR_READ) return false;
  const whole = await t.storage.read(0, size);
  // A sparse header holding a descriptor (capacity 0): QEMU keeps the CID at 0x200; vmimg leaves it.
  if (size >= 4 && whole[0] === 0x4b && whole[1] === 0x44 && whole[2] === 0x4d && whole[3] === 0x56) return false;
  const textEnd = cStringEnd(whole);
  const next = editCid(whole, cid);
  if (!next) return false;
  if (textEnd < size) {
    // Bytes follow a NUL: QEMU never reads them; the new text ends with its own NUL.
    const bytes = new Uint8Array(next.length + 1);
    bytes.set(next);
    await t.storage.write(0, bytes);
    return true;
  }
  await t.storage.write(0, next);
  if (next.length < size) {
    await t.storage.write(next.length, new Uint8Array(1));
    await t.storage.truncate(next.length);
  }
  return true;
}
