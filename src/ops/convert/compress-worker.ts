/**
 * Compression worker: receives batches of units and returns each one compressed with the
 * target's codec, exactly as QEMU compresses them (qcow2 zlib: raw deflate, window 2^12,
 * default level, memLevel 9; zstd: one frame at the default level; vmdk: a zlib stream).
 */
import { createRequire } from 'node:module';
import { parentPort } from 'node:worker_threads';
import { constants, deflateRawSync, deflateSync } from 'node:zlib';

/** zstd-napi's native binding: compressing into caller-provided memory allocates nothing per unit. */
interface ZstdBinding {
  CCtx: new () => { compress2(dst: Uint8Array, src: Uint8Array): number };
  compressBound(length: number): number;
}
const zstd = createRequire(import.meta.url)('zstd-napi/binding') as ZstdBinding;
/** One compression context per worker, reused for every unit (QEMU's default parameters). */
let zstdContext: InstanceType<ZstdBinding['CCtx']> | undefined;

export type Codec = 'qcow2-deflate' | 'zstd' | 'zlib';

export function compressUnit(codec: Codec, data: Uint8Array): Uint8Array {
  switch (codec) {
    case 'qcow2-deflate':
      return deflateRawSync(data, { level: constants.Z_DEFAULT_COMPRESSION, windowBits: 12, memLevel: 9 });
    case 'zlib':
      return deflateSync(data);
    case 'zstd': {
      const out = new Uint8Array(zstd.compressBound(data.length));
      return out.subarray(0, compressZstdInto(out, data));
    }
  }
}

/** One zstd frame (ZSTD_compress2, default parameters, content size recorded) into `dst`; returns its length. */
function compressZstdInto(dst: Uint8Array, data: Uint8Array): number {
  zstdContext ??= new zstd.CCtx();
  return zstdContext.compress2(dst, data);
}

export interface CompressRequest {
  id: number;
  codec: Codec;
  /** The chunk holding every unit (shared with the caller, or cloned when not shared). */
  data: Uint8Array;
  /** [start, length] of each unit in `data`; a unit shorter than `unitSize` is zero-padded. */
  units: Array<[number, number]>;
  unitSize: number;
  /** Where the outputs go, back to back (a shared buffer the caller recycles). */
  out: Uint8Array;
}

export interface CompressReply {
  id: number;
  /** Length of each unit's output in `out`, in order. */
  lengths: number[];
  /** Set when the request failed (e.g. an output did not fit). */
  error?: string;
}

/** Compresses every unit of a request into `req.out`, back to back. */
export function compressRequest(req: CompressRequest): CompressReply {
  let padded: Uint8Array | undefined;
  const lengths: number[] = [];
  let at = 0;
  for (const [start, length] of req.units) {
    let unit = req.data.subarray(start, start + length);
    if (length < req.unitSize) {
      padded ??= new Uint8Array(req.unitSize);
      padded.fill(0);
      padded.set(unit);
      unit = padded;
    }
    const room = req.out.subarray(at);
    let n: number;
    if (req.codec === 'zstd') {
      n = compressZstdInto(room, unit); // straight into the shared buffer: no per-unit garbage
    } else {
      const c = compressUnit(req.codec, unit);
      if (c.length > room.length) throw new Error(`compressed unit of ${c.length} bytes exceeds its ${room.length}-byte slot`);
      room.set(c);
      n = c.length;
    }
    lengths.push(n);
    at += n;
  }
  return { id: req.id, lengths };
}

parentPort?.on('message', (req: CompressRequest) => {
  let reply: CompressReply;
  try {
    reply = compressRequest(req);
  } catch (e) {
    reply = { id: req.id, lengths: [], error: e instanceof Error ? e.message : String(e) };
  }
  parentPort!.postMessage(reply);
});
