/**
 * The MMIO transport as the driver sees it: 32-bit register reads and writes at offsets from
 * the device's base (virtio 1.2 §4.2.2: "all register values are little-endian", and the
 * driver uses 32-bit accesses for the control registers), plus the interrupt line.
 *
 * The driver talks only to this and to GuestMemory, so it runs unchanged against the in-process
 * device model (src/virtio/device), a recorded trace, or a real bus.
 */
export interface MmioTransport {
  /** Reads the 32-bit register at `offset` (4-aligned). */
  read32(offset: number): number;
  /** Writes the 32-bit register at `offset` (4-aligned). Side effects may complete later. */
  write32(offset: number, value: number): void;
  /**
   * Resolves once the device's interrupt line is raised: at once if InterruptStatus is already
   * non-zero (the line is level-triggered until InterruptACK), otherwise at the next interrupt.
   * A transport over a device that may hang should reject after its own deadline.
   */
  waitForInterrupt(): Promise<void>;
}
