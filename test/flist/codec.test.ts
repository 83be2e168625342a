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

/**
 * The raw snappy block format (google/snappy format_description.txt), decoded by hand so the
 * test does not trust the snappy package to be the raw format rather than the framing format:
 * a varint uncompressed length, then elements whose tag's low two bits say literal (00), copy
 * with a 1-byte offset (01: length 4..11 from bits 2-4, offset high bits 5-7), 2-byte offset (10)
 * or 4-byte offset (11), lengths 1..64 in bits 2-7 for the last two.
 */
function snappyRawDecode(c: Buffer): Buffer {
  let length = 0;
  let at = 0;
  for (let shift = 0; ; shift += 7) {
    const b = c[at++]!;
    length += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) break;
  }
  const out = Buffer.alloc(length);
  let o = 0;
  while (at < c.length) {
    const tag = c[at++]!;
    if ((tag & 3) === 0) {
      let n = tag >> 2;
      if (n >= 60) {
        const bytes = n - 59;
        n = c.readUIntLE(at, bytes);
        at += bytes;
      }
      n += 1;
      c.copy(out, o, at, at + n);
      at += n;
      o += n;
      continue;
    }
    let n: number;
    let offset: number;
    if ((tag & 3) === 1) {
      n = ((tag >> 2) & 7) + 4;
      offset = ((tag >> 5) << 8) | c[at++]!;
    } else {
      n = (tag >> 2) + 1;
      const bytes = (tag & 3) === 2 ? 2 : 4;
      offset = c.readUIntLE(at, bytes);
      at += bytes;
    }
    assert.ok(offset > 0 && offset <= o, 'copy offset inside the output');
    for (let i = 0; i < n; i++, o++) out[o] = out[o - offset]!;
  }
  assert.equal(o, length, 'raw snappy: the elements fill exactly the declared length');
  return out;
}

/** Decoding by the reference's steps: AES-256-GCM(key, nonce key[0..12]) then raw snappy. */
function decodeByRules(e: Buffer, key: Buffer): Buffer {
  const d = createDecipheriv('aes-256-gcm', key, key.subarray(0, 12));
  d.setAuthTag(e.subarray(e.length - 16));
  const compressed = Buffer.concat([d.update(e.subarray(0, e.length - 16)), d.final()]);
  assert.notEqual(compressed.subarray(0, 10).toString('latin1'), '\xff\x06\x00\x00sNaPpY', 'not the framing format');
  const plain = snappyRawDecode(compressed);
  assert.deepEqual(plain, snappy.uncompressSync(compressed, { copyOutputData: true }) as Buffer);
  return plain;
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
  const text = Buffer.from('the quick brown fox jumps over the lazy dog; '.repeat(12_000));
  const samples = [Buffer.alloc(0), Buffer.from('hello flist'), randomBytes(512 * 1024), Buffer.alloc(512 * 1024, 0x41), randomBytes(100_001), text.subarray(0, 512 * 1024)];
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
