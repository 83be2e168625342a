/**
 * The virtio-blk driver (frontend) over virtio-mmio (virtio 1.2 §5.2). It owns a region of guest
 * memory for its ring and a fixed pool of request slots (header | data | status, contiguous),
 * issues IN/OUT/FLUSH/GET_ID requests, and turns request statuses into typed errors:
 * VIRTIO_IOERR, VIRTIO_UNSUPP, VIRTIO_READ_ONLY, OUT_OF_BOUNDS, SIZE_OUT_OF_RANGE, and
 * VIRTIO_DEVICE_ERROR for a device that breaks the protocol (after which the driver refuses
 * further requests until reopened).
 *
 * Several requests may be in flight (concurrent calls); completions are matched by head index.
 */
import { BLK_CFG, BLK_HEADER_SIZE, BLK_ID_BYTES, BLK_S, BLK_SECTOR, BLK_T, F, INT, REG, STATUS, bit, has } from '../constants.js';
import type { GuestMemory } from '../guest-memory.js';
import type { MmioTransport } from '../transport.js';
import { VmimgError } from '../../util/errors.js';
import { sectors, type Sectors } from '../../util/units.js';
import { GuestAllocator } from './alloc.js';
import { setupMmioDevice } from './mmio.js';
import type { Buffer, DriverQueue } from './queue.js';

/** Largest transfer of one read()/write() call (the bound; readSplit goes beyond). */
export const MAX_TRANSFER = 128 * 1024;
/** Largest readSplit() result, so a caller's count cannot size a huge buffer. */
export const MAX_SPLIT_READ = 64 * 1024 * 1024;

export interface BlkDriverOptions {
  transport: MmioTransport;
  memory: GuestMemory;
  /** Guest memory the driver may use for its ring and buffers. */
  region: { base: number; size: number };
  /** 'ro' never issues writes; 'rw' needs a device that does not offer VIRTIO_BLK_F_RO. */
  mode?: 'ro' | 'rw';
  /** Requested queue size (default 256), capped by QueueSizeMax. */
  queueSize?: number;
  /** Negotiate VIRTIO_F_EVENT_IDX when offered (default true). */
  eventIdx?: boolean;
  /** Request slots (default 4); also capped by the descriptors the queue has. */
  maxInFlight?: number;
  /**
   * 'separate' (default): header, data segments (honouring SIZE_MAX/SEG_MAX) and status in
   * their own descriptors — the legacy-safe framing of §5.2.6.3. 'compact' (modern only, relies
   * on §2.7.4 framing independence): contiguous header+data / data+status share descriptors, two
   * per request, so queues of size 2 work; it does not split by SIZE_MAX/SEG_MAX.
   */
  framing?: 'separate' | 'compact';
}

export interface BlkInfo {
  /** Disk size in 512-byte sectors (config capacity). */
  capacity: Sectors;
  /** VIRTIO_BLK_F_BLK_SIZE value, or 512 when not offered. */
  blkSize: number;
  /** The device offered VIRTIO_BLK_F_RO, or the driver was opened 'ro'. */
  readOnly: boolean;
  flush: boolean;
  eventIdx: boolean;
  sizeMax?: number;
  segMax?: number;
  /** Largest read()/write() in bytes. */
  maxTransfer: number;
  version: 1 | 2;
  queueSize: number;
  features: bigint;
}

/** header (16) | data (≤ maxTransfer) | status (1), contiguous; status follows the request's data. */
interface Slot {
  header: number;
  data: number;
}

interface Completion {
  resolve: (len: number) => void;
  reject: (e: unknown) => void;
}

const STATUS_UNSET = 0xff;

export class VirtioBlkDriver {
  readonly #t: MmioTransport;
  readonly #mem: GuestMemory;
  readonly #q: DriverQueue;
  readonly #info: BlkInfo;
  readonly #mode: 'ro' | 'rw';
  readonly #compact: boolean;
  readonly #segSize: number;
  readonly #freeSlots: Slot[];
  readonly #slotWaiters: ((s: Slot) => void)[] = [];
  readonly #pending = new Map<number, Completion>();
  #pumping = false;
  #broken: VmimgError | undefined;

  private constructor(t: MmioTransport, mem: GuestMemory, q: DriverQueue, info: BlkInfo, mode: 'ro' | 'rw', compact: boolean, segSize: number, slots: Slot[]) {
    this.#t = t;
    this.#mem = mem;
    this.#q = q;
    this.#info = info;
    this.#mode = mode;
    this.#compact = compact;
    this.#segSize = segSize;
    this.#freeSlots = slots;
  }

  /** Brings the device up (§3.1.1) and allocates the request slots. */
  static open(o: BlkDriverOptions): VirtioBlkDriver {
    const mode = o.mode ?? 'ro';
    const alloc = new GuestAllocator(o.memory, o.region.base, o.region.size);
    let wanted = bit(F.BLK_RO) | bit(F.BLK_BLK_SIZE) | bit(F.BLK_SEG_MAX) | bit(F.BLK_SIZE_MAX);
    if (mode === 'rw') wanted |= bit(F.BLK_FLUSH);
    let capacity = 0n;
    let blkSize = 512;
    let sizeMax: number | undefined;
    let segMax: number | undefined;
    const compactWanted = o.framing === 'compact';
    const dev = setupMmioDevice(o.transport, o.memory, alloc, {
      wanted,
      eventIdx: o.eventIdx,
      queueSize: o.queueSize ?? 256,
      minQueueSize: compactWanted ? 2 : 4,
      readConfig: (cfg, f) => {
        // §5.2.4, with hostile values refused rather than trusted.
        capacity = cfg.u64(BLK_CFG.CAPACITY);
        if (capacity > BigInt(Math.floor(Number.MAX_SAFE_INTEGER / BLK_SECTOR))) throw new VmimgError('VIRTIO_DEVICE_ERROR', `capacity ${capacity} sectors is beyond 2^53 bytes`, {});
        if (has(f, F.BLK_BLK_SIZE)) {
          blkSize = cfg.u32(BLK_CFG.BLK_SIZE);
          if (blkSize < 512 || blkSize > 65536 || (blkSize & (blkSize - 1)) !== 0) throw new VmimgError('VIRTIO_DEVICE_ERROR', `blk_size ${blkSize} is not a power of two in [512, 65536]`, {});
        }
        if (has(f, F.BLK_SIZE_MAX)) {
          sizeMax = cfg.u32(BLK_CFG.SIZE_MAX);
          if (sizeMax < BLK_SECTOR) throw new VmimgError('VIRTIO_DEVICE_ERROR', `size_max ${sizeMax} is below one sector`, {});
        }
        if (has(f, F.BLK_SEG_MAX)) {
          segMax = cfg.u32(BLK_CFG.SEG_MAX);
          if (segMax < 1) throw new VmimgError('VIRTIO_DEVICE_ERROR', 'seg_max is 0', {});
        }
      },
    });
    const readOnly = mode === 'ro' || has(dev.features, F.BLK_RO);
    if (mode === 'rw' && has(dev.features, F.BLK_RO)) {
      o.transport.write32(REG.STATUS, o.transport.read32(REG.STATUS) | STATUS.FAILED);
      throw new VmimgError('VIRTIO_READ_ONLY', 'The virtio-blk device is read-only (VIRTIO_BLK_F_RO) but read-write mode was requested', {});
    }
    const compact = compactWanted && dev.version === 2;
    if (compactWanted && !compact) throw new VmimgError('INVALID_OPTION', 'compact framing needs a modern (version 2) device', {});
    const qsz = dev.queue.size;
    let maxTransfer: number;
    let segSize: number;
    let descsPerRequest: number;
    if (compact) {
      segSize = MAX_TRANSFER;
      maxTransfer = MAX_TRANSFER;
      descsPerRequest = 2;
    } else {
      segSize = Math.min(sizeMax ?? MAX_TRANSFER, MAX_TRANSFER);
      const segLimit = Math.min(segMax ?? Infinity, qsz - 2);
      maxTransfer = Math.floor(Math.min(MAX_TRANSFER, segLimit * segSize) / BLK_SECTOR) * BLK_SECTOR;
      descsPerRequest = 2 + Math.ceil(maxTransfer / segSize);
    }
    // Slots: as many as asked, as the queue's descriptors allow, and as fit in the region.
    const slotBytes = BLK_HEADER_SIZE + maxTransfer + 1 + 15;
    const slotCount = Math.min(Math.max(1, Math.min(o.maxInFlight ?? 4, Math.floor(qsz / descsPerRequest))), Math.floor(alloc.remaining / slotBytes));
    if (slotCount < 1) {
      o.transport.write32(REG.STATUS, o.transport.read32(REG.STATUS) | STATUS.FAILED);
      throw new VmimgError('VIRTIO_INIT_FAILED', `Driver region has no room for a ${slotBytes}-byte request slot`, { remaining: alloc.remaining });
    }
    const slots: Slot[] = [];
    for (let i = 0; i < slotCount; i++) {
      const header = alloc.alloc(BLK_HEADER_SIZE + maxTransfer + 1, 16);
      slots.push({ header, data: header + BLK_HEADER_SIZE });
    }
    const info: BlkInfo = {
      capacity: sectors(Number(capacity)),
      blkSize,
      readOnly,
      flush: has(dev.features, F.BLK_FLUSH),
      eventIdx: has(dev.features, F.EVENT_IDX),
      ...(sizeMax !== undefined ? { sizeMax } : {}),
      ...(segMax !== undefined ? { segMax } : {}),
      maxTransfer,
      version: dev.version,
      queueSize: qsz,
      features: dev.features,
    };
    return new VirtioBlkDriver(o.transport, o.memory, dev.queue, info, mode, compact, segSize, slots);
  }

  info(): BlkInfo {
    return { ...this.#info };
  }

  /** Reads `count` sectors at `lba`; count × 512 ≤ info().maxTransfer. */
  async read(lba: Sectors, count: Sectors): Promise<Uint8Array> {
    const length = this.#checkRange(lba, count);
    if (length === 0) return new Uint8Array(0);
    return this.#request(BLK_T.IN, lba, length, undefined);
  }

  /**
   * Reads any number of sectors (≤ 64 MiB) by splitting explicitly into maxTransfer-sized
   * requests, issued concurrently up to the slot count.
   */
  async readSplit(lba: Sectors, count: Sectors): Promise<Uint8Array> {
    const total = count * BLK_SECTOR;
    if (!Number.isSafeInteger(total) || total < 0 || total > MAX_SPLIT_READ) {
      throw new VmimgError('SIZE_OUT_OF_RANGE', `readSplit of ${count} sectors exceeds ${MAX_SPLIT_READ} bytes`, { count });
    }
    this.#checkBounds(lba, count);
    const out = new Uint8Array(total);
    const step = this.#info.maxTransfer / BLK_SECTOR;
    const parts: Promise<void>[] = [];
    for (let s = 0; s < count; s += step) {
      const n = Math.min(step, count - s);
      parts.push(this.read(sectors(lba + s), sectors(n)).then((b) => out.set(b, s * BLK_SECTOR)));
    }
    await Promise.all(parts);
    return out;
  }

  /** Writes `data` (whole sectors, ≤ maxTransfer) at `lba`. */
  async write(lba: Sectors, data: Uint8Array): Promise<void> {
    if (this.#info.readOnly) {
      throw new VmimgError('VIRTIO_READ_ONLY', this.#mode === 'ro' ? 'The driver was opened read-only' : 'The device is read-only (VIRTIO_BLK_F_RO)', { lba });
    }
    if (data.length % BLK_SECTOR !== 0) throw new VmimgError('SIZE_OUT_OF_RANGE', `Write of ${data.length} bytes is not whole ${BLK_SECTOR}-byte sectors`, { length: data.length });
    this.#checkRange(lba, sectors(data.length / BLK_SECTOR));
    if (data.length === 0) return;
    await this.#request(BLK_T.OUT, lba, data.length, data);
  }

  /** Issues FLUSH (VIRTIO_UNSUPP when VIRTIO_BLK_F_FLUSH was not negotiated). */
  async flush(): Promise<void> {
    if (!this.#info.flush) throw new VmimgError('VIRTIO_UNSUPP', 'The device did not negotiate VIRTIO_BLK_F_FLUSH', {});
    await this.#request(BLK_T.FLUSH, sectors(0), 0, undefined);
  }

  /** GET_ID: the device's serial string (≤ 20 ASCII bytes, NUL-padded on the wire). */
  async getId(): Promise<string> {
    const b = await this.#request(BLK_T.GET_ID, sectors(0), BLK_ID_BYTES, undefined);
    const end = b.indexOf(0);
    return new TextDecoder('latin1').decode(end < 0 ? b : b.subarray(0, end));
  }

  /** Resets the device (Status 0); outstanding and later requests fail. */
  close(): void {
    this.#t.write32(REG.STATUS, 0);
    this.#fail(new VmimgError('VIRTIO_DEVICE_ERROR', 'The virtio-blk driver was closed', {}));
  }

  #checkBounds(lba: number, count: number): void {
    if (!Number.isSafeInteger(lba) || !Number.isSafeInteger(count) || lba < 0 || count < 0 || lba + count > this.#info.capacity) {
      throw new VmimgError('OUT_OF_BOUNDS', `Sectors ${lba}+${count} are outside the disk (capacity ${this.#info.capacity} sectors)`, { lba, count, capacity: this.#info.capacity });
    }
  }

  #checkRange(lba: number, count: number): number {
    this.#checkBounds(lba, count);
    const length = count * BLK_SECTOR;
    if (length > this.#info.maxTransfer) {
      throw new VmimgError('SIZE_OUT_OF_RANGE', `Transfer of ${length} bytes exceeds the ${this.#info.maxTransfer}-byte limit per request (use readSplit)`, { length });
    }
    return length;
  }

  async #acquire(): Promise<Slot> {
    const s = this.#freeSlots.pop();
    if (s) return s;
    return new Promise((resolve) => this.#slotWaiters.push(resolve));
  }

  #release(s: Slot): void {
    const w = this.#slotWaiters.shift();
    if (w) w(s);
    else this.#freeSlots.push(s);
  }

  /** One request: header, data, status in a slot; returns the IN/GET_ID data. */
  async #request(type: number, lba: number, length: number, out: Uint8Array | undefined): Promise<Uint8Array> {
    if (this.#broken) throw this.#broken;
    const slot = await this.#acquire();
    try {
      if (this.#broken) throw this.#broken;
      const m = this.#mem;
      m.setU32(slot.header, type);
      m.setU32(slot.header + 4, 0);
      m.setU64(slot.header + 8, BigInt(lba));
      if (out) m.write(slot.data, out);
      const statusAt = slot.data + length;
      m.setU8(statusAt, STATUS_UNSET);
      const inbound = type === BLK_T.IN || type === BLK_T.GET_ID;
      const head = this.#q.add(this.#buffers(slot, length, inbound));
      if (head === undefined) throw new VmimgError('INTERNAL', 'no free descriptors for a request slot', {});
      const done = new Promise<number>((resolve, reject) => this.#pending.set(head, { resolve, reject }));
      if (this.#q.kickPrepare()) this.#t.write32(REG.QUEUE_NOTIFY, 0);
      void this.#pump();
      const len = await done;
      const status = m.u8(statusAt);
      if (status === BLK_S.OK) {
        // §2.7.8: len counts bytes written; a modern device must cover the data and status.
        if (inbound && this.#info.version === 2 && len < length + 1) {
          throw this.#fail(new VmimgError('VIRTIO_DEVICE_ERROR', `Device reported OK but wrote ${len} of ${length + 1} bytes`, { len }));
        }
        return inbound ? m.read(slot.data, length) : new Uint8Array(0);
      }
      const what = `${typeName(type)} of ${length} bytes at sector ${lba}`;
      if (status === BLK_S.IOERR) throw new VmimgError('VIRTIO_IOERR', `Device reported I/O error for ${what}`, { lba, length, type });
      if (status === BLK_S.UNSUPP) throw new VmimgError('VIRTIO_UNSUPP', `Device does not support ${what}`, { lba, length, type });
      if (status === STATUS_UNSET && len === 0) throw new VmimgError('VIRTIO_IOERR', `Device rejected ${what} without a status`, { lba, length, type });
      throw this.#fail(new VmimgError('VIRTIO_DEVICE_ERROR', `Device wrote unknown status ${status} for ${what}`, { status }));
    } finally {
      this.#release(slot);
    }
  }

  /** The chain for one slot: device-readable part first (§2.7.5.2). */
  #buffers(slot: Slot, length: number, inbound: boolean): Buffer[] {
    const bufs: Buffer[] = [{ addr: slot.header, len: BLK_HEADER_SIZE, writable: false }];
    for (let at = 0; at < length; at += this.#segSize) {
      bufs.push({ addr: slot.data + at, len: Math.min(this.#segSize, length - at), writable: inbound });
    }
    bufs.push({ addr: slot.data + length, len: 1, writable: true });
    if (!this.#compact) return bufs;
    // Compact framing: merge neighbours that are contiguous and of the same direction.
    const merged: Buffer[] = [];
    for (const b of bufs) {
      const last = merged[merged.length - 1];
      if (last && last.writable === b.writable && last.addr + last.len === b.addr) last.len += b.len;
      else merged.push({ ...b });
    }
    return merged;
  }

  /** Collects completions until none is pending; waits for interrupts in between. */
  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#pending.size > 0) {
        if (this.#drain()) continue;
        // §2.7.7: arm, then look again, so a completion that raced the arming is not missed.
        this.#q.armInterrupt();
        if (this.#drain()) continue;
        await this.#t.waitForInterrupt();
        const isr = this.#t.read32(REG.INTERRUPT_STATUS);
        if (isr) this.#t.write32(REG.INTERRUPT_ACK, isr);
        if (isr & INT.CONFIG_CHANGE && this.#t.read32(REG.STATUS) & STATUS.DEVICE_NEEDS_RESET) {
          this.#fail(new VmimgError('VIRTIO_DEVICE_ERROR', 'The virtio-blk device needs a reset (DEVICE_NEEDS_RESET)', {}));
        }
      }
    } catch (e) {
      this.#fail(e instanceof VmimgError ? e : new VmimgError('VIRTIO_DEVICE_ERROR', String(e), {}, { cause: e }));
    } finally {
      this.#pumping = false;
    }
  }

  /** Resolves every completion in the used ring; true when any was found. */
  #drain(): boolean {
    let any = false;
    for (let c; (c = this.#q.popUsed()) !== undefined; ) {
      const p = this.#pending.get(c.head);
      this.#pending.delete(c.head);
      p?.resolve(c.len);
      any = true;
    }
    return any;
  }

  /** Marks the driver broken and rejects everything outstanding; returns the error. */
  #fail(e: VmimgError): VmimgError {
    this.#broken ??= e;
    for (const p of this.#pending.values()) p.reject(e);
    this.#pending.clear();
    return e;
  }
}

function typeName(type: number): string {
  return type === BLK_T.IN ? 'read' : type === BLK_T.OUT ? 'write' : type === BLK_T.FLUSH ? 'flush' : type === BLK_T.GET_ID ? 'get-id' : `type ${type}`;
}
