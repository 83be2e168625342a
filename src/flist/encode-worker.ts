/**
 * Block encoding worker (codec.ts encodeBlock off the main thread): receives plaintext blocks
 * (their buffers transferred), replies with id, key and the stored bytes (transferred back).
 */
import { parentPort } from 'node:worker_threads';
import { encodeBlock } from './codec.js';
import { initHash } from './hash.js';

export interface EncodeRequest {
  seq: number;
  plain: Uint8Array;
}

export type EncodeReply = { seq: number; id: Uint8Array; key: Uint8Array; data: Uint8Array } | { seq: number; error: string };

const ready = initHash();

parentPort?.on('message', (m: EncodeRequest) => {
  ready.then(
    () => {
      try {
        const b = encodeBlock(m.plain);
        const data = new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength);
        const transfer = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? [data.buffer as ArrayBuffer] : [];
        parentPort!.postMessage({ seq: m.seq, id: new Uint8Array(b.id), key: new Uint8Array(b.key), data } satisfies EncodeReply, transfer);
      } catch (e) {
        parentPort!.postMessage({ seq: m.seq, error: (e as Error).message } satisfies EncodeReply);
      }
    },
    (e: unknown) => parentPort!.postMessage({ seq: m.seq, error: `hash init failed: ${(e as Error).message}` } satisfies EncodeReply),
  );
});
