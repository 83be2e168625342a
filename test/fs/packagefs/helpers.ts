/** Helpers for packagefs tests: trees in memory, images in memory, re-sealing mutated metadata. */
import { createHash } from 'node:crypto';
import { bufferContent } from '../../../src/tree/content.js';
import { treeFromLayers } from '../../../src/tree/index.js';
import type { RawEntry, Tree } from '../../../src/tree/types.js';
import { buildPackagefsInto, type BuildOptions } from '../../../src/fs/packagefs/build.js';
import { HASH_LENGTH, META_HASH_OFFSET, metadataHash } from '../../../src/fs/packagefs/format.js';
import { MemoryStorage } from '../../../src/storage/memory.js';

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

type Spec = { path: string; type?: 'file' | 'dir' | 'symlink' | 'hardlink' | 'fifo'; data?: string | Buffer; target?: string; mode?: number };

/** A Tree from a compact description (content in memory). */
export function memoryTree(specs: Spec[]): Tree {
  const raw: RawEntry[] = specs.map((s) => {
    const type = s.type ?? 'file';
    const data = Buffer.from(s.data ?? '');
    const e: RawEntry = { path: Buffer.from(s.path), type, mode: s.mode ?? (type === 'dir' ? 0o755 : 0o644), uid: 1000, gid: 1000, mtimeNs: 5n, size: 0, xattrs: new Map() };
    if (type === 'file') Object.assign(e, { size: data.length, content: bufferContent(data) });
    if (type === 'symlink') Object.assign(e, { symlinkTarget: Buffer.from(s.target!), size: Buffer.byteLength(s.target!) });
    if (type === 'hardlink') e.linkTarget = Buffer.from(s.target!);
    return e;
  });
  return treeFromLayers([raw], { sourceDateEpoch: null });
}

/** Builds an image of `tree` in memory. */
export async function buildInMemory(tree: Tree, options: BuildOptions = {}): Promise<Buffer> {
  const storage = new MemoryStorage();
  await buildPackagefsInto(tree, storage, { mtime: 1_700_000_000, ...options });
  return Buffer.from(storage.contents());
}

/** Recomputes the metadata hash of a (mutated) image so deeper validation is reached. */
export function reseal(image: Buffer): Buffer {
  const dataOffset = Number(image.readBigUInt64LE(56));
  const end = Math.min(image.length, Math.max(512, dataOffset));
  const hash = metadataHash([image.subarray(0, end)]);
  const out = Buffer.from(image);
  hash.copy(out, META_HASH_OFFSET, 0, HASH_LENGTH);
  return out;
}

export const SAMPLE: Spec[] = [
  { path: 'bin', type: 'dir' },
  { path: 'bin/tool', data: 'x'.repeat(1500), mode: 0o4755 },
  { path: 'bin/alias', type: 'hardlink', target: 'bin/tool' },
  { path: 'etc/motd', data: 'hello\n' },
  { path: 'etc/empty', data: '' },
  { path: 'lib', type: 'symlink', target: 'usr/lib' },
  { path: 'usr/lib/big', data: Buffer.alloc(3 * 1024 * 1024 + 5, 0xa5) },
];
