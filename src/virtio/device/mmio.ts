/**
 * The device half of virtio-mmio (virtio 1.2 §4.2), both register maps: modern (Version 2,
 * §4.2.2) and legacy (Version 1, §4.2.4). It implements MmioTransport, so a driver can be pointed
 * at it directly. Device-type behaviour (features, config space, request processing) comes from
 * a DeviceLogic; this file owns the status state machine, feature selection, queue 0's setup
 * and activation, notifications and the interrupt line.
 *
 * Strictness follows Firecracker's transport/mmio.rs: only the status transitions
 * 0→ACK→ACK|DRIVER→+FEATURES_OK→+DRIVER_OK (legacy: ACK|DRIVER→+DRIVER_OK) are accepted, plus
 * reset (0) and FAILED; DriverFeatures is honoured only in ACK|DRIVER; queue registers only
 * before DRIVER_OK and while the queue is not ready; InterruptACK and QueueNotify only after
 * DRIVER_OK. Everything else is ignored and recorded in `violations`.
 */
import { INT, LEGACY_REG, MMIO_MAGIC, MODERN_REG, REG, STATUS, F, has, bit } from '../constants.js';
import type { GuestMemory } from '../guest-memory.js';
import { AVAIL_ALIGN, DESC_ALIGN, USED_ALIGN, availRingSize, descTableSize, legacyLayout, usedRingSize, validQueueSize, type RingAddresses } from '../ring.js';
import type { MmioTransport } from '../transport.js';
import { DeviceQueue } from './queue.js';

/** What a device type contributes to the transport. */
export interface DeviceLogic {
  readonly deviceId: number;
  /** Largest queue size the device accepts (QueueSizeMax), a power of two ≤ 32768. */
  readonly queueSizeMax: number;
  /** Features offered; the transport adds nothing and removes VERSION_1 and bits ≥ 32 on legacy. */
  offeredFeatures(): bigint;
  /** Current device-specific config space (read through Config at 0x100+). */
  config(): Uint8Array;
  /** Whether the driver's subset is acceptable at FEATURES_OK (besides ⊆ offered). */
  acceptFeatures?(features: bigint): boolean;
  /** Called on activation (DRIVER_OK) with the negotiated features. */
  activate(features: bigint): void;
  /**
   * Handles everything now available on `queue`; may throw VIRTIO_DEVICE_ERROR (or a guest
   * memory fault) for a broken ring, which puts the device in DEVICE_NEEDS_RESET.
   */
  process(queue: DeviceQueue, signal: () => void): Promise<void>;
}

interface QueueRegs {
  size: number;
  ready: boolean;
  desc: number;
  avail: number;
  used: number;
  /** legacy */
  align: number;
  pfn: number;
}

const MAX_VIOLATIONS = 256;
const LEGACY_STATUS_MASK = STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.DRIVER_OK | STATUS.FAILED;

export class VirtioMmioDevice implements MmioTransport {
  readonly version: 1 | 2;
  readonly logic: DeviceLogic;
  readonly mem: GuestMemory;
  /** Protocol violations by the driver, oldest first (bounded). */
  readonly violations: string[] = [];
  /** How many QueueNotify writes and interrupts happened since construction (for tests). */
  readonly counters = { notifies: 0, interrupts: 0, resets: 0 };

  #status = 0;
  #interruptStatus = 0;
  #configGeneration = 0;
  #deviceFeaturesSel = 0;
  #driverFeaturesSel = 0;
  #driverFeatures = 0n;
  #features = 0n;
  #queueSel = 0;
  #guestPageSize = 0;
  #q: QueueRegs = freshQueue();
  #queue: DeviceQueue | undefined;
  #work: Promise<void> = Promise.resolve();
  #waiters: (() => void)[] = [];
  #epoch = 0;

  constructor(options: { memory: GuestMemory; logic: DeviceLogic; version?: 1 | 2 }) {
    this.version = options.version ?? 2;
    this.logic = options.logic;
    this.mem = options.memory;
  }

  /** The Status register as the driver would read it. */
  get status(): number {
    return this.#status;
  }
  /** Features in force since FEATURES_OK (legacy: DRIVER_OK). */
  get features(): bigint {
    return this.#features;
  }
  /** The active queue (after DRIVER_OK), for tests that inspect indices. */
  get queue(): DeviceQueue | undefined {
    return this.#queue;
  }
  /** Resolves when every notification so far has been processed. */
  idle(): Promise<void> {
    return this.#work;
  }

  #violation(what: string): void {
    if (this.violations.length < MAX_VIOLATIONS) this.violations.push(what);
  }

  #offered(): bigint {
    const f = this.logic.offeredFeatures();
    return this.version === 1 ? f & 0xffffffffn : f | bit(F.VERSION_1);
  }

  read32(offset: number): number {
    const legacy = this.version === 1;
    switch (offset) {
      case REG.MAGIC:
        return MMIO_MAGIC;
      case REG.VERSION:
        return this.version;
      case REG.DEVICE_ID:
        return this.logic.deviceId;
      case REG.VENDOR_ID:
        return 0;
      case REG.DEVICE_FEATURES:
        return this.#deviceFeaturesSel > 1 ? 0 : Number((this.#offered() >> BigInt(32 * this.#deviceFeaturesSel)) & 0xffffffffn);
      case REG.QUEUE_SIZE_MAX:
        return this.#queueSel === 0 ? this.logic.queueSizeMax : 0;
      case REG.INTERRUPT_STATUS:
        return this.#interruptStatus;
      case REG.STATUS:
        return this.#status;
    }
    if (legacy && offset === LEGACY_REG.QUEUE_PFN) return this.#queueSel === 0 ? this.#q.pfn : 0;
    if (!legacy && offset === MODERN_REG.QUEUE_READY) return this.#queueSel === 0 && this.#q.ready ? 1 : 0;
    if (!legacy && offset === MODERN_REG.CONFIG_GENERATION) return this.#configGeneration;
    if (offset >= REG.CONFIG && offset % 4 === 0) {
      const cfg = this.logic.config();
      const at = offset - REG.CONFIG;
      let v = 0;
      for (let i = 3; i >= 0; i--) v = v * 256 + (cfg[at + i] ?? 0);
      return v;
    }
    this.#violation(`read of register 0x${offset.toString(16)}, which is not readable`);
    return 0;
  }

  write32(offset: number, value: number): void {
    value >>>= 0;
    const legacy = this.version === 1;
    const s = this.#status;
    switch (offset) {
      case REG.DEVICE_FEATURES_SEL:
        this.#deviceFeaturesSel = value;
        return;
      case REG.DRIVER_FEATURES_SEL:
        this.#driverFeaturesSel = value;
        return;
      case REG.DRIVER_FEATURES:
        if (s !== (STATUS.ACKNOWLEDGE | STATUS.DRIVER) || this.#driverFeaturesSel > 1) {
          this.#violation(`DriverFeatures written in status 0x${s.toString(16)} (select ${this.#driverFeaturesSel})`);
          return;
        }
        {
          const shift = BigInt(32 * this.#driverFeaturesSel);
          this.#driverFeatures = (this.#driverFeatures & ~(0xffffffffn << shift)) | (BigInt(value) << shift);
        }
        return;
      case REG.QUEUE_SEL:
        this.#queueSel = value;
        return;
      case REG.QUEUE_SIZE:
        if (this.#queueWritable('QueueSize')) this.#q.size = value;
        return;
      case REG.QUEUE_NOTIFY:
        this.#notify(value);
        return;
      case REG.INTERRUPT_ACK:
        if (!(s & STATUS.DRIVER_OK)) this.#violation('InterruptACK before DRIVER_OK');
        else this.#interruptStatus &= ~value;
        return;
      case REG.STATUS:
        this.#writeStatus(value);
        return;
    }
    if (legacy) {
      switch (offset) {
        case LEGACY_REG.GUEST_PAGE_SIZE:
          if (value === 0 || (value & (value - 1)) !== 0) this.#violation(`GuestPageSize ${value} is not a power of two`);
          else this.#guestPageSize = value;
          return;
        case LEGACY_REG.QUEUE_ALIGN:
          if (this.#queueWritable('QueueAlign')) this.#q.align = value;
          return;
        case LEGACY_REG.QUEUE_PFN:
          this.#writePfn(value);
          return;
      }
    } else {
      const q = this.#q;
      const lo = (old: number): number => Math.floor(old / 2 ** 32) * 2 ** 32 + value;
      const hi = (old: number): number => value * 2 ** 32 + (old % 2 ** 32);
      switch (offset) {
        case MODERN_REG.QUEUE_READY:
          if (value === 1) {
            if (this.#queueWritable('QueueReady')) q.ready = true;
          } else if (value === 0) q.ready = false;
          else this.#violation(`QueueReady ${value}`);
          return;
        case MODERN_REG.QUEUE_DESC_LOW:
          if (this.#queueWritable('QueueDescLow')) q.desc = lo(q.desc);
          return;
        case MODERN_REG.QUEUE_DESC_HIGH:
          if (this.#queueWritable('QueueDescHigh')) q.desc = hi(q.desc);
          return;
        case MODERN_REG.QUEUE_DRIVER_LOW:
          if (this.#queueWritable('QueueDriverLow')) q.avail = lo(q.avail);
          return;
        case MODERN_REG.QUEUE_DRIVER_HIGH:
          if (this.#queueWritable('QueueDriverHigh')) q.avail = hi(q.avail);
          return;
        case MODERN_REG.QUEUE_DEVICE_LOW:
          if (this.#queueWritable('QueueDeviceLow')) q.used = lo(q.used);
          return;
        case MODERN_REG.QUEUE_DEVICE_HIGH:
          if (this.#queueWritable('QueueDeviceHigh')) q.used = hi(q.used);
          return;
      }
    }
    if (offset >= REG.CONFIG) this.#violation(`config write at 0x${offset.toString(16)}: the block config is read-only`);
    else this.#violation(`write of register 0x${offset.toString(16)}, which is not writable`);
  }

  /** Queue registers are writable for queue 0, after DRIVER (modern: FEATURES_OK), before DRIVER_OK, while not ready. */
  #queueWritable(reg: string): boolean {
    const s = this.#status;
    const needed = this.version === 1 ? STATUS.ACKNOWLEDGE | STATUS.DRIVER : STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK;
    const inUse = this.version === 1 ? this.#q.pfn !== 0 : this.#q.ready;
    if (this.#queueSel !== 0 || s !== needed || inUse) {
      this.#violation(`${reg} written for queue ${this.#queueSel} in status 0x${s.toString(16)}${inUse ? ' while the queue is in use' : ''}`);
      return false;
    }
    return true;
  }

  #writePfn(value: number): void {
    if (value === 0) {
      this.#q.pfn = 0; // §4.2.4: writing 0 stops using the queue
      return;
    }
    if (!this.#queueWritable('QueuePFN')) return;
    if (this.#guestPageSize === 0) {
      this.#violation('QueuePFN written before GuestPageSize');
      return;
    }
    const align = this.#q.align || 4096;
    const base = value * this.#guestPageSize;
    const l = legacyLayout(base, this.#q.size, align);
    Object.assign(this.#q, { pfn: value, desc: l.desc, avail: l.avail, used: l.used, align });
  }

  /** virtio 1.2 §2.1, §3.1.1 and Firecracker's table of accepted status transitions. */
  #writeStatus(value: number): void {
    const s = this.#status;
    if (value === 0) {
      this.#reset();
      return;
    }
    if (value === (s | STATUS.FAILED)) {
      this.#status = value;
      return;
    }
    const legacy = this.version === 1;
    if (legacy && value & ~LEGACY_STATUS_MASK) {
      this.#violation(`status 0x${value.toString(16)} has bits legacy devices lack`);
      return;
    }
    const A = STATUS.ACKNOWLEDGE;
    const D = STATUS.DRIVER;
    const FOK = STATUS.FEATURES_OK;
    const OK = STATUS.DRIVER_OK;
    if ((s === 0 && value === A) || (s === A && value === (A | D))) {
      this.#status = value;
    } else if (!legacy && s === (A | D) && value === (A | D | FOK)) {
      const f = this.#driverFeatures;
      const ok = (f & ~this.#offered()) === 0n && has(f, F.VERSION_1) && (this.logic.acceptFeatures?.(f) ?? true);
      // §2.2.2 / §3.1.1: a device that rejects the subset leaves FEATURES_OK clear.
      if (ok) {
        this.#features = f;
        this.#status = value;
      } else this.#violation(`features 0x${f.toString(16)} refused`);
    } else if (s === (legacy ? A | D : A | D | FOK) && value === (s | OK)) {
      if (legacy) this.#features = this.#driverFeatures & this.#offered();
      this.#status = value;
      this.#activate();
    } else {
      this.#violation(`invalid status transition 0x${s.toString(16)} -> 0x${value.toString(16)}`);
    }
  }

  #reset(): void {
    this.#epoch++;
    this.counters.resets++;
    this.#status = 0;
    this.#interruptStatus = 0;
    this.#driverFeatures = 0n;
    this.#features = 0n;
    this.#deviceFeaturesSel = 0;
    this.#driverFeaturesSel = 0;
    this.#queueSel = 0;
    this.#q = freshQueue();
    this.#queue = undefined;
    this.#wake();
  }

  /** DRIVER_OK: checks queue 0 (§2.7 sizes and alignment, all in guest memory) and starts it. */
  #activate(): void {
    const q = this.#q;
    const live = this.version === 1 ? q.pfn !== 0 : q.ready;
    const problem = !live
      ? 'queue 0 was not set up'
      : !validQueueSize(q.size) || q.size > this.logic.queueSizeMax
        ? `queue size ${q.size} is not a power of two ≤ ${this.logic.queueSizeMax}`
        : ringProblem(this.mem, q, q.size);
    if (problem) {
      this.#needsReset(`activation failed: ${problem}`);
      return;
    }
    const addrs: RingAddresses = { desc: q.desc, avail: q.avail, used: q.used };
    this.#queue = new DeviceQueue(this.mem, q.size, addrs, has(this.#features, F.EVENT_IDX));
    this.logic.activate(this.#features);
  }

  /** virtio 1.2 §2.1.2: DEVICE_NEEDS_RESET plus a configuration change notification. */
  #needsReset(why: string): void {
    this.#violation(why);
    this.#status |= STATUS.DEVICE_NEEDS_RESET;
    this.#configGeneration = (this.#configGeneration + 1) >>> 0;
    this.#raise(INT.CONFIG_CHANGE);
  }

  #notify(value: number): void {
    this.counters.notifies++;
    const s = this.#status;
    if (!(s & STATUS.DRIVER_OK) || s & (STATUS.DEVICE_NEEDS_RESET | STATUS.FAILED) || !this.#queue) {
      this.#violation(`QueueNotify in status 0x${s.toString(16)}`);
      return;
    }
    if (value !== 0) {
      this.#violation(`QueueNotify for queue ${value}, which does not exist`);
      return;
    }
    const queue = this.#queue;
    const epoch = this.#epoch;
    this.#work = this.#work.then(async () => {
      if (epoch !== this.#epoch || this.#status & STATUS.DEVICE_NEEDS_RESET) return;
      try {
        await this.logic.process(queue, () => {
          if (epoch === this.#epoch) this.#raise(INT.USED_BUFFER);
        });
      } catch (e) {
        if (epoch === this.#epoch) this.#needsReset(`queue 0 stopped: ${e instanceof Error ? e.message : String(e)}`);
      }
    });
  }

  #raise(bits: number): void {
    this.counters.interrupts++;
    this.#interruptStatus |= bits;
    this.#wake();
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  waitForInterrupt(): Promise<void> {
    if (this.#interruptStatus !== 0) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }
}

function freshQueue(): QueueRegs {
  return { size: 0, ready: false, desc: 0, avail: 0, used: 0, align: 0, pfn: 0 };
}

function ringProblem(mem: GuestMemory, q: QueueRegs, size: number): string | undefined {
  const parts: [string, number, number, number][] = [
    ['descriptor table', q.desc, descTableSize(size), DESC_ALIGN],
    ['available ring', q.avail, availRingSize(size), AVAIL_ALIGN],
    ['used ring', q.used, usedRingSize(size), USED_ALIGN],
  ];
  for (const [name, addr, len, align] of parts) {
    if (addr % align !== 0) return `${name} at 0x${addr.toString(16)} is not ${align}-byte aligned`;
    if (!mem.contains(addr, len)) return `${name} (${len} bytes at 0x${addr.toString(16)}) is outside guest memory`;
  }
  return undefined;
}
