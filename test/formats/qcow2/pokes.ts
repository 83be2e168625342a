/**
 * Header corruptions ("pokes") applied to a fresh 64M qcow2 image (64 KiB clusters; `overlay`
 * ones to an image with backing file 'base.qcow2', format 'qcow2'), with the message qemu-img 7.2
 * prints when opening the result (none: it opens) and the code vmimg gives. Several pokes combine
 * two faults to pin down the order of QEMU's checks.
 */
export interface Poke {
  name: string;
  overlay?: boolean;
  edits: Array<[offset: number, width: 1 | 4 | 8, value: bigint]>;
  /** qemu-img's message, or undefined when it opens the image. */
  qemu?: string;
  code?: 'CORRUPT_IMAGE' | 'UNSUPPORTED_IMAGE';
  /** Expected virtual size when the image opens. */
  virtualSize?: bigint;
}

export const POKES: Poke[] = [
  { name: 'size1000', edits: [[24, 8, 1000n]], virtualSize: 512n },
  { name: 'hdr104', edits: [[100, 4, 104n]], virtualSize: 64n << 20n },
  { name: 'extl2', edits: [[72, 8, 16n]], virtualSize: 64n << 20n },
  { name: 'bfs1023', overlay: true, edits: [[16, 4, 1023n]], virtualSize: 64n << 20n },
  { name: 'v4', edits: [[4, 4, 4n]], qemu: 'Unsupported qcow2 version 4', code: 'UNSUPPORTED_IMAGE' },
  { name: 'cb30', edits: [[20, 4, 30n]], qemu: 'Unsupported cluster size: 2^30', code: 'UNSUPPORTED_IMAGE' },
  { name: 'cb8', edits: [[20, 4, 8n]], qemu: 'Unsupported cluster size: 2^8', code: 'UNSUPPORTED_IMAGE' },
  { name: 'hdrshort', edits: [[100, 4, 100n]], qemu: 'qcow2 header too short', code: 'CORRUPT_IMAGE' },
  { name: 'hdrlong', edits: [[100, 4, 0x20000n]], qemu: 'qcow2 header exceeds cluster size', code: 'CORRUPT_IMAGE' },
  { name: 'bfo', overlay: true, edits: [[8, 8, 0x10001n]], qemu: 'Invalid backing file offset', code: 'CORRUPT_IMAGE' },
  { name: 'ctype2', edits: [[104, 1, 2n]], qemu: 'qcow2: unknown compression type: 2', code: 'UNSUPPORTED_IMAGE' },
  { name: 'ctype1nobit', edits: [[104, 1, 1n]], qemu: 'qcow2: Compression type incompatible feature bit must be set', code: 'CORRUPT_IMAGE' },
  { name: 'bit3zlib', edits: [[72, 8, 8n]], qemu: 'qcow2: Compression type incompatible feature bit must not be set', code: 'CORRUPT_IMAGE' },
  { name: 'feat5', edits: [[72, 8, 32n]], qemu: 'Unsupported qcow2 feature(s): Unknown incompatible feature: 20', code: 'UNSUPPORTED_IMAGE' },
  { name: 'feat6+40', edits: [[72, 8, (1n << 40n) | 64n]], qemu: 'Unsupported qcow2 feature(s): Unknown incompatible feature: 10000000040', code: 'UNSUPPORTED_IMAGE' },
  { name: 'ro7', edits: [[96, 4, 7n]], qemu: 'Reference count entry width too large; may not exceed 64 bits', code: 'CORRUPT_IMAGE' },
  { name: 'rtc0', edits: [[56, 4, 0n]], qemu: 'Image does not contain a reference count table', code: 'CORRUPT_IMAGE' },
  { name: 'rtbig', edits: [[56, 4, 65536n]], qemu: 'Reference count table too large', code: 'UNSUPPORTED_IMAGE' },
  { name: 'rtoff', edits: [[48, 8, 0x10001n]], qemu: 'Reference count table offset invalid', code: 'CORRUPT_IMAGE' },
  { name: 'snaps', edits: [[60, 4, 131072n]], qemu: 'Snapshot table too large', code: 'UNSUPPORTED_IMAGE' },
  { name: 'snapoff', edits: [[60, 4, 1n], [64, 8, 5n]], qemu: 'Snapshot table offset invalid', code: 'CORRUPT_IMAGE' },
  { name: 'l1big', edits: [[36, 4, 0x10000000n]], qemu: 'Active L1 table too large', code: 'UNSUPPORTED_IMAGE' },
  { name: 'l1off', edits: [[40, 8, 0x30001n]], qemu: 'Active L1 table offset invalid', code: 'CORRUPT_IMAGE' },
  { name: 'l1small', edits: [[24, 8, 1n << 40n], [36, 4, 0n]], qemu: 'L1 table is too small', code: 'CORRUPT_IMAGE' },
  { name: 'toobig', edits: [[24, 8, 1n << 63n]], qemu: 'Image is too big', code: 'UNSUPPORTED_IMAGE' },
  { name: 'crypt3', edits: [[32, 4, 3n]], qemu: 'Unsupported encryption method 3', code: 'UNSUPPORTED_IMAGE' },
  { name: 'extlen', edits: [[0x74, 4, 0x10000n]], qemu: 'Header extension too large', code: 'CORRUPT_IMAGE' },
  { name: 'bfmtlong', overlay: true, edits: [[0x74, 4, 16n]], qemu: 'ERROR: ext_backing_format: len=16 too large (>=16)', code: 'CORRUPT_IMAGE' },
  { name: 'bfsbig', overlay: true, edits: [[16, 4, 65100n]], qemu: 'Backing file name too long', code: 'CORRUPT_IMAGE' },
  { name: 'bfs1024', overlay: true, edits: [[16, 4, 1024n]], qemu: 'Backing file name too long', code: 'UNSUPPORTED_IMAGE' },
  // two faults: which check comes first
  { name: 'ctype+feat', edits: [[104, 1, 2n], [72, 8, 32n]], qemu: 'qcow2: unknown compression type: 2', code: 'UNSUPPORTED_IMAGE' },
  { name: 'bfo+ctype', overlay: true, edits: [[104, 1, 2n], [8, 8, 0x10001n]], qemu: 'Invalid backing file offset', code: 'CORRUPT_IMAGE' },
  { name: 'feat+ro', edits: [[72, 8, 32n], [96, 4, 7n]], qemu: 'Unsupported qcow2 feature(s): Unknown incompatible feature: 20', code: 'UNSUPPORTED_IMAGE' },
  { name: 'crypt+rtc', edits: [[32, 4, 3n], [56, 4, 0n]], qemu: 'Image does not contain a reference count table', code: 'CORRUPT_IMAGE' },
  { name: 'crypt+l1small', edits: [[32, 4, 3n], [36, 4, 0n]], qemu: 'L1 table is too small', code: 'CORRUPT_IMAGE' },
  { name: 'crypt+extlen', edits: [[32, 4, 3n], [0x74, 4, 0x10000n]], qemu: 'Unsupported encryption method 3', code: 'UNSUPPORTED_IMAGE' },
  { name: 'extlen+bfs', overlay: true, edits: [[0x74, 4, 0x10000n], [16, 4, 65100n]], qemu: 'Header extension too large', code: 'CORRUPT_IMAGE' },
];

/** Applies a poke's edits (big-endian) to a copy of `image`. */
export function applyPoke(image: Uint8Array, poke: Poke): Uint8Array {
  const out = image.slice();
  const v = new DataView(out.buffer);
  for (const [offset, width, value] of poke.edits) {
    if (width === 1) out[offset] = Number(value);
    else if (width === 4) v.setUint32(offset, Number(value));
    else v.setBigUint64(offset, value);
  }
  return out;
}
