/**
 * Damaged images for convert --salvage, made by qemu-img and then patched where both tools
 * fail to read: a compressed qcow2 cluster whose deflate stream is broken (QEMU: EIO), a
 * qcow2 L2 entry whose data offset is not cluster-aligned (QEMU: block status and read fail
 * with EIO, "Cluster allocation offset … unaligned"), and a streamOptimized vmdk grain that does
 * not inflate (QEMU: EINVAL). In each, guest cluster 3 (bytes 196608..262143) is the bad one.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { seededRandom } from '../helpers/random.js';
import { qemuImg } from '../helpers/oracle.js';
import { readRange, writeRange } from '../helpers/images.js';

export const BAD_START = 3 * 65536;
export const BAD_END = 4 * 65536;

/** 1 MiB of compressible, cluster-distinct bytes. */
export function sourceRaw(dir: string, name = 'src.raw'): string {
  const rnd = seededRandom(7);
  const out = new Uint8Array(1 << 20);
  for (let pos = 0; pos < out.length; pos += 128) {
    out.fill((pos >>> 16) + 1, pos, pos + 100);
    out.set(rnd(28), pos + 100);
  }
  const path = join(dir, name);
  writeFileSync(path, out);
  return path;
}

/** Offset of L2 entry `index` of the first L2 table (qcow2 spec: header, L1, L2). */
function l2EntryOffset(path: string, index: number): number {
  const h = readRange(path, 0, 48);
  const l1 = Number(h.readBigUInt64BE(40));
  const l2 = Number(readRange(path, l1, 8).readBigUInt64BE(0) & 0x00ff_ffff_ffff_fe00n);
  return l2 + 8 * index;
}

function convert(args: string[]): void {
  const r = qemuImg(['convert', ...args]);
  assert.equal(r.status, 0, r.stderr);
}

/** qemu-img convert -c, then 40 bytes of cluster 3's deflate stream overwritten. */
export function brokenCompressedQcow2(dir: string, src: string): string {
  const path = join(dir, 'compressed.qcow2');
  convert(['-f', 'raw', '-O', 'qcow2', '-c', src, path]);
  const entry = readRange(path, l2EntryOffset(path, 3), 8).readBigUInt64BE(0);
  assert.ok(entry & (1n << 62n), 'cluster 3 is compressed');
  const host = Number(entry & ((1n << 54n) - 1n)); // cluster_bits 16: offset in the low 62-(16-8) bits
  writeRange(path, host + 5, new Uint8Array(40).fill(0xff));
  return path;
}

/** A plain qcow2 whose L2 entry for cluster 3 points 512 bytes into its cluster. */
export function misalignedQcow2(dir: string, src: string): string {
  const path = join(dir, 'misaligned.qcow2');
  convert(['-f', 'raw', '-O', 'qcow2', src, path]);
  const at = l2EntryOffset(path, 3);
  const entry = readRange(path, at, 8).readBigUInt64BE(0);
  const patched = Buffer.alloc(8);
  patched.writeBigUInt64BE(entry + 512n);
  writeRange(path, at, patched);
  return path;
}

/** qemu-img's streamOptimized vmdk with 32 bytes of grain 3's deflate stream overwritten. */
export function brokenStreamVmdk(dir: string, src: string): string {
  const path = join(dir, 'stream.vmdk');
  convert(['-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', src, path]);
  const header = readRange(path, 0, 64);
  const gd = Number(header.readBigUInt64LE(56)); // sectors (QEMU's flavour keeps the GD in the header area)
  const gt = readRange(path, gd * 512, 4).readUInt32LE(0);
  const grain = readRange(path, gt * 512 + 3 * 4, 4).readUInt32LE(0);
  // A grain record: lba u64, size u32, then the deflate data.
  assert.equal(Number(readRange(path, grain * 512, 8).readBigUInt64LE(0)), BAD_START / 512);
  writeRange(path, grain * 512 + 12 + 8, new Uint8Array(32).fill(0xff));
  return path;
}
