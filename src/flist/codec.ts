/**
 * rfs block encoding (../shared/reference/rfs-flist.md "Block encoding"; rfs src/store/bs.rs):
 *   key = H(plain)                         H = BLAKE2b-256 (hash.ts)
 *   C   = snappy raw (block format, not framed) compression of plain
 *   E   = AES-256-GCM(key, nonce = key[0..12]) of C, ciphertext then the 16-byte tag, no AAD
 *   id  = H(E)                             the store keeps E under id
 * Deterministic on purpose: identical plaintext gives an identical blob, so stores deduplicate.
 *
 * Decoding checks everything it can before trusting a byte: id = H(E) (BLAKE2b-256, or SHA-256
 * for blobs of early rfs revisions), the GCM tag, the snappy length prefix against a cap, and
 * H(plain) = key. Any failure is BLOB_CORRUPT naming the blob's hex id.
 */
import { createCipheriv, createDecipheriv, createHash } from 'node:crypto';
import snappy from 'snappy';
import { VmimgError } from '../util/errors.js';
import { blake2b256 } from './hash.js';

/** Plaintext block size of files packed by vmimg (rfs's BLOB_SIZE). Readers accept any size. */
export const BLOCK_SIZE = 512 * 1024;
/** Largest plaintext block a reader accepts (rfs never writes more than 512 KiB). */
export const MAX_PLAIN_BLOCK = 16 * 1024 * 1024;
export const ID_LEN = 32;
export const KEY_LEN = 32;
const TAG_LEN = 16;

export interface EncodedBlock {
  id: Buffer;
  key: Buffer;
  /** The stored bytes E. */
  data: Buffer;
}

/**
 * Most bytes a plaintext of `n` bytes can be stored as: snappy's bound (MaxCompressedLength in
 * snappy.cc: 32 + n + n/6), AES-GCM adds nothing but the tag.
 */
export function maxStoredLength(n: number): number {
  return 32 + n + Math.floor(n / 6) + TAG_LEN;
}

/**
 * Encodes `plain`. With `out` of at least maxStoredLength(plain.length) bytes, the stored bytes
 * are written at its start and `data` is a view of it; otherwise `data` is a buffer of its own.
 */
export function encodeBlock(plain: Uint8Array, out?: Uint8Array): EncodedBlock {
  const key = blake2b256(plain);
  const compressed = snappy.compressSync(plain, { copyOutputData: true });
  const cipher = createCipheriv('aes-256-gcm', key, key.subarray(0, 12));
  const body = cipher.update(compressed);
  const tail = cipher.final(); // empty for GCM (a stream mode); kept so no output byte is dropped
  const tag = cipher.getAuthTag();
  let data: Buffer;
  const length = body.length + tail.length + tag.length;
  if (out && out.length >= length) {
    data = Buffer.from(out.buffer, out.byteOffset, length);
    data.set(body, 0);
    data.set(tail, body.length);
    data.set(tag, body.length + tail.length);
  } else data = Buffer.concat([body, tail, tag]);
  return { id: blake2b256(data), key, data };
}

function hex(id: Uint8Array): string {
  return Buffer.from(id).toString('hex');
}

function corrupt(id: Uint8Array, why: string): VmimgError {
  return new VmimgError('BLOB_CORRUPT', `blob ${hex(id)} is corrupt: ${why}`, { id: hex(id) });
}

/** The uncompressed length a snappy raw block declares (its varint prefix). */
export function snappyLength(c: Uint8Array): number | undefined {
  let n = 0;
  for (let i = 0, shift = 0; i < 5 && i < c.length; i++, shift += 7) {
    n += (c[i]! & 0x7f) * 2 ** shift;
    if ((c[i]! & 0x80) === 0) return n;
  }
  return undefined;
}

/** Which hash a block uses ('blake2b' for rfs today, 'sha256' for early revisions). */
export type BlockHash = 'blake2b' | 'sha256';

const sha256 = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

/** Decodes stored bytes `data` of the block (id, key); returns the plaintext. */
export function decodeBlock(data: Uint8Array, id: Uint8Array, key: Uint8Array): Buffer {
  if (id.length !== ID_LEN || key.length !== KEY_LEN) throw corrupt(id, `id and key must be ${ID_LEN} bytes (got ${id.length} and ${key.length})`);
  let hash: BlockHash;
  if (blake2b256(data).equals(id)) hash = 'blake2b';
  else if (sha256(data).equals(id)) hash = 'sha256';
  else throw corrupt(id, 'its bytes do not hash to its id');
  if (data.length < TAG_LEN) throw corrupt(id, `shorter than the ${TAG_LEN}-byte GCM tag`);
  let compressed: Buffer;
  try {
    const d = createDecipheriv('aes-256-gcm', key, key.subarray(0, 12));
    d.setAuthTag(data.subarray(data.length - TAG_LEN));
    compressed = Buffer.concat([d.update(data.subarray(0, data.length - TAG_LEN)), d.final()]);
  } catch {
    throw corrupt(id, 'AES-GCM authentication failed (wrong key?)');
  }
  const length = snappyLength(compressed);
  if (length === undefined || length > MAX_PLAIN_BLOCK) throw corrupt(id, `snappy length ${length ?? '(unreadable)'} is beyond ${MAX_PLAIN_BLOCK}`);
  let plain: Buffer;
  try {
    plain = snappy.uncompressSync(compressed, { copyOutputData: true }) as Buffer;
  } catch (e) {
    throw corrupt(id, `snappy data is invalid (${(e as Error).message})`);
  }
  if (plain.length !== length) throw corrupt(id, `snappy gave ${plain.length} bytes, its header says ${length}`);
  const check = hash === 'blake2b' ? blake2b256(plain) : sha256(plain);
  if (!check.equals(Buffer.from(key))) throw corrupt(id, 'the plaintext does not hash to its key');
  return plain;
}
