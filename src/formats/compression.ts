/**
 * Decoding of compressed units (qcow2 compressed clusters, vmdk streamOptimized grains) with the
 * output bounded by the unit size, so a hostile stream can never make us allocate or loop beyond
 * one cluster/grain. A unit must decode to exactly `unitLength` bytes (QEMU treats a short
 * result as an I/O error); trailing input after the stream end is ignored, as QEMU does (it
 * reads compressed data rounded to whole sectors).
 */
import { createRequire } from 'node:module';
import { constants, inflateRawSync, inflateSync } from 'node:zlib';
import { VmimgError } from '../util/errors.js';
import type { CompressionCodec } from './image.js';

interface ZstdDCtx {
  decompressStream(dst: Uint8Array, src: Uint8Array): [number, number, number];
  reset(directive: number): void;
}
interface ZstdBinding {
  DCtx: new () => ZstdDCtx;
  ResetDirective: { sessionOnly: number };
}
/** The native zstd binding, loaded on first use (it costs ~17 ms of CLI start-up otherwise). */
let zstdBinding: ZstdBinding | undefined;
const zstd = (): ZstdBinding => (zstdBinding ??= createRequire(import.meta.url)('zstd-napi/binding') as ZstdBinding);

/** Largest compressed unit we decode (qcow2 clusters are ≤ 2 MiB, vmdk grains ≤ 1 GiB by spec but ≤ 2 MiB in practice). */
export const MAX_UNIT = 64 * 1024 * 1024;

export function decodeUnit(codec: CompressionCodec, input: Uint8Array, unitLength: number, where: string): Uint8Array {
  if (!Number.isSafeInteger(unitLength) || unitLength <= 0 || unitLength > MAX_UNIT) {
    throw new VmimgError('CORRUPT_IMAGE', `${where}: compressed unit size ${unitLength} is out of range`, { unitLength });
  }
  let out: Uint8Array;
  try {
    out = codec === 'zstd' ? zstdDecode(input, unitLength) : zlibDecode(codec, input, unitLength);
  } catch (e) {
    if (e instanceof VmimgError) throw e;
    throw new VmimgError('CORRUPT_IMAGE', `${where}: compressed data does not decode (${codec}): ${(e as Error).message}`, { codec }, { cause: e });
  }
  if (out.length !== unitLength) {
    throw new VmimgError('CORRUPT_IMAGE', `${where}: compressed data decodes to ${out.length} bytes, expected ${unitLength}`, { codec, got: out.length, expected: unitLength });
  }
  return out;
}

function zlibDecode(codec: 'qcow2-deflate' | 'zlib', input: Uint8Array, unitLength: number): Uint8Array {
  const opts = { maxOutputLength: unitLength, finishFlush: constants.Z_SYNC_FLUSH };
  return codec === 'qcow2-deflate' ? inflateRawSync(input, opts) : inflateSync(input, opts);
}

let dctx: ZstdDCtx | undefined;

function zstdDecode(input: Uint8Array, unitLength: number): Uint8Array {
  dctx ??= new (zstd().DCtx)();
  dctx.reset(zstd().ResetDirective.sessionOnly);
  const out = new Uint8Array(unitLength);
  let produced = 0;
  let consumed = 0;
  // Each call makes progress or the input is exhausted; bounded by input + output size.
  for (let guard = 0; produced < unitLength && guard <= input.length + unitLength; guard++) {
    const [, dstProduced, srcConsumed] = dctx.decompressStream(out.subarray(produced), input.subarray(consumed));
    produced += dstProduced;
    consumed += srcConsumed;
    if (dstProduced === 0 && srcConsumed === 0) break;
  }
  return out.subarray(0, produced);
}
