/**
 * virtio-blk request handling on the device side (virtio 1.2 §5.2.6 "Device Operation"), in two
 * steps as DESIGN.md asks: `planRequest` parses a validated chain into a typed plan (or a status
 * to return without touching the disk), `executeRequest` runs it against a BlockBackend.
 *
 * Framing is taken as byte streams (§2.7.4): the first 16 device-readable bytes are the header;
 * the last device-writable byte is the status. Strictness beyond the spec's MUSTs follows
 * Firecracker and rust-vmm's virtio-blk: data lengths are whole 512-byte sectors, IN carries no
 * readable data, OUT and FLUSH no writable data besides status, FLUSH's sector is 0, GET_ID
 * needs 20 writable bytes, and requests past capacity are IOERR.
 */
import { BLK_HEADER_SIZE, BLK_ID_BYTES, BLK_S, BLK_SECTOR, BLK_T } from '../constants.js';
import type { GuestMemory } from '../guest-memory.js';
import { BACKEND_CHUNK, type BlockBackend } from './backend.js';
import { ByteStream, type Segment } from './chain.js';

export type BlkPlan =
  | { kind: 'in'; offset: number; length: number }
  | { kind: 'out'; offset: number; length: number }
  | { kind: 'flush' }
  | { kind: 'get-id' }
  /** Answer `status` without touching the disk; `reason` says why (for the device's log). */
  | { kind: 'status'; status: number; reason: string };

export interface BlkRequest {
  readable: ByteStream;
  writable: ByteStream;
  plan: BlkPlan;
}

export interface BlkPolicy {
  capacitySectors: number;
  readOnly: boolean;
  flush: boolean;
}

/**
 * Parses a chain. Returns undefined when there is no writable byte for the status: such a
 * chain cannot be answered and is completed with used.len = 0 (as Firecracker does).
 */
export function planRequest(mem: GuestMemory, segments: Segment[], policy: BlkPolicy): BlkRequest | undefined {
  const readable = new ByteStream(mem, segments.filter((s) => !s.writable));
  const writable = new ByteStream(mem, segments.filter((s) => s.writable));
  if (writable.length === 0) return undefined;
  return { readable, writable, plan: plan(readable, writable.length - 1, policy) };
}

function plan(readable: ByteStream, writableData: number, policy: BlkPolicy): BlkPlan {
  const bad = (reason: string): BlkPlan => ({ kind: 'status', status: BLK_S.IOERR, reason });
  if (readable.length < BLK_HEADER_SIZE) return bad(`header needs ${BLK_HEADER_SIZE} device-readable bytes, chain has ${readable.length}`);
  const h = new DataView(readable.read(0, BLK_HEADER_SIZE).buffer);
  const type = h.getUint32(0, true);
  const sector = h.getBigUint64(8, true);
  const readableData = readable.length - BLK_HEADER_SIZE;
  switch (type) {
    case BLK_T.IN:
    case BLK_T.OUT: {
      const isIn = type === BLK_T.IN;
      const length = isIn ? writableData : readableData;
      if ((isIn ? readableData : writableData) !== 0) return bad(`${isIn ? 'IN' : 'OUT'} request carries data in the wrong direction`);
      if (length % BLK_SECTOR !== 0) return bad(`data length ${length} is not a multiple of ${BLK_SECTOR}`);
      if (sector + BigInt(length / BLK_SECTOR) > BigInt(policy.capacitySectors)) {
        return bad(`sectors ${sector}+${length / BLK_SECTOR} are beyond capacity ${policy.capacitySectors}`);
      }
      // §5.2.6.2: the device MUST reject writes with IOERR when it offered VIRTIO_BLK_F_RO.
      if (!isIn && policy.readOnly) return bad('write to a read-only device');
      return { kind: isIn ? 'in' : 'out', offset: Number(sector) * BLK_SECTOR, length };
    }
    case BLK_T.FLUSH:
      if (!policy.flush) return { kind: 'status', status: BLK_S.UNSUPP, reason: 'FLUSH was not negotiated' };
      if (sector !== 0n || readableData !== 0 || writableData !== 0) return bad('FLUSH with a sector or data');
      return { kind: 'flush' };
    case BLK_T.GET_ID:
      if (readableData !== 0 || writableData < BLK_ID_BYTES) return bad(`GET_ID needs ${BLK_ID_BYTES} device-writable data bytes, has ${writableData}`);
      return { kind: 'get-id' };
    default:
      return { kind: 'status', status: BLK_S.UNSUPP, reason: `request type ${type} is not supported` };
  }
}

/**
 * Runs a plan, writes the status byte, and returns used.len: the bytes written to
 * device-writable buffers, status included (§2.7.8). Backend failures become IOERR; the error
 * is passed to `onError`.
 */
export async function executeRequest(req: BlkRequest, backend: BlockBackend, id: Uint8Array, onError: (e: unknown) => void): Promise<number> {
  const statusAt = req.writable.length - 1;
  let status: number = BLK_S.OK;
  let written = 1;
  try {
    const p = req.plan;
    switch (p.kind) {
      case 'in': {
        // The pieces land in disjoint guest buffers, so they are read concurrently (their
        // number is bounded by the validated chain length and by BACKEND_CHUNK).
        const reads: Promise<void>[] = [];
        let pos = p.offset;
        for (const view of req.writable.slices(0, p.length)) {
          for (let at = 0; at < view.length; at += BACKEND_CHUNK) {
            const part = view.subarray(at, Math.min(view.length, at + BACKEND_CHUNK));
            reads.push(backend.readInto(pos, part));
            pos += part.length;
          }
        }
        const results = await Promise.allSettled(reads);
        const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
        written += p.length;
        break;
      }
      case 'out': {
        if (!backend.write) throw new Error('backend has no write path');
        let pos = p.offset;
        for (const view of req.readable.slices(BLK_HEADER_SIZE, p.length)) {
          for (let at = 0; at < view.length; at += BACKEND_CHUNK) {
            const part = view.subarray(at, Math.min(view.length, at + BACKEND_CHUNK));
            await backend.write(pos, part.slice());
            pos += part.length;
          }
        }
        break;
      }
      case 'flush':
        await backend.flush?.();
        break;
      case 'get-id': {
        const buf = new Uint8Array(BLK_ID_BYTES);
        buf.set(id.subarray(0, BLK_ID_BYTES));
        req.writable.write(0, buf);
        written += BLK_ID_BYTES;
        break;
      }
      case 'status':
        status = p.status;
        onError(new Error(p.reason));
        break;
    }
  } catch (e) {
    status = BLK_S.IOERR;
    written = 1;
    // A failed IN may have filled part of the data: zero it so nothing half-read is returned.
    if (req.plan.kind === 'in') {
      for (const view of req.writable.slices(0, req.plan.length)) view.fill(0);
      written += req.plan.length;
    }
    onError(e);
  }
  req.writable.write(statusAt, Uint8Array.of(status));
  return written;
}
