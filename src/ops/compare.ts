/**
 * `compare`: content comparison of two images through their chains, as qemu-img 7.2's
 * img_compare: ranges both maps call zero are not read; a differing 512-byte sector is reported
 * by its offset; with different sizes the larger image's tail must read as zeros (and -s makes
 * any size or allocation difference a mismatch). Exit statuses: 0 identical, 1 differ,
 * 2 open error, 3 allocation-status error, 4 read error.
 */
import { openChain, type ImageChain } from '../chain/open.js';
import type { ChainPolicy } from '../chain/policy.js';
import { ChainReader } from '../chain/read.js';
import { isVmimgError, VmimgError } from '../util/errors.js';
import { mapChain, type MapEntry } from './map.js';
import { isZero } from './convert/zero.js';

export interface CompareRequest {
  a: string;
  b: string;
  formatA?: string;
  formatB?: string;
  strict?: boolean;
  policyFor: (path: string) => ChainPolicy;
  onProgress?: (done: number, total: number) => void;
}

export type CompareOutcome =
  | { status: 0; message: 'Images are identical.'; sizeWarning: boolean }
  | { status: 1; message: string; sizeWarning: boolean; offset?: number };

const CHUNK = 2 * 1024 * 1024;
const SECTOR = 512;

/** Thrown with an exit status attached (2 open, 3 status, 4 read). */
export class CompareError extends VmimgError {}

export async function compareImages(req: CompareRequest): Promise<CompareOutcome> {
  const chains: ImageChain[] = [];
  try {
    for (const [path, format] of [[req.a, req.formatA], [req.b, req.formatB]] as const) {
      try {
        chains.push(await openChain(path, { format, policy: req.policyFor(path) }));
      } catch (e) {
        throw withStatus(e, 2);
      }
    }
    const [ca, cb] = chains as [ImageChain, ImageChain];
    const sizeA = ca.top.virtualSize;
    const sizeB = cb.top.virtualSize;
    const sizeWarning = sizeA !== sizeB;
    if (sizeWarning && req.strict) return { status: 1, message: 'Strict mode: Image size mismatch!', sizeWarning };
    const common = Math.min(sizeA, sizeB);
    const ra = new ChainReader(ca.layers);
    const rb = new ChainReader(cb.layers);
    const total = Math.max(sizeA, sizeB);

    const ea = entries(ca, 0, common);
    const eb = entries(cb, 0, common);
    let x = await next(ea);
    let y = await next(eb);
    for (let pos = 0; pos < common; ) {
      if (!x || !y) throw new CompareError('INTERNAL', `map ended early at ${pos}`, { status: 3 });
      const end = Math.min(x.start + x.length, y.start + y.length);
      // qemu-img compares the whole block-status flag word in strict mode, BDRV_BLOCK_EOF
      // included: set when the run starting here reaches the end of the image.
      const eof = (e: MapEntry): boolean => e.start + e.length === common;
      if (req.strict && (x.present !== y.present || x.zero !== y.zero || x.data !== y.data || (x.offset === undefined) !== (y.offset === undefined) || eof(x) !== eof(y))) {
        return { status: 1, message: `Strict mode: Offset ${pos} block status mismatch!`, sizeWarning: false, offset: pos };
      }
      if (!(isZeroEntry(x) && isZeroEntry(y))) {
        const at = await firstDifference(ra, rb, pos, end);
        // qemu-img warns about the size only once the common part compared equal.
        if (at !== undefined) return { status: 1, message: `Content mismatch at offset ${at}!`, sizeWarning: false, offset: at };
      }
      req.onProgress?.(end, total);
      pos = end;
      if (x.start + x.length === end) x = await next(ea);
      if (y.start + y.length === end) y = await next(eb);
    }
    // The longer image's tail must read as zeros.
    const [longer, reader] = sizeA > sizeB ? [ca, ra] : [cb, rb];
    for await (const e of mapChain(longer, common, total - common, { split: true })) {
      if (isZeroEntry(e)) continue;
      const at = await firstNonZero(reader, e.start, e.start + e.length);
      if (at !== undefined) return { status: 1, message: `Content mismatch at offset ${at}!`, sizeWarning, offset: at };
    }
    req.onProgress?.(total, total);
    return { status: 0, message: 'Images are identical.', sizeWarning };
  } finally {
    for (const c of chains) await c.close();
  }
}

function isZeroEntry(e: MapEntry): boolean {
  return e.zero && !e.data;
}

function entries(chain: ImageChain, start: number, length: number): AsyncIterator<MapEntry> {
  return mapChain(chain, start, length, { split: true })[Symbol.asyncIterator]();
}

async function next(it: AsyncIterator<MapEntry>): Promise<MapEntry | undefined> {
  try {
    const r = await it.next();
    return r.done ? undefined : r.value;
  } catch (e) {
    throw withStatus(e, 3);
  }
}

async function read(r: ChainReader, offset: number, length: number): Promise<Uint8Array> {
  try {
    return await r.read(offset, length);
  } catch (e) {
    throw withStatus(e, 4);
  }
}

/** The offset of the first 512-byte sector in [start, end) where the two readers differ. */
async function firstDifference(ra: ChainReader, rb: ChainReader, start: number, end: number): Promise<number | undefined> {
  for (let pos = start; pos < end; pos += CHUNK) {
    const n = Math.min(CHUNK, end - pos);
    const [a, b] = await Promise.all([read(ra, pos, n), read(rb, pos, n)]);
    if (Buffer.from(a.buffer, a.byteOffset, n).equals(Buffer.from(b.buffer, b.byteOffset, n))) continue;
    let i = 0;
    while (a[i] === b[i]) i++;
    return pos + i - ((pos + i) % SECTOR);
  }
  return undefined;
}

async function firstNonZero(r: ChainReader, start: number, end: number): Promise<number | undefined> {
  for (let pos = start; pos < end; pos += CHUNK) {
    const n = Math.min(CHUNK, end - pos);
    const a = await read(r, pos, n);
    if (isZero(a)) continue;
    let i = 0;
    while (a[i] === 0) i++;
    return pos + i - ((pos + i) % SECTOR);
  }
  return undefined;
}

function withStatus(e: unknown, status: number): unknown {
  if (isVmimgError(e) && e.details['status'] === undefined) {
    const wrapped = new CompareError(e.code, e.message, { ...e.details, status }, { cause: e });
    wrapped.context.push(...e.context);
    return wrapped;
  }
  return e;
}
