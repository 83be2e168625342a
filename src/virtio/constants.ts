/**
 * virtio-mmio and virtio-blk numbers shared by the driver and the device model.
 * Spec references are to virtio 1.2 (cs01); section names are given so they survive renumbering
 * (the 1.3/1.4 texts keep the same titles).
 */

/** virtio 1.2 §4.2.2 "MMIO Device Register Layout": offsets valid in both register maps. */
export const REG = {
  MAGIC: 0x000,
  VERSION: 0x004,
  DEVICE_ID: 0x008,
  VENDOR_ID: 0x00c,
  DEVICE_FEATURES: 0x010,
  DEVICE_FEATURES_SEL: 0x014,
  DRIVER_FEATURES: 0x020,
  DRIVER_FEATURES_SEL: 0x024,
  QUEUE_SEL: 0x030,
  QUEUE_SIZE_MAX: 0x034,
  QUEUE_SIZE: 0x038,
  QUEUE_NOTIFY: 0x050,
  INTERRUPT_STATUS: 0x060,
  INTERRUPT_ACK: 0x064,
  STATUS: 0x070,
  CONFIG: 0x100,
} as const;

/** virtio 1.2 §4.2.4 "Legacy interface": registers that exist only when Version = 1. */
export const LEGACY_REG = {
  GUEST_PAGE_SIZE: 0x028,
  QUEUE_ALIGN: 0x03c,
  QUEUE_PFN: 0x040,
} as const;

/** virtio 1.2 §4.2.2: registers that exist only when Version = 2. */
export const MODERN_REG = {
  QUEUE_READY: 0x044,
  QUEUE_DESC_LOW: 0x080,
  QUEUE_DESC_HIGH: 0x084,
  QUEUE_DRIVER_LOW: 0x090,
  QUEUE_DRIVER_HIGH: 0x094,
  QUEUE_DEVICE_LOW: 0x0a0,
  QUEUE_DEVICE_HIGH: 0x0a4,
  CONFIG_GENERATION: 0x0fc,
} as const;

/** "virt" little-endian (virtio 1.2 §4.2.2 MagicValue). */
export const MMIO_MAGIC = 0x74726976;
export const MMIO_VERSION_LEGACY = 1;
export const MMIO_VERSION_MODERN = 2;
/** virtio 1.2 §5 "Device Types": 2 is a block device; 0 is a placeholder the driver must skip. */
export const DEVICE_ID_BLOCK = 2;

/** virtio 1.2 §2.1 "Device Status Field". */
export const STATUS = {
  ACKNOWLEDGE: 1,
  DRIVER: 2,
  DRIVER_OK: 4,
  FEATURES_OK: 8,
  DEVICE_NEEDS_RESET: 64,
  FAILED: 128,
} as const;

/** virtio 1.2 §4.2.2 InterruptStatus bits. */
export const INT = { USED_BUFFER: 1, CONFIG_CHANGE: 2 } as const;

/** Feature bit numbers (bigint masks via `bit()`): virtio 1.2 §6 "Reserved Feature Bits", §5.2.3. */
export const F = {
  BLK_SIZE_MAX: 1,
  BLK_SEG_MAX: 2,
  BLK_RO: 5,
  BLK_BLK_SIZE: 6,
  BLK_FLUSH: 9,
  INDIRECT_DESC: 28,
  EVENT_IDX: 29,
  VERSION_1: 32,
} as const;

export const bit = (n: number): bigint => 1n << BigInt(n);
export const has = (features: bigint, n: number): boolean => (features & bit(n)) !== 0n;

/** virtio 1.2 §2.7.5 "The Virtqueue Descriptor Table": descriptor flags. */
export const DESC_F = { NEXT: 1, WRITE: 2, INDIRECT: 4 } as const;
/** virtio 1.2 §2.7.6 / §2.7.8: ring flags. */
export const AVAIL_F_NO_INTERRUPT = 1;
export const USED_F_NO_NOTIFY = 1;

/** virtio 1.2 §2.7: "Queue Size ... maximum Queue Size value is 32768". */
export const MAX_QUEUE_SIZE = 32768;

/** virtio 1.2 §5.2.6 "Device Operation": request types and statuses. */
export const BLK_T = { IN: 0, OUT: 1, FLUSH: 4, GET_ID: 8 } as const;
export const BLK_S = { OK: 0, IOERR: 1, UNSUPP: 2 } as const;
/** Header: le32 type, le32 reserved, le64 sector. */
export const BLK_HEADER_SIZE = 16;
/** virtio-blk sectors are always 512 bytes, whatever blk_size says (§5.2.6). */
export const BLK_SECTOR = 512;
/** GET_ID answers a NUL-padded ASCII string of at most 20 bytes (§5.2.6). */
export const BLK_ID_BYTES = 20;

/** virtio 1.2 §5.2.4 "Device configuration layout": offsets inside the config space. */
export const BLK_CFG = {
  CAPACITY: 0x00,
  SIZE_MAX: 0x08,
  SEG_MAX: 0x0c,
  BLK_SIZE: 0x14,
  /** Bytes of config the device model exposes (through num_queues, padded to 4). */
  LENGTH: 0x24,
} as const;
