/**
 * vpc (VHD) creation, byte for byte as qemu-img 7.2 (block/vpc.c, vpc_co_create_opts and
 * vpc_co_create) lays it out, except for the footer's timestamp and UUID, which come from the
 * context's clock and random source.
 *
 * Dynamic:  footer copy @0 | dynamic header @512 (1024 B) | BAT @1536, 2 MiB blocks, all entries
 *           0xFFFFFFFF, padded with 0xFF to a sector | footer.
 * Fixed:    the disk's bytes (a hole, but for its first block: zeros) | footer. No copy at 0,
 *           so the file probes as raw. QEMU creates the file through file-posix with the
 *           requested size, which writes zeros over the first 4096 bytes (512 when the requested
 *           size is below 4096; allocate_first_block) before vpc writes the footer: `qemu-img
 *           map` shows that block as data.
 */
import { VmimgError } from '../../util/errors.js';
import { roundUpBig, SECTOR_SIZE } from '../../util/units.js';
import { PROTOCOL_OPTIONS_UNSUPPORTED, type OptionSpec } from '../options.js';
import type { CreateContext, Layout, PlannedWrite } from '../types.js';
import {
  DISK_TYPE_DYNAMIC,
  DISK_TYPE_FIXED,
  DYN_HEADER_COOKIE,
  encodeDynamicHeader,
  encodeFooter,
  FOOTER_COOKIE,
  FOOTER_SIZE,
  NO_OFFSET,
  vhdTimestamp,
  type VhdFooter,
} from './footer.js';
import { roundedImageSize, type Chs } from './geometry.js';

export const VPC_OPTIONS: readonly OptionSpec[] = [
  { name: 'size', type: 'size', help: 'Virtual disk size' },
  { name: 'subformat', type: 'str', help: 'Type of virtual hard disk format. Supported formats are {dynamic (default) | fixed} ' },
  {
    name: 'force_size',
    type: 'bool',
    help: 'Force disk size calculation to use the actual size specified, rather than using the nearest CHS-based calculation',
  },
];

/** qemu-img also takes the file protocol's options for vpc; it ignores preallocation there. */
export const VPC_UNSUPPORTED: Readonly<Record<string, string>> = {
  ...PROTOCOL_OPTIONS_UNSUPPORTED,
  preallocation: 'file-protocol options are not supported (for vpc, qemu-img ignores preallocation anyway)',
};

/** Block size of dynamic disks qemu-img creates. */
export const VPC_CREATE_BLOCK_SIZE = 2 * 1024 * 1024;
/** Where qemu-img puts the dynamic header and the BAT. */
export const DYN_HEADER_OFFSET = 512;
export const BAT_OFFSET = 1536;

/** Footer "Creator Version" qemu-img writes: Virtual PC 2007, 5.3. */
export const QEMU_CREATOR_VERSION = 0x0005_0003;
/** Footer "Features": the reserved bit the spec says must always be set. */
export const FEATURES_RESERVED = 0x2;
export const FORMAT_VERSION = 0x0001_0000;

export type VpcSubformat = 'dynamic' | 'fixed';

export interface VpcCreateParams {
  subformat: VpcSubformat;
  forceSize: boolean;
  /** The size the image records and exposes, in bytes (a whole number of sectors). */
  size: bigint;
  /** Fixed disks: how many zero bytes QEMU's file creation writes at offset 0. */
  firstBlock: number;
  chs: Chs;
  timestamp: number;
  uuid: Uint8Array;
}

/** A random (version 4) UUID, as QEMU's qemu_uuid_generate makes one. */
export function randomUuid(random: (n: number) => Uint8Array): Uint8Array {
  const bytes = Uint8Array.from(random(16).subarray(0, 16));
  if (bytes.length !== 16) throw new VmimgError('INTERNAL', 'random source returned fewer than 16 bytes', {});
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  return bytes;
}

/** Validates the options the way vpc_co_create_opts does and computes the geometry and size. */
export function parseVpcParams(ctx: CreateContext): VpcCreateParams {
  const subformatText = ctx.options.str('subformat') ?? 'dynamic';
  if (subformatText !== 'dynamic' && subformatText !== 'fixed') {
    throw new VmimgError('INVALID_OPTION', `Parameter 'subformat' does not accept value '${subformatText}' (allowed: dynamic, fixed)`, {
      key: 'subformat',
      value: subformatText,
    });
  }
  const forceSize = ctx.options.bool('force_size', false);
  const bytes = roundUpBig(ctx.size, BigInt(SECTOR_SIZE));
  const rounded = roundedImageSize(bytes / BigInt(SECTOR_SIZE), forceSize);
  if (!rounded) {
    throw new VmimgError('SIZE_OUT_OF_RANGE', `The image size is too large for file format 'vpc' (${ctx.size} bytes; the maximum is 2040 GiB)`, {
      size: ctx.size.toString(),
      max: (0xff00_0000n * 512n).toString(),
    });
  }
  if (subformatText === 'fixed' && rounded.sectors === 0) {
    // qemu-img writes just the footer, which then sits at offset 0, where a reader takes it for
    // a dynamic disk's footer copy: qemu-img cannot open that file ("Error reading dynamic VHD
    // header"). vmimg refuses instead of writing it.
    throw new VmimgError('SIZE_OUT_OF_RANGE', 'A fixed VHD needs a size of at least 1 byte: an empty one would be its footer alone, which readers take for a dynamic disk', {
      size: ctx.size.toString(),
    });
  }
  return {
    subformat: subformatText,
    forceSize,
    size: BigInt(rounded.sectors) * BigInt(SECTOR_SIZE),
    firstBlock: Math.min(rounded.sectors * SECTOR_SIZE, ctx.size < 4096n ? SECTOR_SIZE : 4096),
    chs: rounded.chs,
    timestamp: vhdTimestamp(ctx.now()),
    uuid: randomUuid(ctx.random),
  };
}

/** The footer qemu-img writes for these parameters. */
export function createFooter(p: VpcCreateParams): VhdFooter {
  return {
    cookie: FOOTER_COOKIE,
    features: FEATURES_RESERVED,
    formatVersion: FORMAT_VERSION,
    dataOffset: p.subformat === 'dynamic' ? BigInt(DYN_HEADER_OFFSET) : NO_OFFSET,
    timestamp: p.timestamp,
    creatorApp: p.forceSize ? 'qem2' : 'qemu',
    creatorVersion: QEMU_CREATOR_VERSION,
    creatorOs: 'Wi2k',
    originalSize: p.size,
    currentSize: p.size,
    cylinders: p.chs.cylinders,
    heads: p.chs.heads,
    sectorsPerTrack: p.chs.sectorsPerTrack,
    diskType: p.subformat === 'dynamic' ? DISK_TYPE_DYNAMIC : DISK_TYPE_FIXED,
    checksum: 0,
    uuid: p.uuid,
    savedState: 0,
  };
}

/** Number of BAT entries qemu-img gives a dynamic disk: one per started 2 MiB block. */
export function batEntriesFor(size: bigint): number {
  return Number((size + BigInt(VPC_CREATE_BLOCK_SIZE) - 1n) / BigInt(VPC_CREATE_BLOCK_SIZE));
}

/** BAT bytes on disk: 4 per entry, padded to a whole sector. */
export function batBytesFor(entries: number): number {
  return Math.ceil((entries * 4) / SECTOR_SIZE) * SECTOR_SIZE;
}

/** The dynamic disk header qemu-img writes at DYN_HEADER_OFFSET for a BAT of `entries` entries. */
export function createDynamicHeader(entries: number): Uint8Array {
  return encodeDynamicHeader({
    cookie: DYN_HEADER_COOKIE,
    dataOffset: NO_OFFSET,
    tableOffset: BigInt(BAT_OFFSET),
    headerVersion: FORMAT_VERSION,
    maxTableEntries: entries,
    blockSize: VPC_CREATE_BLOCK_SIZE,
    checksum: 0,
    parentUuid: new Uint8Array(16),
    parentTimestamp: 0,
    parentName: new Uint8Array(512),
    parentLocators: new Uint8Array(192),
  });
}

/**
 * Where the first data block goes: right after the BAT, rounded up to a sector (QEMU's
 * vpc_open sets free_data_block_offset there; create's footer sits there until a block is
 * allocated over it).
 */
export function firstBlockOffset(entries: number): number {
  return BAT_OFFSET + batBytesFor(entries);
}

export function planVpc(p: VpcCreateParams): Layout {
  const footer = encodeFooter(createFooter(p));
  if (p.subformat === 'fixed') {
    const length = Number(p.size) + FOOTER_SIZE;
    return {
      length,
      writes: [
        { offset: 0, data: new Uint8Array(p.firstBlock) },
        { offset: Number(p.size), data: footer },
      ],
      allocate: [],
      summary: { virtualSize: p.size, subformat: 'fixed' },
    };
  }
  const entries = batEntriesFor(p.size);
  const batBytes = batBytesFor(entries);
  const dynHeader = createDynamicHeader(entries);
  const writes: PlannedWrite[] = [
    { offset: 0, data: footer },
    { offset: DYN_HEADER_OFFSET, data: dynHeader },
  ];
  if (batBytes > 0) writes.push({ offset: BAT_OFFSET, data: new Uint8Array(batBytes).fill(0xff) });
  writes.push({ offset: BAT_OFFSET + batBytes, data: footer });
  return {
    length: BAT_OFFSET + batBytes + FOOTER_SIZE,
    writes,
    allocate: [],
    summary: { virtualSize: p.size, clusterSize: VPC_CREATE_BLOCK_SIZE, subformat: 'dynamic' },
  };
}
