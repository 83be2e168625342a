/** virtio-blk over virtio-mmio: the driver library, the device model, and what they share. */
export * from './constants.js';
export { GuestMemory, guestAddr, addrFromU64, type GuestAddr } from './guest-memory.js';
export type { MmioTransport } from './transport.js';
export * from './ring.js';
export { GuestAllocator } from './driver/alloc.js';
export { DriverQueue, type Buffer } from './driver/queue.js';
export { setupMmioDevice, type MmioSetupOptions, type ConfigReader } from './driver/mmio.js';
export { VirtioBlkDriver, MAX_TRANSFER, MAX_SPLIT_READ, type BlkDriverOptions, type BlkInfo } from './driver/blk.js';
export { VirtioMmioDevice, type DeviceLogic } from './device/mmio.js';
export { DeviceQueue } from './device/queue.js';
export { walkChain, ByteStream, type Segment, type ChainWalk } from './device/chain.js';
export { planRequest, executeRequest, type BlkPlan, type BlkRequest } from './device/blk.js';
export { VirtioBlkDevice, createBlkDevice, type BlkDeviceOptions, type BlkDeviceStats } from './device/blk-device.js';
export { attachVirtioDisk, type VirtioDisk } from './disk.js';
export { chainBackend, imageBackend, rawWritableBackend, storageBackend, memoryBackend, BACKEND_CHUNK, type BlockBackend } from './device/backend.js';
