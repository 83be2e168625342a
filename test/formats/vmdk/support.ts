/**
 * Helpers for the vmdk tests: a CreateContext from option text with a fixed CID, a planned image
 * as bytes, and the CID's place in a descriptor (for masking the one random field).
 */
import { CreateOptions } from '../../../src/formats/options.js';
import type { CreateContext, HeaderSummary, Layout } from '../../../src/formats/types.js';
import { VMDK_OPTIONS, VMDK_UNSUPPORTED } from '../../../src/formats/vmdk/params.js';

/** Four random bytes that read (little-endian) as `cid`. */
export function cidBytes(cid: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, cid >>> 0, true);
  return b;
}

export function ctxFor(
  size: bigint,
  options: Record<string, string> = {},
  extra: { filename?: string; cid?: number; backing?: HeaderSummary } = {},
): CreateContext {
  const o = new CreateOptions(VMDK_OPTIONS, VMDK_UNSUPPORTED);
  for (const [k, v] of Object.entries(options)) o.setText(k, v);
  o.setText('size', size.toString());
  const ctx: CreateContext = {
    filename: extra.filename ?? 'dir/t.vmdk',
    size,
    options: o,
    sizeFromBacking: false,
    random: (n) => {
      if (n !== 4) throw new Error(`vmdk planning asked for ${n} random bytes`);
      return cidBytes(extra.cid ?? 0x580b9ec7);
    },
    now: () => {
      throw new Error('vmdk planning must not read the clock');
    },
  };
  if (extra.backing) ctx.backing = extra.backing;
  return ctx;
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

/** Byte offset of the CID's hex digits in a qemu-written embedded descriptor. */
export const CID_OFFSET = 512 + '# Disk DescriptorFile\nversion=1\nCID='.length;

/** The CID's hex digits as written in an embedded descriptor. */
export function cidText(img: Uint8Array): string {
  let end = CID_OFFSET;
  while (end < img.length && img[end] !== 0x0a) end++;
  return Buffer.from(img.subarray(CID_OFFSET, end)).toString('latin1');
}

/** The embedded descriptor's text (sector 1 up to the first NUL). */
export function descriptorText(img: Uint8Array): string {
  const area = img.subarray(512, 512 + 10240);
  const nul = area.indexOf(0);
  return Buffer.from(area.subarray(0, nul < 0 ? area.length : nul)).toString('utf8');
}
