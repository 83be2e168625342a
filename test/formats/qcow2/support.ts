/**
 * Helpers for the qcow2 unit tests: a CreateContext from option text, a planned image as bytes,
 * and an independent refcount audit of such bytes (what `qemu-img check` verifies: every cluster
 * a structure uses has refcount 1, every other cluster 0).
 */
import { CreateOptions } from '../../../src/formats/options.js';
import { QCOW2_OPTIONS, QCOW2_UNSUPPORTED } from '../../../src/formats/qcow2/params.js';
import type { CreateContext, Layout } from '../../../src/formats/types.js';

export function ctxFor(size: bigint, options: Record<string, string> = {}): CreateContext {
  const o = new CreateOptions(QCOW2_OPTIONS, QCOW2_UNSUPPORTED);
  for (const [k, v] of Object.entries(options)) o.setText(k, v);
  o.setText('size', size.toString());
  return {
    filename: 't.qcow2',
    size,
    options: o,
    sizeFromBacking: false,
    random: () => {
      throw new Error('qcow2 planning must not use randomness');
    },
    now: () => {
      throw new Error('qcow2 planning must not read the clock');
    },
  };
}

/** The file a Layout describes (writes must be ascending and non-overlapping). */
export function materialize(layout: Layout): Uint8Array {
  const out = new Uint8Array(layout.length);
  let end = 0;
  for (const w of layout.writes) {
    if (w.offset < end) throw new Error(`write at ${w.offset} overlaps or precedes the previous one ending at ${end}`);
    if (w.offset + w.data.length > layout.length) throw new Error(`write at ${w.offset} runs past the file length ${layout.length}`);
    out.set(w.data, w.offset);
    end = w.offset + w.data.length;
  }
  return out;
}

function u64(b: Uint8Array, at: number): number {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return Number(v.getBigUint64(at) & ((1n << 62n) - 1n));
}

function alignDown(n: number, align: number): number {
  return Math.floor(n / align) * align;
}

export interface Audit {
  /** Clusters whose stored refcount differs from the references found, as [cluster, stored, found]. */
  mismatches: Array<[number, number, number]>;
  referenced: number;
}

/**
 * Recomputes every cluster's expected refcount from the structures (header, refcount table and
 * blocks, L1, L2 tables, data clusters) and compares it with the stored refcounts.
 */
export function auditRefcounts(img: Uint8Array): Audit {
  const v = new DataView(img.buffer, img.byteOffset, img.byteLength);
  const cs = 2 ** v.getUint32(20);
  const version = v.getUint32(4);
  const order = version >= 3 ? v.getUint32(96) : 4;
  const extended = version >= 3 && (v.getBigUint64(72) & 16n) !== 0n;
  const l1Size = v.getUint32(36);
  const l1Offset = u64(img, 40);
  const rtOffset = u64(img, 48);
  const rtClusters = v.getUint32(56);
  const clusters = Math.ceil(img.length / cs);
  const found = new Map<number, number>();
  const ref = (offset: number, bytes: number) => {
    for (let c = Math.floor(offset / cs); c < Math.ceil((offset + bytes) / cs); c++) found.set(c, (found.get(c) ?? 0) + 1);
  };
  ref(0, cs);
  ref(rtOffset, rtClusters * cs);
  const blocks: number[] = [];
  for (let i = 0; i < (rtClusters * cs) / 8; i++) {
    const b = u64(img, rtOffset + i * 8);
    if (b) {
      blocks[i] = b;
      ref(b, cs);
    }
  }
  if (l1Size) ref(l1Offset, l1Size * 8);
  const l2Entry = extended ? 16 : 8;
  for (let i = 0; i < l1Size; i++) {
    const l2 = alignDown(u64(img, l1Offset + i * 8), cs);
    if (!l2) continue;
    ref(l2, cs);
    for (let j = 0; j < cs / l2Entry; j++) {
      const data = alignDown(u64(img, l2 + j * l2Entry), cs);
      if (data) ref(data, cs);
    }
  }
  const bits = 2 ** order;
  const perBlock = (cs * 8) / bits;
  const stored = (c: number): number => {
    const b = blocks[Math.floor(c / perBlock)];
    if (!b) return 0;
    const i = c % perBlock;
    if (bits < 8) return (img[b + Math.floor((i * bits) / 8)]! >> ((i * bits) % 8)) & (2 ** bits - 1);
    let value = 0;
    for (let k = 0; k < bits / 8; k++) value = value * 256 + img[b + i * (bits / 8) + k]!;
    return value;
  };
  const mismatches: Array<[number, number, number]> = [];
  const last = Math.max(clusters, ...found.keys());
  for (let c = 0; c <= last; c++) {
    const want = found.get(c) ?? 0;
    const have = stored(c);
    if (want !== have) mismatches.push([c, have, want]);
  }
  return { mismatches, referenced: found.size };
}
