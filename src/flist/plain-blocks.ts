/**
 * A file's plaintext blocks for pack: BLOCK_SIZE bytes each (the last one shorter), each a view
 * at offset 0 of an ArrayBuffer taken from a BufferPool, so packing reuses a handful of warm
 * buffers instead of touching fresh memory for every block (on this project's VMs fresh memory
 * costs several times what the hashing of it does).
 *
 * Files with a host path (ContentSource.fsPath) are read straight into the pooled buffers, opened
 * as src/tree/content.ts opens them (O_NOFOLLOW | O_NONBLOCK, still a regular file): small ones
 * synchronously as content.ts reads them (readSmallFileInto), larger ones several blocks per
 * call through the thread pool (synchronous reads of them saved no measurable CPU and cost wall
 * time: the main thread also feeds the workers and writes the blobs). Other content (tar
 * members, memory) is re-chunked from its stream. Either way the blocks hold exactly `e.size`
 * bytes, or SOURCE_CHANGED is thrown (the file shrank, grew or was replaced since the walk).
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { readSmallFileInto, SMALL_FILE } from '../tree/content.js';
import { showPath } from '../tree/path.js';
import type { TreeEntry } from '../tree/types.js';
import { fromSystemError, VmimgError } from '../util/errors.js';
import { BLOCK_SIZE } from './codec.js';

/** ArrayBuffers of one fixed size, handed out and given back (any number; the pool keeps them all). */
export class BufferPool {
  readonly #free: ArrayBuffer[] = [];

  constructor(readonly size: number) {}

  take(): ArrayBuffer {
    return this.#free.pop() ?? new ArrayBuffer(this.size);
  }

  /** Returns a buffer of this pool (one that is not, or was detached by a transfer, is dropped). */
  give(b: ArrayBuffer): void {
    if (b.byteLength === this.size) this.#free.push(b);
  }
}

/**
 * Blocks read by one readv call: 2 MiB per thread-pool round trip. One block per call measured
 * ~0.4 CPU-s and ~0.4 s wall more per GiB into a new store, where the blob writes share the pool.
 */
const READ_BATCH = 4;

/** As src/tree/content.ts opens source files: no symlink followed, no FIFO waited on. */
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/**
 * The blocks of regular file `e` (size > 0). Each yielded view is the caller's to keep or give
 * back to `pool`; the generator never touches it again.
 */
export async function* plainBlocks(e: TreeEntry, pool: BufferPool): AsyncGenerator<Uint8Array> {
  const fsPath = e.content!.fsPath;
  if (fsPath === undefined) yield* streamBlocks(e, pool);
  else if (e.size <= Math.min(SMALL_FILE, BLOCK_SIZE)) {
    const b = pool.take();
    readSmallFileInto(fsPath, typeof fsPath === 'string' ? fsPath : showPath(fsPath), e.size, new Uint8Array(b));
    yield new Uint8Array(b, 0, e.size);
  } else yield* fileBlocks(fsPath, e.size, pool);
}

async function* fileBlocks(fsPath: string | Buffer, size: number, pool: BufferPool): AsyncGenerator<Uint8Array> {
  const path = typeof fsPath === 'string' ? fsPath : showPath(fsPath);
  let handle;
  try {
    handle = await open(fsPath, OPEN_FLAGS);
  } catch (e) {
    throw fromSystemError(e, path, 'open');
  }
  try {
    if (!(await handle.stat()).isFile()) throw new VmimgError('SOURCE_CHANGED', `'${path}' is no longer a regular file`, { path });
    for (let position = 0; position < size; ) {
      // Up to READ_BATCH blocks per call (one thread-pool round trip), short reads completed.
      const blocks: Uint8Array[] = [];
      let want = 0;
      while (blocks.length < READ_BATCH && position + want < size) {
        const length = Math.min(BLOCK_SIZE, size - position - want);
        blocks.push(new Uint8Array(pool.take(), 0, length));
        want += length;
      }
      const got = (await handle.readv(blocks, position)).bytesRead;
      for (let i = 0, at = position; i < blocks.length; at += blocks[i]!.length, i++) {
        const block = blocks[i]!;
        for (let done = Math.min(block.length, Math.max(0, got - (at - position))); done < block.length; ) {
          const { bytesRead } = await handle.read(block, done, block.length - done, at + done);
          if (bytesRead === 0) throw new VmimgError('SOURCE_CHANGED', `'${path}' ended after ${at + done} of ${size} bytes (changed while being read?)`, { path, size });
          done += bytesRead;
        }
      }
      position += want;
      yield* blocks;
    }
    if ((await handle.read(new Uint8Array(1), 0, 1, size)).bytesRead !== 0) throw new VmimgError('SOURCE_CHANGED', `'${path}' grew past ${size} bytes while being read`, { path, size });
  } catch (e) {
    throw e instanceof VmimgError ? e : fromSystemError(e, path, 'read');
  } finally {
    await handle.close();
  }
}

/** Re-chunks `e`'s content stream into pooled blocks. */
async function* streamBlocks(e: TreeEntry, pool: BufferPool): AsyncGenerator<Uint8Array> {
  let block: Uint8Array | undefined;
  let fill = 0;
  let total = 0;
  for await (const chunk of e.content!.stream()) {
    total += chunk.length;
    if (total > e.size) break;
    for (let at = 0; at < chunk.length; ) {
      block ??= new Uint8Array(pool.take(), 0, Math.min(BLOCK_SIZE, e.size - (total - chunk.length + at)));
      const n = Math.min(block.length - fill, chunk.length - at);
      block.set(chunk.subarray(at, at + n), fill);
      fill += n;
      at += n;
      if (fill === block.length) {
        yield block;
        block = undefined;
        fill = 0;
      }
    }
  }
  if (total !== e.size) throw new VmimgError('SOURCE_CHANGED', `'${showPath(e.path)}' did not have the ${e.size} bytes it had when the tree was read`, { path: showPath(e.path) });
}
