/**
 * Writing a cpio newc archive file, optionally gzip-compressed (what kernels take as an
 * initramfs), atomically: a failed build leaves nothing. gzip output is deterministic (zlib's
 * header has no time stamp or name).
 */
import { Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { createAtomically } from '../../storage/atomic.js';
import type { Tree } from '../../tree/types.js';
import { newcArchive } from './newc.js';

export interface CpioResult {
  output: string;
  entries: number;
  bytes: number;
  compressed: boolean;
}

export async function buildCpio(tree: Tree, output: string, options: { gzip?: boolean } = {}): Promise<CpioResult> {
  const bytes = await createAtomically(output, async (storage) => {
    let off = 0;
    const source = options.gzip ? Readable.from(newcArchive(tree)).pipe(createGzip({ level: 9 })) : newcArchive(tree);
    for await (const chunk of source as AsyncIterable<Uint8Array>) {
      await storage.write(off, chunk);
      off += chunk.length;
    }
    return off;
  });
  return { output, entries: tree.entries.length - 1, bytes, compressed: options.gzip === true };
}
