/**
 * The rfs block encoding, checked against the rules of ../shared/reference/rfs-flist.md written
 * out here with Node's crypto, hash-wasm and snappy directly — independent of src/flist/codec.ts:
 * blobs vmimg writes decode by the rules, and blobs made by the rules decode in vmimg.
 */
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { blake2b } from 'hash-wasm';
import snappy from 'snappy';
import { decodeBlock, encodeBlock, snappyLength } from '../../src/flist/codec.js';
import { initHash } from '../../src/flist/hash.js';
import { isVmimgError } from '../../src/util/errors.js';

/** BLAKE2b with a 32-byte digest (the parameter block's digest length), by the rules. */
async function h(data: Uint8Array): Promise<Buffer> {
  return Buffer.from(await blake2b(data, 256), 'hex');
}

/** Decoding by the reference's steps: AES-256-GCM(key, nonce key[0..12]) then raw snappy. */
function decodeByRules(e: Buffer, key: Buffer): Buffer {
  const d = createDecipheriv('aes-256-gcm', key, key.subarray(0, 12));
  d.setAuthTag(e.subarray(e.length - 16));
  const compressed = Buffer.concat([d.update(e.subarray(0, e.length - 16)), d.final()]);
  return snappy.uncompressSync(compressed, { copyOutputData: true }) as Buffer;
}

async function encodeByRules(plain: Buffer, hash: (b: Uint8Array) => Promise<Buffer> = h): Promise<{ id: Buffer; key: Buffer; data: Buffer }> {
  const key = await hash(plain);
  const c = createCipheriv('aes-256-gcm', key, key.subarray(0, 12));
  const data = Buffer.concat([c.update(snappy.compressSync(plain, { copyOutputData: true })), c.final(), c.getAuthTag()]);
  return { id: await hash(data), key, data };
}

test('BLAKE2b-256 is the 32-byte-digest variant, not truncated BLAKE2b-512', async () => {
  await initHash();
  // RFC 7693 Appendix-style check value for BLAKE2b-256("abc").
  assert.equal((await h(Buffer.from('abc'))).toString('hex'), 'bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319');
  const b512 = createHash('blake2b512').update('abc').digest().subarray(0, 32);
  assert.notEqual((await h(Buffer.from('abc'))).toString('hex'), b512.toString('hex'));
});

test('blobs written by vmimg decode by the reference rules; blobs made by the rules decode in vmimg', async () => {
  await initHash();
  const samples = [Buffer.alloc(0), Buffer.from('hello flist'), randomBytes(512 * 1024), Buffer.alloc(512 * 1024, 0x41), randomBytes(100_001)];
  for (const plain of samples) {
    const ours = encodeBlock(plain);
    assert.deepEqual(ours.key, await h(plain), 'key = H(plain)');
    assert.deepEqual(ours.id, await h(ours.data), 'id = H(E)');
    assert.deepEqual(decodeByRules(ours.data, ours.key), plain);
    const theirs = await encodeByRules(plain);
    assert.deepEqual(theirs.data, ours.data, 'deterministic: the same bytes both ways');
    assert.deepEqual(decodeBlock(theirs.data, theirs.id, theirs.key), plain);
  }
  // Early rfs revisions used SHA-256 for key and id: still readable.
  const plain = Buffer.from('old style block');
  const sha = await encodeByRules(plain, async (b) => createHash('sha256').update(b).digest());
  assert.deepEqual(decodeBlock(sha.data, sha.id, sha.key), plain);
});

test('decoding refuses damaged blobs with BLOB_CORRUPT naming the id', async () => {
  await initHash();
  const plain = randomBytes(4096);
  const b = encodeBlock(plain);
  const corrupt = (why: RegExp) => (e: unknown) => isVmimgError(e) && e.code === 'BLOB_CORRUPT' && e.message.includes(b.id.toString('hex')) && why.test(e.message);
  const flipped = Buffer.from(b.data);
  flipped[10]! ^= 1;
  assert.throws(() => decodeBlock(flipped, b.id, b.key), corrupt(/do not hash to its id/));
  const wrongKey = Buffer.from(b.key);
  wrongKey[0]! ^= 1;
  assert.throws(() => decodeBlock(b.data, b.id, wrongKey), corrupt(/AES-GCM authentication failed/));
  // A validly encrypted blob whose snappy header claims 2 GiB: refused before allocating.
  const key = await h(Buffer.from('x'));
  const bogus = Buffer.from([0x80, 0x80, 0x80, 0x80, 0x08, 0x00]);
  const c = createCipheriv('aes-256-gcm', key, key.subarray(0, 12));
  const data = Buffer.concat([c.update(bogus), c.final(), c.getAuthTag()]);
  assert.equal(snappyLength(bogus), 2 ** 31);
  const bogusId = await h(data);
  assert.throws(() => decodeBlock(data, bogusId, key), (e: unknown) => isVmimgError(e) && e.code === 'BLOB_CORRUPT' && /snappy length 2147483648/.test(e.message));
  assert.throws(() => decodeBlock(b.data, b.id.subarray(0, 31), b.key), /must be 32 bytes/);
});
