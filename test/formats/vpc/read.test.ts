/**
 * Reading VHDs against qemu-img 7.2: images written by qemu-img/qemu-io (dynamic and fixed,
 * writes at known offsets including partial blocks and block boundaries, `write -z`, data
 * converted in), hand-built dynamic disks with other block sizes, and footers poked to other
 * creator applications. For each: `vmimg info` and `vmimg map` (JSON and human) print what
 * qemu-img prints, and every guest byte read through vmimg equals `qemu-img convert -O raw`.
 */
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { decodeDynamicHeader, decodeFooter, DYN_HEADER_SIZE, encodeDynamicHeader, encodeFooter, FOOTER_SIZE, type VhdFooter } from '../../../src/formats/vpc/footer.js';
import { sectorBitmapSize } from '../../../src/formats/vpc/header.js';
import { vmimg } from '../../helpers/cli.js';
import { oracle, qemuImg, tempDir } from '../../helpers/oracle.js';
import { kindAt, poke, qemuIo, readRange, sameContent, sameInfo, sameMap, sh, wholeMap, withImage } from './read-support.js';

const MiB = 1 << 20;
/** 20M rounds up to this CHS size (1016 cylinders × 16 heads... as qemu-img computes it). */
const SIZE_20M = 20994048;

const WRITES = [
  'write -P 0x11 0 4k',
  'write -P 0x22 3M 1M', // part of the second 2 MiB block
  `write -P 0x33 ${6 * MiB - 512} 1024`, // across the 6 MiB block boundary
  'write -z 10M 64k', // vpc has no zero writes: qemu writes zeros, allocating the block
  `write -P 0x44 ${SIZE_20M - 512} 512`, // the last sector
];

/** Rewrites the footer(s) of a VHD (the copy at 0 when there is one, and the one at the end). */
function rewriteFooters(path: string, change: (f: VhdFooter) => VhdFooter): void {
  const length = statSync(path).size;
  for (const at of [0, length - FOOTER_SIZE]) {
    const f = decodeFooter(readRange(path, at, FOOTER_SIZE));
    if (f.cookie !== 'conectix') continue;
    poke(path, at, encodeFooter(change(f)));
  }
}

/**
 * A dynamic VHD like qemu-img's but with another block size: footer copy, dynamic header
 * (block size, entries), an all-unallocated BAT, footer — from a qemu-made empty disk's footer.
 */
function dynamicWithBlockSize(template: string, path: string, blockSize: number): void {
  const bytes = readFileSync(template);
  const footer = bytes.subarray(0, FOOTER_SIZE);
  const dyn = decodeDynamicHeader(bytes.subarray(512, 512 + DYN_HEADER_SIZE));
  const size = Number(decodeFooter(footer).currentSize);
  const entries = Math.ceil(size / blockSize);
  const batBytes = Math.ceil((entries * 4) / 512) * 512;
  const out = new Uint8Array(1536 + batBytes + FOOTER_SIZE);
  out.set(footer, 0);
  out.set(encodeDynamicHeader({ ...dyn, blockSize, maxTableEntries: entries }), 512);
  out.fill(0xff, 1536, 1536 + batBytes);
  out.set(footer, 1536 + batBytes);
  writeFileSync(path, out);
}

async function sameEverything(dir: string, path: string, format?: string): Promise<void> {
  await sameInfo(path, format);
  await sameMap(path, format);
  await sameContent(dir, path, format);
}

test('vpc dynamic and fixed images written by qemu-io: info, map and contents equal qemu-img', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t, 'vmimg-vpc-read-');
  for (const [name, opts] of [
    ['dyn.vhd', []],
    ['fixed.vhd', ['-o', 'subformat=fixed']],
  ] as const) {
    sh(dir, 'qemu-img', ['create', '-q', '-f', 'vpc', ...opts, name, '20M']);
    qemuIo(dir, 'vpc', name, WRITES);
    const path = join(dir, name);
    await sameEverything(dir, path, 'vpc');
    // Windows of the map, and a fixed disk probed as raw (no copy of the footer at offset 0).
    await sameMap(path, 'vpc', ['--start-offset', '3M', '--max-length', '5M']);
    if (name === 'fixed.vhd') await sameInfo(path);
    else await sameMap(path);
  }
  // The dynamic disk's extents: one per allocated block at bitmap + offset, unallocated as zero.
  await withImage(join(dir, 'dyn.vhd'), undefined, async (image) => {
    const extents = await wholeMap(image);
    const bat = readRange(join(dir, 'dyn.vhd'), 1536, 11 * 4);
    for (let block = 0; block < 11; block++) {
      const entry = bat.readUInt32BE(block * 4);
      const e = kindAt(extents, block * 2 * MiB)!;
      if (entry === 0xffff_ffff) assert.equal(e.kind, 'zero', `block ${block}`);
      else assert.ok(e.kind === 'data' && e.offset === entry * 512 + 512 && e.length <= 2 * MiB, `block ${block}: ${JSON.stringify({ ...e, storage: undefined })}`);
    }
    assert.equal(image.info().clusterSize, 2 * MiB);
  });
  await withImage(join(dir, 'fixed.vhd'), 'vpc', async (image) => {
    assert.equal(image.info().clusterSize, undefined);
    const extents = await wholeMap(image);
    assert.ok(extents.every((e) => e.kind === 'data' || (e.kind === 'zero' && e.data === true && e.offset === e.start)));
  });
});

test('vpc images converted by qemu-img (dynamic, fixed, force_size) read back like the source', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t, 'vmimg-vpc-conv-');
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'raw', 'src.raw', '9M']);
  qemuIo(dir, 'raw', 'src.raw', ['write -P 0x5a 0 1M', 'write -P 0xa5 4095k 2k', 'write -P 0x77 8M 1M']);
  for (const [name, opts] of [
    ['c-dyn.vhd', []],
    ['c-fixed.vhd', ['-o', 'subformat=fixed']],
    ['c-forced.vhd', ['-o', 'force_size=on']],
  ] as const) {
    sh(dir, 'qemu-img', ['convert', '-f', 'raw', '-O', 'vpc', ...opts, 'src.raw', name]);
    await sameEverything(dir, join(dir, name), 'vpc');
  }
});

test('vpc dynamic disks with other block sizes (512 bytes to 8 MiB) read like qemu-img reads them', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t, 'vmimg-vpc-bs-');
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vpc', 'template.vhd', '20M']);
  for (const blockSize of [512, 4096, 512 * 1024, 8 * MiB]) {
    const name = `bs${blockSize}.vhd`;
    dynamicWithBlockSize(join(dir, 'template.vhd'), join(dir, name), blockSize);
    qemuIo(dir, 'vpc', name, ['write -P 0x61 0 3k', 'write -P 0x62 1000k 300k', `write -P 0x63 ${SIZE_20M - 4096} 4k`]);
    await sameEverything(dir, join(dir, name), 'vpc');
    await withImage(join(dir, name), undefined, async (image) => {
      assert.equal(image.info().clusterSize, blockSize);
      const e = kindAt(await image.map(0, 512), 0)!;
      const first = readRange(join(dir, name), 1536, 4).readUInt32BE(0);
      assert.ok(e.kind === 'data' && e.offset === first * 512 + sectorBitmapSize(blockSize));
    });
  }
});

test('vpc footers from other creator applications: size by CHS or current size exactly as 7.2 decides', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t, 'vmimg-vpc-creator-');
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vpc', 'base.vhd', '20M']);
  qemuIo(dir, 'vpc', 'base.vhd', WRITES);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vpc', '-o', 'subformat=fixed', 'base-fixed.vhd', '20M']);
  qemuIo(dir, 'vpc', 'base-fixed.vhd', WRITES);
  const cases: Array<{ creator: string; size: number; fixed?: boolean }> = [
    { creator: 'win ', size: 20 * MiB }, // Hyper-V: current size, smaller than CHS
    { creator: 'd2v ', size: 22 * MiB }, // Disk2vhd: current size, larger than CHS (still within the BAT)
    { creator: 'tap\0', size: 15 * MiB }, // XenServer
    { creator: 'CTXS', size: 21 * MiB + 512 },
    { creator: 'qem2', size: 19 * MiB },
    { creator: 'vpc ', size: 20 * MiB }, // Virtual PC: CHS, current size ignored
    { creator: 'wa\0\0', size: 20 * MiB }, // Azure: CHS in 7.2 (QEMU 10 uses the current size)
    { creator: 'win ', size: 20 * MiB - 4096, fixed: true },
    { creator: 'win ', size: 21 * MiB, fixed: true }, // past the file's data: the footer and then zeros
  ];
  for (const [i, c] of cases.entries()) {
    const name = `creator${i}.vhd`;
    copyFileSync(join(dir, c.fixed ? 'base-fixed.vhd' : 'base.vhd'), join(dir, name));
    rewriteFooters(join(dir, name), (f) => ({ ...f, creatorApp: c.creator, currentSize: BigInt(c.size), originalSize: BigInt(c.size) }));
    await sameEverything(dir, join(dir, name), 'vpc');
  }
});

test('vpc footer copy typed fixed: opened as dynamic, read straight through (vpc_co_preadv decides by type)', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t, 'vmimg-vpc-quirk-');
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vpc', 'q.vhd', '20M']);
  qemuIo(dir, 'vpc', 'q.vhd', WRITES);
  rewriteFooters(join(dir, 'q.vhd'), (f) => ({ ...f, diskType: 2 }));
  await sameEverything(dir, join(dir, 'q.vhd'));
});

test('vpc check: clean images report no errors (qemu-img 7.2 has no vpc check: exit 63)', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t, 'vmimg-vpc-check-');
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vpc', 'c.vhd', '20M']);
  qemuIo(dir, 'vpc', 'c.vhd', WRITES);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vpc', '-o', 'subformat=fixed', 'f.vhd', '20M']);
  for (const [name, format] of [
    ['c.vhd', undefined],
    ['f.vhd', 'vpc'],
  ] as const) {
    const path = join(dir, name);
    assert.equal(qemuImg(['check', ...(format ? ['-f', format] : []), path]).status, 63);
    const human = await vmimg(['check', ...(format ? ['-f', format] : []), path]);
    assert.deepEqual([human.status, human.stdout, human.stderr], [0, 'No errors were found on the image.\n', '']);
    const json = await vmimg(['check', '--output=json', ...(format ? ['-f', format] : []), path]);
    assert.equal(json.status, 0);
    assert.deepEqual(JSON.parse(json.stdout), { 'check-errors': 0, filename: path, format: 'vpc' });
  }
});

test('vpc check: BAT entries past the end, over the metadata and over each other are corruptions', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t, 'vmimg-vpc-corrupt-');
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vpc', 'base.vhd', '20M']);
  qemuIo(dir, 'vpc', 'base.vhd', ['write -P 1 0 4k', 'write -P 2 3M 4k']);
  const base = join(dir, 'base.vhd');
  const length = statSync(base).size;
  const bat = readRange(base, 1536, 8);
  const block0 = bat.readUInt32BE(0);
  const block1 = bat.readUInt32BE(4);
  const blockBytes = 512 + 2 * MiB;
  const variant = (name: string, entries: Array<[number, number]>): string => {
    const path = join(dir, name);
    copyFileSync(base, path);
    for (const [index, value] of entries) {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, value);
      poke(path, 1536 + index * 4, b);
    }
    return path;
  };
  const cases: Array<{ name: string; entries: Array<[number, number]>; lines: RegExp[] }> = [
    { name: 'past-eof', entries: [[5, length / 512]], lines: [/^VPC BAT entry 5 block \d+-\d+ points after end of file \(\d+\)\. Image has probably been truncated\.$/] },
    {
      name: 'footer-copy',
      entries: [[5, 0]],
      lines: [/^VPC BAT entry 5 block 0-2097664 overlaps with the footer copy 0-512$/, new RegExp(`^VPC BAT entry 0 block ${block0 * 512}-\\d+ overlaps with BAT entry 5 block 0-2097664$`)],
    },
    {
      name: 'over-header',
      entries: [[5, 2]],
      lines: [/^VPC BAT entry 5 block 1024-2098688 overlaps with the dynamic disk header 512-1536$/, /^VPC BAT entry 0 block \d+-\d+ overlaps with BAT entry 5 block 1024-2098688$/],
    },
    {
      name: 'same-block',
      entries: [[7, block0]],
      lines: [new RegExp(`^VPC BAT entry 7 block ${block0 * 512}-${block0 * 512 + blockBytes} overlaps with BAT entry 0 block ${block0 * 512}-${block0 * 512 + blockBytes}$`)],
    },
    {
      // 1 MiB before block 1: over the end of block 0 and the start of block 1.
      name: 'half-way',
      entries: [[8, block1 - 2048]],
      lines: [/^VPC BAT entry 8 block \d+-\d+ overlaps with BAT entry 0 block /, /^VPC BAT entry 1 block \d+-\d+ overlaps with BAT entry 8 block /],
    },
    {
      // Block 1 moved to end exactly at the end of the file, where the footer is.
      name: 'last-block-over-footer',
      entries: [[1, (length - blockBytes) / 512]],
      lines: [new RegExp(`^VPC BAT entry 1 block ${length - blockBytes}-${length} overlaps with the footer ${length - 512}-${length}$`)],
    },
  ];
  for (const c of cases) {
    const path = variant(`${c.name}.vhd`, c.entries);
    const human = await vmimg(['check', path]);
    const lines = human.stderr.trimEnd().split('\n');
    assert.equal(lines.length, c.lines.length, `${c.name}: ${human.stderr}`);
    c.lines.forEach((re, i) => assert.match(lines[i]!, re, c.name));
    assert.equal(human.status, 2, c.name);
    assert.equal(human.stdout, `\n${c.lines.length} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n`);
    const json = await vmimg(['check', '--output=json', path]);
    assert.equal(json.status, 2);
    assert.deepEqual(JSON.parse(json.stdout), { corruptions: c.lines.length, 'check-errors': 0, filename: path, format: 'vpc' });
  }
  // An entry past the end makes qemu-img refuse the image, and vmimg too (outside check).
  const past = join(dir, 'past-eof.vhd');
  const theirs = qemuImg(['info', past]);
  const ours = await vmimg(['info', past]);
  assert.equal(theirs.status, 1);
  assert.equal(ours.status, 1);
  assert.match(theirs.stderr, /The image has been truncated\./);
  assert.match(ours.stderr, /The image has been truncated\. \[CORRUPT_IMAGE\]/);
});
