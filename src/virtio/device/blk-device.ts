/**
 * The virtio-blk device type (virtio 1.2 §5.2): feature offer, config space and the request
 * loop over queue 0. Pair it with VirtioMmioDevice (mmio.ts) — `createBlkDevice` does — to get
 * a complete virtio-mmio block device serving a BlockBackend out of a GuestMemory.
 */
import { BLK_CFG, BLK_SECTOR, DEVICE_ID_BLOCK, F, bit, has } from '../constants.js';
import type { GuestMemory } from '../guest-memory.js';
import { validQueueSize } from '../ring.js';
import { VmimgError } from '../../util/errors.js';
import type { BlockBackend } from './backend.js';
import { planRequest, executeRequest } from './blk.js';
import { walkChain } from './chain.js';
import { VirtioMmioDevice, type DeviceLogic } from './mmio.js';
import type { DeviceQueue } from './queue.js';

export interface BlkDeviceOptions {
  /** Serve read-only (offer VIRTIO_BLK_F_RO) even if the backend could write. */
  readOnly?: boolean;
  /** Offer VIRTIO_F_EVENT_IDX (default true). */
  eventIdx?: boolean;
  /** Offer VIRTIO_BLK_F_FLUSH (default: when the backend is writable and has flush). */
  flush?: boolean;
  /** QueueSizeMax (default 256, Firecracker's size). */
  queueSizeMax?: number;
  /** VIRTIO_BLK_F_BLK_SIZE value (default 512; a power of two in [512, 65536]). */
  blkSize?: number;
  /** VIRTIO_BLK_F_SEG_MAX value (default 126); 0 = do not offer. */
  segMax?: number;
  /** VIRTIO_BLK_F_SIZE_MAX value (default 65536); 0 = do not offer. */
  sizeMax?: number;
  /** GET_ID answer, ASCII, ≤ 20 bytes (default "vmimg"). */
  id?: string;
  /** Refuse FEATURES_OK for this subset (tests of the driver's FAILED path). */
  refuseFeatures?: (features: bigint) => boolean;
}

/** What the device saw, for tests and diagnostics (bounded). */
export interface BlkDeviceStats {
  requests: number;
  /** Chains completed with used.len = 0 because they were malformed. */
  rejectedChains: number;
  /** Requests answered IOERR or UNSUPP. */
  failedRequests: number;
  /** The latest reasons, oldest first (at most 64). */
  log: string[];
}

export class VirtioBlkDevice implements DeviceLogic {
  readonly deviceId = DEVICE_ID_BLOCK;
  readonly queueSizeMax: number;
  readonly readOnly: boolean;
  readonly capacitySectors: number;
  readonly stats: BlkDeviceStats = { requests: 0, rejectedChains: 0, failedRequests: 0, log: [] };
  #offered: bigint;
  #features = 0n;
  #config: Uint8Array;
  #id: Uint8Array;

  constructor(
    readonly backend: BlockBackend,
    readonly options: BlkDeviceOptions = {},
  ) {
    const qmax = options.queueSizeMax ?? 256;
    const blkSize = options.blkSize ?? 512;
    if (!validQueueSize(qmax)) throw new VmimgError('INVALID_OPTION', `queueSizeMax ${qmax} is not a power of two ≤ 32768`, { qmax });
    if (!validQueueSize(blkSize) || blkSize < 512 || blkSize > 65536) throw new VmimgError('INVALID_OPTION', `blkSize ${blkSize} is not a power of two in [512, 65536]`, { blkSize });
    this.queueSizeMax = qmax;
    this.readOnly = options.readOnly === true || backend.readOnly || !backend.write;
    this.capacitySectors = Math.floor(backend.size / BLK_SECTOR);
    const segMax = options.segMax ?? 126;
    const sizeMax = options.sizeMax ?? 65536;
    const flush = options.flush ?? (!this.readOnly && backend.flush !== undefined);
    let f = bit(F.BLK_BLK_SIZE);
    if (segMax > 0) f |= bit(F.BLK_SEG_MAX);
    if (sizeMax > 0) f |= bit(F.BLK_SIZE_MAX);
    if (this.readOnly) f |= bit(F.BLK_RO);
    if (flush) f |= bit(F.BLK_FLUSH);
    if (options.eventIdx ?? true) f |= bit(F.EVENT_IDX);
    this.#offered = f;
    const cfg = new Uint8Array(BLK_CFG.LENGTH);
    const v = new DataView(cfg.buffer);
    v.setBigUint64(BLK_CFG.CAPACITY, BigInt(this.capacitySectors), true);
    v.setUint32(BLK_CFG.SIZE_MAX, sizeMax, true);
    v.setUint32(BLK_CFG.SEG_MAX, segMax, true);
    v.setUint32(BLK_CFG.BLK_SIZE, blkSize, true);
    this.#config = cfg;
    this.#id = new TextEncoder().encode((options.id ?? 'vmimg').slice(0, 20));
  }

  offeredFeatures(): bigint {
    return this.#offered;
  }
  config(): Uint8Array {
    return this.#config;
  }
  acceptFeatures(features: bigint): boolean {
    return !(this.options.refuseFeatures?.(features) ?? false);
  }
  activate(features: bigint): void {
    this.#features = features;
  }

  #log(why: string): void {
    if (this.stats.log.length >= 64) this.stats.log.shift();
    this.stats.log.push(why);
  }

  /**
   * Drains queue 0 (§2.7.13 device side): pop each head, walk and validate its chain, plan and
   * execute, push used, interrupt if the driver wants it; before going idle re-arm notifications
   * and loop if the driver added more meanwhile. Ring-level corruption throws (→ NEEDS_RESET).
   */
  async process(queue: DeviceQueue, signal: () => void): Promise<void> {
    const policy = { capacitySectors: this.capacitySectors, readOnly: this.readOnly, flush: has(this.#features, F.BLK_FLUSH) };
    for (;;) {
      let head: number | undefined;
      while ((head = queue.popAvail()) !== undefined) {
        this.stats.requests++;
        const walk = walkChain(queue.mem, queue.addrs.desc, queue.size, head);
        let len = 0;
        const req = walk.ok ? planRequest(queue.mem, walk.segments, policy) : undefined;
        if (!req) {
          this.stats.rejectedChains++;
          this.#log(walk.ok ? `chain ${head} has no device-writable status byte` : walk.reason);
        } else {
          len = await executeRequest(req, this.backend, this.#id, (e) => {
            this.stats.failedRequests++;
            this.#log(e instanceof Error ? e.message : String(e));
          });
        }
        queue.pushUsed(head, len);
        if (queue.needsInterrupt()) signal();
      }
      if (!queue.enableNotification()) return;
    }
  }
}

/** A complete virtio-mmio block device (modern unless `version: 1`) over `memory`. */
export function createBlkDevice(memory: GuestMemory, backend: BlockBackend, options: BlkDeviceOptions & { version?: 1 | 2 } = {}): { mmio: VirtioMmioDevice; blk: VirtioBlkDevice } {
  const blk = new VirtioBlkDevice(backend, options);
  const mmio = new VirtioMmioDevice({ memory, logic: blk, version: options.version ?? 2 });
  return { mmio, blk };
}
