/**
 * Block encoding worker (codec.ts encodeBlock off the main thread). A request transfers the
 * plaintext's ArrayBuffer and, optionally, an output ArrayBuffer; the reply transfers both back:
 * `plain` (the buffer, for the caller to reuse) and `data`, the stored bytes — a view at the
 * start of `out` when one was given and large enough, else a buffer of its own.
 */
import { parentPort } from 'node:worker_threads';
import { encodeBlock } from './codec.js';
import { initHash } from './hash.js';

export interface EncodeRequest {
  seq: number;
  plain: Uint8Array;
  out?: ArrayBuffer;
}

export type EncodeReply = { seq: number; id: Uint8Array; key: Uint8Array; plain: ArrayBuffer; data: Uint8Array } | { seq: number; error: string };

const ready = initHash();

parentPort?.on('message', (m: EncodeRequest) => {
  ready.then(
    () => {
      try {
        const b = encodeBlock(m.plain, m.out ? new Uint8Array(m.out) : undefined);
        let data = new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength);
        const own = data.buffer === m.out || (data.byteOffset === 0 && data.byteLength === data.buffer.byteLength);
        if (!own) data = new Uint8Array(data); // a view of Node's shared Buffer pool: copied out
        const plain = m.plain.buffer as ArrayBuffer;
        parentPort!.postMessage({ seq: m.seq, id: new Uint8Array(b.id), key: new Uint8Array(b.key), plain, data } satisfies EncodeReply, [plain, data.buffer as ArrayBuffer]);
      } catch (e) {
        parentPort!.postMessage({ seq: m.seq, error: (e as Error).message } satisfies EncodeReply);
      }
    },
    (e: unknown) => parentPort!.postMessage({ seq: m.seq, error: `hash init failed: ${(e as Error).message}` } satisfies EncodeReply),
  );
});
