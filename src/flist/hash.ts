/**
 * The hash of rfs blobs: BLAKE2b with a 32-byte digest set in the parameter block (RFC 7693;
 * rfs's blake2b_simd `hash_length(32)`), which is not a truncated BLAKE2b-512. Node's crypto has
 * only BLAKE2b-512, so hash-wasm provides it. `initHash()` must have resolved (once per thread)
 * before `blake2b256` is called; after that hashing is synchronous.
 */
import { createBLAKE2b, type IHasher } from 'hash-wasm';
import { VmimgError } from '../util/errors.js';

let hasher: IHasher | undefined;

export async function initHash(): Promise<void> {
  hasher ??= await createBLAKE2b(256);
}

export function blake2b256(data: Uint8Array): Buffer {
  if (!hasher) throw new VmimgError('INTERNAL', 'blake2b256 called before initHash()', {});
  hasher.init();
  hasher.update(data);
  return Buffer.from(hasher.digest('binary'));
}
