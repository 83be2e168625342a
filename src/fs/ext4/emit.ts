/**
 * Emission: turns a plan into writes in ascending block order (what the streaming
 * ImageWriters need), metadata encoded when its turn comes and file content streamed from its
 * source exactly once ("reserve metadata, stream data" as hcsshim's compactext4, but in one
 * ascending pass because the plan fixes every block before the first byte is written).
 */
import { readSmallFiles, SMALL_FILE, type SmallFileRead } from '../../tree/content.js';
import { showPath } from '../../tree/path.js';
import type { ImageWriter } from '../../formats/writer.js';
import type { FileCopy } from '../../storage/types.js';
import { VmimgError } from '../../util/errors.js';
import { BLOCKS_PER_GROUP, BLOCK_SIZE, INODE_SIZE, INODES_PER_BLOCK, JOURNAL_INO, SUPERBLOCK_OFFSET } from './constants.js';
import { inodeSeed } from './csum.js';
import { encodeDirBlocks } from './dir.js';
import { encodeJournalInode, encodePlacedInode, extentTreeOf } from './inode-fields.js';
import type { PlacedInode } from './layout.js';
import { groupMetadata, superFields } from './metadata.js';
import type { Ext4Plan } from './plan.js';
import { AlignedSink } from './sink.js';
import { encodeGdt, encodeJournalSuperblock, encodeSuperblock } from './super.js';
import { encodeXattrBlock } from './xattr.js';

type FileItem = { block: number; file: PlacedInode; offset: number; length: number };
type Item = { block: number; make: () => Buffer } | FileItem;

/** A whole host file written in one piece, which a writer's copyFiles can take over. */
function isDirect(it: FileItem): boolean {
  const e = it.file.model.entry!;
  return it.offset === 0 && it.length === e.size && e.size > 0 && e.content?.fsPath !== undefined;
}

/** Files per copyFiles call, and calls in flight (each holds a pool thread). */
const COPY_BATCH = 64;
const COPIES_IN_FLIGHT = 3;

/**
 * Copies whole host files through the writer's copyFiles in batches, a few batches in flight,
 * running beside the emission of everything else (the ranges never meet: see emitExt4). The
 * first failure (in file order) rejects run(); stop() ends it early after an error elsewhere.
 */
class FileCopier {
  #stopped = false;
  #running: Promise<void> | undefined;
  readonly #inFlight: Array<Promise<Array<VmimgError | undefined>>> = [];

  constructor(private readonly copy: (files: readonly FileCopy[]) => Promise<Array<VmimgError | undefined>>) {}

  /** Starts copying `items`; the promise settles once every batch has (or the first failure). */
  run(items: readonly FileItem[]): Promise<void> {
    this.#running = this.#run(items);
    this.#running.catch(() => undefined); // the caller awaits it, or stop() does
    return this.#running;
  }

  async #run(items: readonly FileItem[]): Promise<void> {
    for (let i = 0; i < items.length && !this.#stopped; i += COPY_BATCH) {
      const batch = items.slice(i, i + COPY_BATCH).map((it): FileCopy => {
        const e = it.file.model.entry!;
        const fsPath = e.content!.fsPath!;
        return { fsPath, path: typeof fsPath === 'string' ? fsPath : showPath(fsPath), size: e.size, offset: it.block * BLOCK_SIZE };
      });
      const p = this.copy(batch);
      p.catch(() => undefined); // awaited in order below
      this.#inFlight.push(p);
      while (this.#inFlight.length > COPIES_IN_FLIGHT) await this.#settleOne();
    }
    while (this.#inFlight.length > 0) await this.#settleOne();
  }

  async #settleOne(): Promise<void> {
    // Shifted only once settled, so stop() always sees every batch still writing.
    const errors = await this.#inFlight[0]!;
    this.#inFlight.shift();
    const err = errors.find((x) => x !== undefined);
    if (err) throw err;
  }

  /**
   * Sends no more batches and waits until none is writing: the native copies write to the
   * image's descriptor number, which the caller closes (and the system may reuse) after an error.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#running?.catch(() => undefined);
    await Promise.allSettled(this.#inFlight);
  }
}

/** Files at most this large are read whole ahead of their turn, several at once. */
const PREFETCH_FILE = 1024 * 1024;
const PREFETCH_FILES = 64;
/** Small files read in one native call. */
const READ_BATCH = 16;
const PREFETCH_BYTES = 32 * 1024 * 1024;

function changed(file: PlacedInode): VmimgError {
  const e = file.model.entry!;
  return new VmimgError('SOURCE_CHANGED', `'${showPath(e.path)}' did not have the ${e.size} bytes it had when the tree was read`, { path: showPath(e.path) });
}

/** The whole content of a small file from its stream (read once), checked against its size. */
async function loadSmall(file: PlacedInode): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const c of file.model.entry!.content!.stream()) {
    chunks.push(c);
    n += c.length;
    if (n > file.model.entry!.size) break;
  }
  if (n !== file.model.entry!.size) throw changed(file);
  return chunks;
}

/**
 * Buffers for small files read straight from their host path (readSmallFileInto): one per file
 * read ahead, returned once the file has been written out (the sink copies what it is given), so
 * 10k small files cost no allocation or garbage collection per file.
 */
class BufferPool {
  readonly #free: Uint8Array[] = [];
  #made = 0;

  constructor(
    private readonly size: number,
    private readonly max: number,
  ) {}

  take(): Uint8Array | undefined {
    if (this.#free.length > 0) return this.#free.pop();
    if (this.#made >= this.max) return undefined;
    this.#made++;
    return Buffer.allocUnsafeSlow(this.size);
  }

  give(b: Uint8Array): void {
    this.#free.push(b);
  }
}

/**
 * Reads file contents in the order their pieces are written. Small files are read whole a few
 * dozen ahead (their stream() once each, concurrently, so the I/O latency of many small files
 * overlaps); larger files stream piece by piece. Every stream must yield exactly the planned size.
 */
class ContentReader {
  readonly #order: PlacedInode[];
  readonly #pool = new BufferPool(SMALL_FILE, PREFETCH_FILES + 2);
  /** Pool buffers lent to files read ahead or being written. */
  readonly #lent = new Map<PlacedInode, Uint8Array>();
  #next = 0;
  #ahead = new Map<PlacedInode, Promise<Uint8Array[]>>();
  #aheadBytes = 0;
  #file: PlacedInode | undefined;
  #it: AsyncIterator<Uint8Array> | undefined;
  #pending: Uint8Array = new Uint8Array(0);
  #pos = 0;

  constructor(order: PlacedInode[]) {
    this.#order = order;
  }

  #prefetch(): void {
    let batch: Array<{ file: PlacedInode; read: SmallFileRead }> = [];
    while (this.#next < this.#order.length && this.#ahead.size + batch.length < PREFETCH_FILES && this.#aheadBytes < PREFETCH_BYTES) {
      const f = this.#order[this.#next]!;
      const e = f.model.entry!;
      if (e.size > PREFETCH_FILE) break; // streamed in its turn
      const fsPath = e.content?.fsPath;
      if (fsPath !== undefined && e.size > 0 && e.size <= SMALL_FILE) {
        const buf = this.#pool.take();
        if (!buf) break; // every buffer is in use: read ahead again once one is returned
        this.#next++;
        this.#lent.set(f, buf);
        this.#aheadBytes += e.size;
        batch.push({ file: f, read: { fsPath, path: typeof fsPath === 'string' ? fsPath : showPath(fsPath), size: e.size, into: buf } });
        if (batch.length === READ_BATCH) (this.#readBatch(batch), (batch = []));
        continue;
      }
      this.#readBatch(batch);
      batch = [];
      this.#next++;
      const p = loadSmall(f);
      p.catch(() => undefined); // reported when its turn comes
      this.#ahead.set(f, p);
      this.#aheadBytes += f.model.entry!.size;
    }
    this.#readBatch(batch);
  }

  /** Reads a batch of small files straight from their host paths; each file's promise settles with its bytes or error. */
  #readBatch(batch: ReadonlyArray<{ file: PlacedInode; read: SmallFileRead }>): void {
    if (batch.length === 0) return;
    const errors = readSmallFiles(batch.map((b) => b.read));
    for (const [i, { file, read }] of batch.entries()) {
      const err = errors[i];
      const p = err ? Promise.reject(err) : Promise.resolve([read.into.subarray(0, read.size)]);
      p.catch(() => undefined); // reported when its turn comes
      this.#ahead.set(file, p);
    }
  }

  async piece(sink: AlignedSink, file: PlacedInode, byteOffset: number, offset: number, length: number): Promise<void> {
    if (file !== this.#file) {
      await this.finish();
      this.#release();
      this.#file = file;
      this.#pos = 0;
      if (this.#order[this.#next] === file) this.#next++;
      const ahead = this.#ahead.get(file);
      if (ahead) {
        this.#ahead.delete(file);
        this.#aheadBytes -= file.model.entry!.size;
        this.#prefetch();
        const chunks = await ahead;
        this.#it = (async function* () {
          yield* chunks;
        })();
      } else {
        this.#it = file.model.entry!.content!.stream()[Symbol.asyncIterator]();
      }
    }
    this.#prefetch();
    if (offset !== this.#pos) throw new VmimgError('INTERNAL', `ext4 content pieces out of order (${offset} != ${this.#pos})`, {});
    let done = 0;
    while (done < length) {
      if (this.#pending.length === 0) {
        const r = await this.#it!.next();
        if (r.done) throw changed(file);
        this.#pending = r.value;
        continue;
      }
      const n = Math.min(this.#pending.length, length - done);
      await sink.write(byteOffset + done, this.#pending.subarray(0, n));
      this.#pending = this.#pending.subarray(n);
      done += n;
    }
    this.#pos += length;
  }

  /** Returns the buffer of the file just written, if it had one. */
  #release(): void {
    const f = this.#file;
    const buf = f !== undefined ? this.#lent.get(f) : undefined;
    if (buf) {
      this.#lent.delete(f!);
      this.#pool.give(buf);
    }
  }

  /** Ends the current file: its stream must yield nothing more. */
  async finish(): Promise<void> {
    if (this.#it === undefined) return;
    const it = this.#it;
    this.#it = undefined;
    if (this.#pending.length > 0 || !(await it.next()).done) {
      await it.return?.();
      throw changed(this.#file!);
    }
  }

  /** Waits for reads still in flight (after an error), so no file stays open. */
  async drain(): Promise<void> {
    await Promise.allSettled(this.#ahead.values());
  }
}

function inodeItems(plan: Ext4Plan, p: PlacedInode, items: Item[]): void {
  const m = p.model;
  const seed = plan.seed === undefined ? undefined : inodeSeed(plan.seed, m.ino, 0);
  let logical = 0;
  p.runs.forEach((r, k) => {
    const first = logical;
    if (m.kind === 'dir') {
      items.push({ block: r.start, make: () => Buffer.concat(encodeDirBlocks(m.ino, m.parent, m.children, seed !== undefined, p.dataBlocks, seed ?? 0).slice(first, first + r.length)) });
    } else if (m.kind === 'symlink') {
      items.push({ block: r.start, make: () => Buffer.from(m.entry!.symlinkTarget!) });
    } else if (m.kind === 'file') {
      const offset = first * BLOCK_SIZE;
      items.push({ block: r.start, file: p, offset, length: Math.min(r.length * BLOCK_SIZE, m.entry!.size - offset) });
    }
    logical += r.length;
    void k;
  });
  if (p.nodeBlocks.length > 0) {
    const tree = extentTreeOf(plan, p);
    for (const n of tree.nodes) items.push({ block: n.block, make: () => n.data });
  }
  if (p.xattrBlock !== undefined) {
    const block = p.xattrBlock;
    items.push({ block, make: () => encodeXattrBlock(p.xattrs.block!, block, plan.seed) });
  }
}

/** Writes the whole filesystem of `plan` into `writer` (virtualSize ≥ plan.imageSize); does not call finish(). */
export async function emitExt4(plan: Ext4Plan, writer: ImageWriter): Promise<{ freeBlocks: number; freeInodes: number }> {
  const { geo, placement } = plan;
  const meta = groupMetadata(plan);
  const fields = superFields(plan, meta);
  const items: Item[] = [];
  let journalInode: Buffer | undefined;
  if (plan.journalBlocks > 0) {
    const j = encodeJournalInode(plan, placement.journal, placement.journalNodes);
    journalInode = j.inode;
    fields.journal = { iblock: j.tree.iblock, size: plan.journalBlocks * BLOCK_SIZE };
    items.push({ block: placement.journal[0]!.start, make: () => encodeJournalSuperblock(plan.journalBlocks, plan.uuid) });
    for (const n of j.tree.nodes) items.push({ block: n.block, make: () => n.data });
  }
  const gdt = encodeGdt(meta.descs, geo.descSize, plan.seed, geo.gdtBlocks);
  for (const g of geo.backupGroups) {
    items.push({
      block: g * BLOCKS_PER_GROUP,
      make: () => {
        const out = Buffer.alloc((1 + geo.gdtBlocks) * BLOCK_SIZE);
        encodeSuperblock(fields, g).copy(out, g === 0 ? SUPERBLOCK_OFFSET : 0);
        gdt.copy(out, BLOCK_SIZE);
        return out;
      },
    });
  }
  for (let g = 0; g < geo.groups; g++) {
    items.push({ block: placement.blockBitmaps[g]!, make: () => meta.blockBitmaps[g]! });
    items.push({ block: placement.inodeBitmaps[g]!, make: () => meta.inodeBitmaps[g]! });
  }
  const byIno = new Map<number, PlacedInode>();
  for (const p of placement.inodes) byIno.set(p.model.ino, p);
  const ipg = geo.inodesPerGroup;
  for (let g = 0; g < geo.groups; g++) {
    const used = Math.max(0, Math.min(ipg, plan.table.lastIno - g * ipg));
    if (used === 0) continue;
    items.push({
      block: placement.inodeTables[g]!,
      make: () => {
        const out = Buffer.alloc(Math.ceil(used / INODES_PER_BLOCK) * BLOCK_SIZE);
        for (let i = 0; i < used; i++) {
          const ino = g * ipg + i + 1;
          const p = byIno.get(ino);
          if (p) encodePlacedInode(plan, p, out.subarray(i * INODE_SIZE, (i + 1) * INODE_SIZE));
          else if (ino === JOURNAL_INO) journalInode?.copy(out, i * INODE_SIZE);
        }
        return out;
      },
    });
  }
  for (const p of placement.inodes) inodeItems(plan, p, items);
  items.sort((a, b) => a.block - b.block);

  const sink = new AlignedSink(writer);
  const copier = writer.copyFiles ? new FileCopier(writer.copyFiles.bind(writer)) : undefined;
  // Whole host files in one piece are copied in by the writer itself, beside everything else
  // (which goes through the sink): the sink is flushed wherever such a file lies between two of
  // its writes, so no window it writes ever covers a copied file's blocks.
  const isCopied = (it: Item): boolean => copier !== undefined && 'file' in it && isDirect(it);
  const copied = items.filter(isCopied) as FileItem[];
  const order: PlacedInode[] = [];
  for (const it of items) if ('file' in it && it.offset === 0 && !isCopied(it)) order.push(it.file);
  const reader = new ContentReader(order);
  const copying = copier?.run(copied);
  copying?.catch(() => undefined); // awaited below
  try {
    let gap = false;
    for (const it of items) {
      if (isCopied(it)) {
        gap = true;
        continue;
      }
      if (gap) await sink.flush();
      gap = false;
      if ('make' in it) await sink.write(it.block * BLOCK_SIZE, it.make());
      else await reader.piece(sink, it.file, it.block * BLOCK_SIZE, it.offset, it.length);
    }
    await reader.finish();
    await copying;
  } catch (e) {
    await reader.drain();
    await copier?.stop();
    throw e;
  }
  await sink.close();
  return { freeBlocks: meta.freeBlocks, freeInodes: meta.freeInodes };
}
