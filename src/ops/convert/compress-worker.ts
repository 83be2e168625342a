/**
 * Compression worker: receives batches of units and returns each one compressed with the
 * target's codec, exactly as QEMU compresses them (qcow2 zlib: raw deflate, window 2^12,
 * default level, memLevel 9; zstd: one frame at the default level; vmdk: a zlib stream).
 */
import { createRequire } from 'node:module';
import { parentPort } from 'node:worker_threads';
import { constants, deflateRawSync, deflateSync } from 'node:zlib';

interface ZstdSimple {
  compress(data: Uint8Array, parameters?: { compressionLevel?: number }): Buffer;
}
const zstd = createRequire(import.meta.url)('zstd-napi') as ZstdSimple;

export type Codec = 'qcow2-deflate' | 'zstd' | 'zlib';

export function compressUnit(codec: Codec, data: Uint8Array): Uint8Array {
  switch (codec) {
    case 'qcow2-deflate':
      return deflateRawSync(data, { level: constants.Z_DEFAULT_COMPRESSION, windowBits: 12, memLevel: 9 });
    case 'zlib':
      return deflateSync(data);
    case 'zstd':
      return zstd.compress(data);
  }
}

parentPort?.on('message', (msg: { id: number; codec: Codec; units: Uint8Array[] }) => {
  const out = msg.units.map((u) => compressUnit(msg.codec, u));
  parentPort!.postMessage({ id: msg.id, out }, out.map((b) => b.buffer as ArrayBuffer).filter((b, i, all) => all.indexOf(b) === i));
});
