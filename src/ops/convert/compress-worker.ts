/**
 * Compression worker: receives batches of units and returns each one compressed with the
 * target's codec, exactly as QEMU compresses them (qcow2 zlib: raw deflate, window 2^12,
 * default level, memLevel 9; zstd: one frame at the default level; vmdk: a zlib stream).
 */
import { createRequire } from 'node:module';
import { parentPort } from 'node:worker_threads';
import { constants, deflateRawSync, deflateSync } from 'node:zlib';

interface ZstdCompressor {
  compress(data: Uint8Array): Buffer;
}
const zstd = createRequire(import.meta.url)('zstd-napi') as { Compressor: new () => ZstdCompressor };
/** One compression context per worker, reused for every unit (QEMU's default parameters). */
let zstdContext: ZstdCompressor | undefined;

export type Codec = 'qcow2-deflate' | 'zstd' | 'zlib';

export function compressUnit(codec: Codec, data: Uint8Array): Uint8Array {
  switch (codec) {
    case 'qcow2-deflate':
      return deflateRawSync(data, { level: constants.Z_DEFAULT_COMPRESSION, windowBits: 12, memLevel: 9 });
    case 'zlib':
      return deflateSync(data);
    case 'zstd':
      zstdContext ??= new zstd.Compressor();
      return zstdContext.compress(data);
  }
}

export interface CompressRequest {
  id: number;
  codec: Codec;
  /** The chunk holding every unit (cloned once per request). */
  data: Uint8Array;
  /** [start, length] of each unit in `data`; a unit shorter than `unitSize` is zero-padded. */
  units: Array<[number, number]>;
  unitSize: number;
}

export interface CompressReply {
  id: number;
  /** All outputs back to back (transferred). */
  out: Uint8Array;
  lengths: number[];
}

/** Compresses every unit of a request; outputs are concatenated into one fresh buffer. */
export function compressRequest(req: CompressRequest): CompressReply {
  const outputs = req.units.map(([start, length]) => {
    let unit = req.data.subarray(start, start + length);
    if (length < req.unitSize) {
      const padded = new Uint8Array(req.unitSize);
      padded.set(unit);
      unit = padded;
    }
    return compressUnit(req.codec, unit);
  });
  const out = new Uint8Array(outputs.reduce((n, o) => n + o.length, 0));
  let at = 0;
  for (const o of outputs) {
    out.set(o, at);
    at += o.length;
  }
  return { id: req.id, out, lengths: outputs.map((o) => o.length) };
}

parentPort?.on('message', (req: CompressRequest) => {
  const reply = compressRequest(req);
  parentPort!.postMessage(reply, [reply.out.buffer as ArrayBuffer]);
});
