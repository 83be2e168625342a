/**
 * Compression of tar inputs, recognised by magic bytes (RFC 1952 gzip: 1f 8b; RFC 8878 zstd frame:
 * 28 b5 2f fd), never by file name. Decompression streams through node:zlib or zstd-napi's
 * DecompressStream, so memory stays bounded by their windows.
 */
import { createRequire } from 'node:module';
import { createGunzip } from 'node:zlib';
import type { Transform } from 'node:stream';

export type Compression = 'none' | 'gzip' | 'zstd';

export function detectCompression(head: Uint8Array): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  return 'none';
}

interface ZstdStreams {
  DecompressStream: new () => Transform;
}

/** A streaming decompressor for `compression` (undefined for 'none'). */
export function decompressor(compression: Compression): Transform | undefined {
  switch (compression) {
    case 'none':
      return undefined;
    case 'gzip':
      return createGunzip();
    case 'zstd':
      // zstd-napi's binding is loaded only when a .tar.zst is actually read (CLI start-up cost).
      return new (createRequire(import.meta.url)('zstd-napi') as ZstdStreams).DecompressStream();
  }
}
