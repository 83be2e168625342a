/**
 * Driver-side virtio-mmio bring-up (virtio 1.2 §3.1.1 "Driver Requirements: Device
 * Initialization", §4.2.3 "MMIO-specific Initialization And Device Operation", §4.2.4 "Legacy
 * interface"). The register map is chosen from Version: 2 → modern (QueueDesc/Driver/Device
 * addresses, QueueReady, FEATURES_OK), 1 → legacy (GuestPageSize, QueueAlign, QueuePFN and the
 * contiguous 4096-aligned ring layout, no FEATURES_OK). Any refusal sets FAILED and throws
 * VIRTIO_INIT_FAILED naming the step.
 */
import { DEVICE_ID_BLOCK, F, LEGACY_REG, MMIO_MAGIC, MMIO_VERSION_LEGACY, MMIO_VERSION_MODERN, MODERN_REG, REG, STATUS, bit, has } from '../constants.js';
import type { GuestMemory } from '../guest-memory.js';
import { AVAIL_ALIGN, DESC_ALIGN, LEGACY_QUEUE_ALIGN, USED_ALIGN, availRingSize, descTableSize, legacyLayout, usedRingSize, type RingAddresses } from '../ring.js';
import type { MmioTransport } from '../transport.js';
import { VmimgError } from '../../util/errors.js';
import type { GuestAllocator } from './alloc.js';
import { DriverQueue } from './queue.js';

export interface MmioSetupOptions {
  /** Expected DeviceID (default 2, block). */
  deviceId?: number;
  /** Device-type features the driver understands; transport bits (VERSION_1, EVENT_IDX) are added here. */
  wanted: bigint;
  /** Use EVENT_IDX when offered (default true). */
  eventIdx?: boolean;
  /** Requested queue size; the device's QueueSizeMax caps it, rounded down to a power of two. */
  queueSize: number;
  /** Smallest usable queue size (below it, bring-up fails). */
  minQueueSize: number;
  /** Reads device config before DRIVER_OK; a throw here sets FAILED. */
  readConfig: (cfg: ConfigReader, features: bigint) => void;
}

/** 32-bit reads of the device-specific configuration space (offsets relative to 0x100). */
export interface ConfigReader {
  u32(offset: number): number;
  u64(offset: number): bigint;
}

export interface MmioDevice {
  version: 1 | 2;
  features: bigint;
  queue: DriverQueue;
}

/** Legacy guest page size the driver announces (Linux writes PAGE_SIZE). */
const GUEST_PAGE = 4096;
/** Bounded retries of a config read that races with ConfigGeneration changes (§2.5.1 "Device Configuration Space"). */
const CONFIG_RETRIES = 8;

export function setupMmioDevice(t: MmioTransport, mem: GuestMemory, alloc: GuestAllocator, o: MmioSetupOptions): MmioDevice {
  const fail = (step: string, details: Record<string, unknown> = {}): never => {
    t.write32(REG.STATUS, t.read32(REG.STATUS) | STATUS.FAILED);
    throw new VmimgError('VIRTIO_INIT_FAILED', `virtio-mmio bring-up failed: ${step}`, details);
  };
  // §4.2.3.1.1: check magic, version and device id before anything else; no FAILED for a non-device.
  const magic = t.read32(REG.MAGIC);
  if (magic !== MMIO_MAGIC) throw new VmimgError('VIRTIO_INIT_FAILED', `No virtio-mmio device: magic 0x${magic.toString(16)}`, { magic });
  const version = t.read32(REG.VERSION);
  if (version !== MMIO_VERSION_LEGACY && version !== MMIO_VERSION_MODERN) {
    throw new VmimgError('VIRTIO_INIT_FAILED', `Unsupported virtio-mmio version ${version} (1 and 2 are known)`, { version });
  }
  const deviceId = t.read32(REG.DEVICE_ID);
  const want = o.deviceId ?? DEVICE_ID_BLOCK;
  if (deviceId !== want) throw new VmimgError('VIRTIO_INIT_FAILED', `virtio-mmio device id is ${deviceId}, expected ${want}`, { deviceId });
  const legacy = version === MMIO_VERSION_LEGACY;

  // §3.1.1 steps 1–3: reset, ACKNOWLEDGE, DRIVER.
  t.write32(REG.STATUS, 0);
  if (t.read32(REG.STATUS) !== 0) fail('device did not reset (Status not 0)');
  if (legacy) t.write32(LEGACY_REG.GUEST_PAGE_SIZE, GUEST_PAGE);
  t.write32(REG.STATUS, STATUS.ACKNOWLEDGE);
  t.write32(REG.STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER);

  // Step 4: features. §4.2.2: select, then read/write each 32-bit half.
  let offered = 0n;
  for (let sel = 0; sel < (legacy ? 1 : 2); sel++) {
    t.write32(REG.DEVICE_FEATURES_SEL, sel);
    offered |= BigInt(t.read32(REG.DEVICE_FEATURES)) << BigInt(32 * sel);
  }
  let wanted = o.wanted;
  if (o.eventIdx ?? true) wanted |= bit(F.EVENT_IDX);
  if (!legacy) {
    // Linux vm_finalize_features: a version-2 device must offer VERSION_1.
    if (!has(offered, F.VERSION_1)) fail('modern (version 2) device does not offer VIRTIO_F_VERSION_1');
    wanted |= bit(F.VERSION_1);
  }
  const features = offered & wanted;
  for (let sel = 0; sel < (legacy ? 1 : 2); sel++) {
    t.write32(REG.DRIVER_FEATURES_SEL, sel);
    t.write32(REG.DRIVER_FEATURES, Number((features >> BigInt(32 * sel)) & 0xffffffffn));
  }
  // Steps 5–6 (modern only): FEATURES_OK, then re-read it.
  if (!legacy) {
    t.write32(REG.STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK);
    if (!(t.read32(REG.STATUS) & STATUS.FEATURES_OK)) fail(`device refused features 0x${features.toString(16)} (FEATURES_OK not set)`, { features: features.toString(16) });
  }

  // Step 7: device-specific setup: config, then queue 0.
  let queue: DriverQueue;
  try {
    o.readConfig(configReader(t, legacy), features);
    queue = setupQueue(t, mem, alloc, legacy, features, o, fail);
  } catch (e) {
    // Hostile config values and an exhausted driver region end bring-up like a refusal.
    if (e instanceof VmimgError && !(t.read32(REG.STATUS) & STATUS.FAILED)) fail(e.message, { ...e.details });
    throw e;
  }

  // Step 8.
  const base = legacy ? STATUS.ACKNOWLEDGE | STATUS.DRIVER : STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK;
  t.write32(REG.STATUS, base | STATUS.DRIVER_OK);
  const status = t.read32(REG.STATUS);
  if (!(status & STATUS.DRIVER_OK) || status & STATUS.DEVICE_NEEDS_RESET) fail(`device did not accept DRIVER_OK (Status 0x${status.toString(16)})`, { status });
  return { version: legacy ? 1 : 2, features, queue };
}

function setupQueue(t: MmioTransport, mem: GuestMemory, alloc: GuestAllocator, legacy: boolean, features: bigint, o: MmioSetupOptions, fail: (s: string, d?: Record<string, unknown>) => never): DriverQueue {
  t.write32(REG.QUEUE_SEL, 0);
  const inUse = legacy ? t.read32(LEGACY_REG.QUEUE_PFN) : t.read32(MODERN_REG.QUEUE_READY);
  if (inUse !== 0) fail('queue 0 is already in use after reset');
  const max = t.read32(REG.QUEUE_SIZE_MAX);
  if (max === 0) fail('queue 0 is not available (QueueSizeMax 0)');
  let size = 1;
  while (size * 2 <= Math.min(max, o.queueSize, 32768)) size *= 2;
  if (size < o.minQueueSize) fail(`queue size ${size} (device max ${max}, requested ${o.queueSize}) is below the ${o.minQueueSize} this driver needs`, { max });
  t.write32(REG.QUEUE_SIZE, size);
  let addrs: RingAddresses;
  if (legacy) {
    // §4.2.4: one zeroed, page-aligned region; QueueAlign then QueuePFN (Linux vm_setup_vq).
    const total = legacyLayout(0, size, LEGACY_QUEUE_ALIGN).total;
    const base = alloc.alloc(total, GUEST_PAGE);
    const pfn = base / GUEST_PAGE;
    if (pfn > 0xffffffff || pfn === 0) fail(`legacy queue at 0x${base.toString(16)} has no valid 32-bit PFN`);
    addrs = legacyLayout(base, size, LEGACY_QUEUE_ALIGN);
    t.write32(LEGACY_REG.QUEUE_ALIGN, LEGACY_QUEUE_ALIGN);
    t.write32(LEGACY_REG.QUEUE_PFN, pfn);
    if (t.read32(LEGACY_REG.QUEUE_PFN) !== pfn) fail('device did not take QueuePFN');
  } else {
    // §2.7 alignment table; §4.2.3.2: addresses, then QueueReady = 1.
    addrs = {
      desc: alloc.alloc(descTableSize(size), DESC_ALIGN),
      avail: alloc.alloc(availRingSize(size), AVAIL_ALIGN),
      used: alloc.alloc(usedRingSize(size), USED_ALIGN),
    };
    const pairs: [number, number][] = [
      [MODERN_REG.QUEUE_DESC_LOW, addrs.desc],
      [MODERN_REG.QUEUE_DRIVER_LOW, addrs.avail],
      [MODERN_REG.QUEUE_DEVICE_LOW, addrs.used],
    ];
    for (const [reg, addr] of pairs) {
      t.write32(reg, addr % 2 ** 32);
      t.write32(reg + 4, Math.floor(addr / 2 ** 32));
    }
    t.write32(MODERN_REG.QUEUE_READY, 1);
    if (t.read32(MODERN_REG.QUEUE_READY) !== 1) fail('device did not set QueueReady');
  }
  return new DriverQueue(mem, size, addrs, has(features, F.EVENT_IDX));
}

/** Config reads; modern ones are bracketed by ConfigGeneration (§2.5.1, §4.2.2). */
function configReader(t: MmioTransport, legacy: boolean): ConfigReader {
  const stable = <T>(read: () => T): T => {
    if (legacy) return read();
    for (let i = 0; i < CONFIG_RETRIES; i++) {
      const before = t.read32(MODERN_REG.CONFIG_GENERATION);
      const v = read();
      if (t.read32(MODERN_REG.CONFIG_GENERATION) === before) return v;
    }
    throw new VmimgError('VIRTIO_DEVICE_ERROR', `ConfigGeneration kept changing over ${CONFIG_RETRIES} reads`, {});
  };
  return {
    u32: (off) => stable(() => t.read32(REG.CONFIG + off)),
    u64: (off) => stable(() => BigInt(t.read32(REG.CONFIG + off)) | (BigInt(t.read32(REG.CONFIG + off + 4)) << 32n)),
  };
}
