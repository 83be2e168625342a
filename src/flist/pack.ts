/**
 * `flist pack`: a Tree (directory or tarball, src/tree) → an rfs manifest plus blobs in the
 * stores (docs/flist.md "Pack").
 *
 * Rows are written the way rfs's pack.rs walks a directory: the root (ino 1, name '/', parent 0)
 * first; then, directory by directory taken last-in-first-out, each directory's row, its
 * non-directory children's rows (in path order) and its subdirectories queued. Symlink targets go
 * to `extra`; regular files get their blocks (512 KiB plaintext each) in file order. Hard links
 * become regular files sharing the first name's blocks (rfs has no hard links). For a given tree
 * the rows, and so the manifest, are the same on every run.
 *
 * Blocks are read into reused buffers (plain-blocks.ts), encoded on worker threads (encode-pool.ts)
 * with a bounded window, each distinct blob is checked with `has` and uploaded at most once per
 * pack (bounded concurrency); the summary counts blobs new and already present. The manifest
 * appears only when everything succeeded.
 */
import { VmimgError } from '../util/errors.js';
import { FILE_TYPE_BITS, type Tree, type TreeEntry } from '../tree/types.js';
import { pathKey, showPath } from '../tree/path.js';
import { BLOCK_SIZE, maxStoredLength, type EncodedBlock } from './codec.js';
import { EncodePool } from './encode-pool.js';
import { BufferPool, plainBlocks } from './plain-blocks.js';
import { ManifestWriter } from './manifest.js';
import type { Router } from './store/router.js';

export interface PackOptions {
  manifest: string;
  router: Router;
  /** Extra tags (key → value); `version` is set unless given. */
  tags?: ReadonlyMap<string, string>;
  /** Blobs uploaded at once (default 8). */
  uploads?: number;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface PackSummary {
  manifest: string;
  files: number;
  directories: number;
  symlinks: number;
  /** Device nodes, fifos, sockets. */
  special: number;
  /** File bytes packed (hard links counted once). */
  bytes: number;
  /** Block rows written. */
  blocks: number;
  /** Distinct blobs referenced. */
  uniqueBlobs: number;
  /** Distinct blobs uploaded by this pack / found already in the stores. */
  blobsNew: number;
  blobsExisting: number;
  /** blocks / uniqueBlobs (1 = nothing shared). */
  dedupRatio: number;
}

/** The version tag vmimg writes (the manifest format version). */
export const FLIST_VERSION_TAG = '1';

/** Linux's dev_t encoding (glibc makedev) of a major/minor pair. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0xfffn) << 8n) | (mi & 0xffn) | ((mi & ~0xffn) << 12n) | ((ma & ~0xfffn) << 32n);
}

function modeOf(type: Exclude<TreeEntry['type'], 'hardlink'>, e: TreeEntry): number {
  return FILE_TYPE_BITS[type] | e.mode;
}

function seconds(ns: bigint): number {
  const s = ns / 1_000_000_000n - (ns < 0n && ns % 1_000_000_000n !== 0n ? 1n : 0n);
  return Number(s);
}

/** A limit on concurrent async tasks; the first failure is kept and rethrown by wait(). */
class Limiter {
  #running = 0;
  #queue: Array<() => void> = [];
  #all = new Set<Promise<void>>();
  failure: unknown;

  constructor(private readonly limit: number) {}

  async run(task: () => Promise<void>): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    if (this.#running >= this.limit) await new Promise<void>((r) => this.#queue.push(r));
    this.#running++;
    const p = task()
      .catch((e: unknown) => void (this.failure ??= e))
      .finally(() => {
        this.#running--;
        this.#all.delete(p);
        this.#queue.shift()?.();
      });
    this.#all.add(p);
  }

  async wait(): Promise<void> {
    await this.settle();
    if (this.failure !== undefined) throw this.failure;
  }

  /** Waits for every task started so far, failed or not (nothing keeps running after a failure). */
  async settle(): Promise<void> {
    while (this.#all.size > 0) await Promise.allSettled([...this.#all]);
  }
}

export async function packTree(tree: Tree, options: PackOptions): Promise<PackSummary> {
  const entries = tree.entries;
  const children = new Map<string, TreeEntry[]>();
  for (const e of entries) {
    if (e.path.length === 0) continue;
    const slash = e.path.lastIndexOf(0x2f);
    const parent = slash < 0 ? '' : pathKey(e.path.subarray(0, slash));
    (children.get(parent) ?? children.set(parent, []).get(parent)!).push(e);
  }
  // A hard link is recorded as what its group's first member is (rfs stats every name on its
  // own): a regular file sharing the blocks, or another symlink / device node / fifo.
  const byPath = new Map(entries.map((e) => [pathKey(e.path), e]));
  const origin = (e: TreeEntry): TreeEntry => {
    if (e.type !== 'hardlink') return e;
    const first = e.linkTarget !== undefined ? byPath.get(pathKey(e.linkTarget)) : undefined;
    if (!first || first.type === 'hardlink' || first.type === 'dir') throw new VmimgError('INTERNAL', `hard link '${showPath(e.path)}' has no first member in the tree`, { path: showPath(e.path) });
    return first;
  };
  const root = entries.find((e) => e.path.length === 0);
  if (!root || root.type !== 'dir') throw new VmimgError('INTERNAL', 'tree has no root directory', {});

  const writer = ManifestWriter.create(options.manifest);
  const pool = new EncodePool();
  let uploads: Limiter | undefined;
  const summary: PackSummary = { manifest: options.manifest, files: 0, directories: 0, symlinks: 0, special: 0, bytes: 0, blocks: 0, uniqueBlobs: 0, blobsNew: 0, blobsExisting: 0, dedupRatio: 1 };
  try {
    for (const r of options.router.routes) writer.route({ start: r.start, end: r.end, url: r.store.url });
    const tags = new Map(options.tags ?? []);
    if (!tags.has('version')) tags.set('version', FLIST_VERSION_TAG);
    for (const [k, v] of [...tags].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) writer.tag(k, v);

    const row = (e: TreeEntry, parent: number, name: string): number => {
      const o = origin(e);
      const type = o.type as Exclude<TreeEntry['type'], 'hardlink'>;
      const mtime = seconds(e.mtimeNs);
      const size = type === 'file' ? e.size : type === 'symlink' ? o.symlinkTarget!.length : 0;
      const rdev = o.rdev ? makedev(o.rdev.major, o.rdev.minor) : 0n;
      return writer.inode({ parent, name, size, uid: e.uid, gid: e.gid, mode: modeOf(type, e), rdev, ctime: mtime, mtime }, type === 'symlink' ? o.symlinkTarget : undefined);
    };

    // Rows, in rfs's walk order; files collected for the block pass.
    const files: Array<{ ino: number; entry: TreeEntry }> = [];
    const stack: Array<{ entry: TreeEntry; parent: number }> = [{ entry: root, parent: 0 }];
    while (stack.length > 0) {
      const { entry, parent } = stack.pop()!;
      const name = entry.path.length === 0 ? '/' : showName(entry);
      const ino = row(entry, parent, name);
      summary.directories++;
      for (const c of children.get(pathKey(entry.path)) ?? []) {
        if (c.type === 'dir') {
          stack.push({ entry: c, parent: ino });
          continue;
        }
        const cino = row(c, ino, showName(c));
        const type = origin(c).type;
        if (type === 'file') {
          summary.files++;
          files.push({ ino: cino, entry: c });
        } else if (type === 'symlink') summary.symlinks++;
        else summary.special++;
      }
    }

    // Blocks: encode ahead on the workers, record in order, upload each distinct blob once.
    const groups = new Set<number>();
    let total = 0;
    for (const { entry } of files) {
      if (entry.linkGroup !== undefined && groups.has(entry.linkGroup)) continue;
      if (entry.linkGroup !== undefined) groups.add(entry.linkGroup);
      total += entry.size;
    }
    const limiter = new Limiter(options.uploads ?? 8);
    uploads = limiter;
    const seen = new Set<string>();
    // Hard-link groups remember their blocks' ids and keys (never the data) for later names.
    const byGroup = new Map<number, Array<{ id: Buffer; key: Buffer }>>();
    const window: Array<{ ino: number; block: Promise<EncodedBlock>; refs?: Array<{ id: Buffer; key: Buffer }> }> = [];
    // Blocks between read and recorded: eight per worker keep every worker busy while blob
    // writes hold the main thread back (four measured ~1 s slower per GiB into a new store), and
    // bound the pooled buffers to ~1.1 MiB per block.
    const WINDOW = 8 * pool.size;
    // Plaintext buffers come back with each result; output buffers once the blob is stored.
    const plains = new BufferPool(BLOCK_SIZE);
    const outs = new BufferPool(maxStoredLength(BLOCK_SIZE));
    let done = 0;
    const record = async (ino: number, b: { id: Buffer; key: Buffer; data?: Buffer }): Promise<void> => {
      writer.block(ino, b.id, b.key);
      summary.blocks++;
      const hex = b.id.toString('hex');
      const data = b.data;
      if (seen.has(hex)) {
        if (data) outs.give(data.buffer as ArrayBuffer);
        return;
      }
      seen.add(hex);
      if (!data) throw new VmimgError('INTERNAL', `blob ${hex} recorded before its data`, {});
      await limiter.run(async () => {
        const r = await options.router.put(b.id, data);
        if (r.stored > 0) summary.blobsNew++;
        else summary.blobsExisting++;
        outs.give(data.buffer as ArrayBuffer); // put has resolved: no store holds on to `data`
      });
    };
    const drainOne = async (): Promise<void> => {
      const { ino, block, refs } = window.shift()!;
      const b = await block;
      refs?.push({ id: b.id, key: b.key });
      await record(ino, b);
    };
    for (const { ino, entry } of files) {
      const group = entry.linkGroup;
      const shared = group !== undefined ? byGroup.get(group) : undefined;
      if (shared) {
        while (window.length > 0) await drainOne(); // keep rows of earlier files first
        for (const b of shared) await record(ino, b);
        continue;
      }
      const refs = group !== undefined ? [] : undefined;
      if (entry.size > 0) {
        for await (const plain of plainBlocks(entry, plains)) {
          const length = plain.length; // plain is detached once sent to a worker
          const p = pool.encode(plain, outs.take()).then((r) => {
            plains.give(r.plain);
            return r as EncodedBlock;
          });
          p.catch(() => undefined);
          window.push({ ino, block: p, ...(refs ? { refs } : {}) });
          done += length;
          options.onProgress?.(done, total);
          while (window.length >= WINDOW) await drainOne();
        }
      }
      summary.bytes += entry.size;
      // Complete once drained; a later name drains the window before using them.
      if (group !== undefined && refs) byGroup.set(group, refs);
    }
    while (window.length > 0) await drainOne();
    await limiter.wait();
    summary.uniqueBlobs = seen.size;
    summary.dedupRatio = seen.size === 0 ? 1 : summary.blocks / seen.size;
    await writer.finish();
    return summary;
  } catch (e) {
    await uploads?.settle();
    await writer.abort();
    throw e;
  } finally {
    await pool.close();
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The last path component as a string. rfs stores names as text (`to_string_lossy`), so a name
 * that is not UTF-8 would come back as another name: it is refused instead (UNSUPPORTED_ENTRY).
 */
function showName(e: TreeEntry): string {
  const slash = e.path.lastIndexOf(0x2f);
  try {
    return utf8.decode(e.path.subarray(slash + 1));
  } catch {
    throw new VmimgError('UNSUPPORTED_ENTRY', `'${showPath(e.path)}': the name is not valid UTF-8, and flist manifests store names as text`, { path: showPath(e.path) });
  }
}
