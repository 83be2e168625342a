/**
 * The generic read path over a chain: each layer answers `map`; unallocated runs fall through
 * to the next layer (zeros below the last one, or past a shorter backing image's end), data is
 * read from storage, compressed units are decoded (bounded) with a one-unit cache.
 */
import { VmimgError } from '../util/errors.js';
import type { Extent, Image } from '../formats/image.js';
import { MAX_IO_CHUNK } from '../storage/types.js';

/** The decoders (and zlib), loaded for the first compressed unit: most reads need none. */
let compression: typeof import('../formats/compression.js') | undefined;

type CompressedExtent = Extent & { kind: 'compressed' };

/** Reads guest bytes through a stack of layers (top first). */
export class ChainReader {
  private unitCache: { key: string; bytes: Uint8Array } | undefined;

  constructor(readonly layers: readonly Image[]) {
    if (layers.length === 0) throw new VmimgError('INTERNAL', 'ChainReader needs at least one layer', {});
  }

  get virtualSize(): number {
    return this.layers[0]!.virtualSize;
  }

  /** Reads [offset, offset+length) of the top image; length ≤ 64 MiB per call. */
  async read(offset: number, length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new VmimgError('OUT_OF_BOUNDS', `Read of ${length} bytes at ${offset} is outside the image (virtual size ${this.virtualSize})`, { offset, length });
    }
    const out = new Uint8Array(length);
    await this.readInto(offset, out);
    return out;
  }

  /** Reads target.length bytes at `offset` into `target` (for callers that reuse buffers). */
  async readInto(offset: number, target: Uint8Array): Promise<void> {
    const length = target.length;
    if (!Number.isSafeInteger(offset) || offset < 0 || length > MAX_IO_CHUNK || offset + length > this.virtualSize) {
      throw new VmimgError('OUT_OF_BOUNDS', `Read of ${length} bytes at ${offset} is outside the image (virtual size ${this.virtualSize})`, { offset, length });
    }
    await this.fill(0, offset, length, target, 0);
  }

  /**
   * Fills out[outOffset, outOffset+length) with guest bytes [start, start+length) of layer
   * `depth` and below. Every byte is written exactly once (data, decoded units or zeros), so
   * callers need not clear the buffer first.
   */
  private async fill(depth: number, start: number, length: number, out: Uint8Array, outOffset: number): Promise<void> {
    const layer = this.layers[depth];
    if (length === 0) return;
    if (!layer) return void out.fill(0, outOffset, outOffset + length); // below the last layer: zeros
    const visible = Math.max(0, Math.min(length, layer.virtualSize - start));
    // Past a shorter backing image's end: zeros.
    if (visible < length) out.fill(0, outOffset + visible, outOffset + length);
    if (visible === 0) return;
    // A raw layer: one read (holes and the tail past the file's end read as zeros).
    if (layer.readsAsStorage) return layer.storage.readInto(start, out.subarray(outOffset, outOffset + visible));
    const extents = await layer.map(start, visible);
    let pos = start;
    for (const e of extents) {
      if (e.start !== pos || e.length <= 0 || e.start + e.length > start + visible) {
        throw new VmimgError('INTERNAL', `${layer.format} map of '${layer.filename}' returned a bad extent at ${e.start}+${e.length} (expected ${pos})`, {});
      }
      const at = outOffset + (e.start - start);
      switch (e.kind) {
        case 'data':
          await e.storage.readInto(e.offset, out.subarray(at, at + e.length));
          break;
        case 'zero':
          out.fill(0, at, at + e.length);
          break;
        case 'unallocated':
          await this.fill(depth + 1, e.start, e.length, out, at);
          break;
        case 'compressed': {
          const unit = await this.unit(layer, e);
          out.set(unit.subarray(e.start - e.unitStart, e.start - e.unitStart + e.length), at);
          break;
        }
      }
      pos = e.start + e.length;
    }
    if (pos !== start + visible) {
      throw new VmimgError('INTERNAL', `${layer.format} map of '${layer.filename}' covered ${start}..${pos} of ${start}..${start + visible}`, {});
    }
  }

  private async unit(layer: Image, e: CompressedExtent): Promise<Uint8Array> {
    const key = `${layer.filename}\0${e.offset}\0${e.compressedLength}\0${e.unitLength}`;
    if (this.unitCache?.key === key) return this.unitCache.bytes;
    if (e.start < e.unitStart || e.start + e.length > e.unitStart + e.unitLength) {
      throw new VmimgError('INTERNAL', `compressed extent ${e.start}+${e.length} lies outside its unit ${e.unitStart}+${e.unitLength}`, {});
    }
    const raw = await e.storage.read(e.offset, e.compressedLength);
    const { decodeUnit } = (compression ??= await import('../formats/compression.js'));
    const bytes = decodeUnit(e.codec, raw, e.unitLength, `${layer.filename} at guest offset ${e.unitStart}`);
    this.unitCache = { key, bytes };
    return bytes;
  }
}
