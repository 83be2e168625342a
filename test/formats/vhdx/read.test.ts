/**
 * Reading VHDX images against qemu-img 7.2: dynamic and fixed disks with several block sizes,
 * block_state_zero on and off, a larger log, writes at known offsets (partial blocks, block
 * boundaries, `write -z`, the last sector) and data converted in. For each: `vmimg info`,
 * `vmimg map` (JSON and human: qemu-img 7.2 has no vhdx block status, so both report one data
 * range and the human form fails alike) and `vmimg check` print what qemu-img prints; every guest
 * byte read through vmimg equals `qemu-img convert -O raw`; and vmimg's own extents follow the
 * BAT states. Then check on poked BATs (qemu-img's messages and counts, and what vmimg adds).
 * Logs to replay: log.test.ts.
 */
import assert from 'node:assert/strict';
import { copyFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ChainReader } from '../../../src/chain/read.js';
import { readVhdxFacts } from '../../../src/formats/vhdx/header.js';
import { payloadBatIndex } from '../../../src/formats/vhdx/params.js';
import { FileStorage } from '../../../src/storage/file.js';
import { VmimgError } from '../../../src/util/errors.js';
import { vmimg } from '../../helpers/cli.js';
import { oracle, qemuImg, tempDir } from '../../helpers/oracle.js';
import { kindAt, messages, poke, qemuIo, readRange, sameCheck, sameContent, sameInfo, sameMap, sh, u64le, wholeMap, withImage } from '../vpc/read-support.js';

const MiB = 1 << 20;

async function factsOf(path: string) {
  const s = await FileStorage.open(path);
  try {
    return await readVhdxFacts(s, { check: true });
  } finally {
    await s.close();
  }
}

function writesFor(size: number, blockSize: number): string[] {
  return [
    'write -P 0x11 0 4k',
    `write -P 0x22 ${3 * MiB} 1M`,
    `write -P 0x33 ${blockSize - 512} 1024`, // across the first block boundary
    `write -z ${10 * MiB} 64k`,
    `write -P 0x44 ${size - 512} 512`,
  ];
}

/** vmimg's extents follow the BAT: FULLY_PRESENT → data at its offset, ZERO → zero, else unallocated. */
async function extentsFollowBat(path: string): Promise<void> {
  const f = await factsOf(path);
  const g = f.geometry;
  const batAt = Number(f.batRegion.fileOffset);
  await withImage(path, undefined, async (image) => {
    assert.equal(image.info().clusterSize, g.blockSize);
    assert.equal(image.qemuReportsAllData, true);
    const extents = await wholeMap(image);
    for (let block = 0; block * g.blockSize < image.virtualSize; block++) {
      const raw = readRange(path, batAt + payloadBatIndex(g, block) * 8, 8).readBigUInt64LE(0);
      const state = Number(raw & 7n);
      const e = kindAt(extents, block * g.blockSize)!;
      if (state === 6) assert.ok(e.kind === 'data' && e.offset + (block * g.blockSize - e.start) === Number(raw & ~0xfffffn), `block ${block} data`);
      else assert.equal(e.kind, state === 2 ? 'zero' : 'unallocated', `block ${block} state ${state}`);
    }
  });
}

async function sameEverything(dir: string, path: string): Promise<void> {
  await sameInfo(path);
  await sameMap(path);
  await sameContent(dir, path);
  await sameCheck(path);
  await extentsFollowBat(path);
}

test('vhdx images written by qemu-io: info, map, check and contents equal qemu-img; extents follow the BAT', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t, 'vmimg-vhdx-read-');
  const cases: Array<{ name: string; size: number; blockSize: number; options?: string }> = [
    { name: 'dyn8.vhdx', size: 64 * MiB, blockSize: 8 * MiB },
    { name: 'dyn1-nozero.vhdx', size: 20 * MiB, blockSize: MiB, options: 'block_size=1M,block_state_zero=off' },
    { name: 'dyn32.vhdx', size: 100 * MiB + 4096, blockSize: 32 * MiB, options: 'block_size=32M' },
    { name: 'fixed-zero.vhdx', size: 20 * MiB, blockSize: 8 * MiB, options: 'subformat=fixed' },
    { name: 'fixed1-nozero.vhdx', size: 20 * MiB + 512, blockSize: MiB, options: 'subformat=fixed,block_state_zero=off,block_size=1M' },
    { name: 'log3.vhdx', size: 20 * MiB, blockSize: 2 * MiB, options: 'log_size=3M,block_size=2M' },
  ];
  for (const c of cases) {
    sh(dir, 'qemu-img', ['create', '-q', '-f', 'vhdx', ...(c.options ? ['-o', c.options] : []), c.name, String(c.size)]);
    qemuIo(dir, 'vhdx', c.name, writesFor(c.size, c.blockSize));
    await sameEverything(dir, join(dir, c.name));
  }
  // The human map fails as qemu-img's does (no offsets to print); vmimg says why.
  const human = await vmimg(['map', join(dir, 'dyn8.vhdx')]);
  assert.equal(human.status, 1);
  assert.match(human.stderr, /File contains external, encrypted or compressed clusters\./);
  // An empty dynamic disk: BAT of ZERO entries, no blocks.
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vhdx', 'empty.vhdx', '1G']);
  await sameEverything(dir, join(dir, 'empty.vhdx'));
});

test('vhdx images converted by qemu-img (dynamic, fixed, small blocks) read back like the source', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t, 'vmimg-vhdx-conv-');
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'raw', 'src.raw', '9M']);
  qemuIo(dir, 'raw', 'src.raw', ['write -P 0x5a 0 1M', 'write -P 0xa5 4095k 2k', 'write -P 0x77 8M 1M']);
  for (const [name, opts] of [
    ['c-dyn.vhdx', []],
    ['c-fixed.vhdx', ['-o', 'subformat=fixed,block_state_zero=off']],
    ['c-1m.vhdx', ['-o', 'block_size=1M']],
  ] as const) {
    sh(dir, 'qemu-img', ['convert', '-f', 'raw', '-O', 'vhdx', ...opts, 'src.raw', name]);
    await sameEverything(dir, join(dir, name));
  }
  // A fixed disk's blocks are contiguous in the file: one data extent.
  await withImage(join(dir, 'c-fixed.vhdx'), undefined, async (image) => {
    const extents = await image.map(0, image.virtualSize);
    assert.equal(extents.length, 1);
    assert.equal(extents[0]!.kind, 'data');
  });
});

/** A 8 MiB disk of 1 MiB blocks with blocks 0 and 3 written (at 8 MiB and 9 MiB): BAT at 2 MiB. */
function smallDisk(dir: string): string {
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M', 'base.vhdx', '8M']);
  qemuIo(dir, 'vhdx', 'base.vhdx', ['write -P 1 0 4k', 'write -P 2 3M 1M']);
  return join(dir, 'base.vhdx');
}

function variant(dir: string, base: string, name: string, entries: Array<[number, bigint]>): string {
  const path = join(dir, name);
  copyFileSync(base, path);
  for (const [index, value] of entries) poke(path, 2 * MiB + index * 8, u64le(value));
  return path;
}

const present = (mib: bigint): bigint => (mib << 20n) | 6n;

test('vhdx check on poked BATs: the messages, counts and exit statuses of qemu-img check', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t, 'vmimg-vhdx-check-');
  const base = smallDisk(dir);
  assert.equal(readRange(base, 2 * MiB, 8).readBigUInt64LE(0), present(8n));
  // 8 MiB blocks, blocks 0 and 1 written (at 8 and 16 MiB; the file ends at 24 MiB): block 1
  // moved to 20 MiB starts inside the file and ends past it.
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vhdx', 'base8.vhdx', '40M']);
  qemuIo(dir, 'vhdx', 'base8.vhdx', ['write -P 1 0 4k', 'write -P 2 9M 1M']);
  assert.equal(statSync(join(dir, 'base8.vhdx')).size, 24 * MiB);
  const endPast = variant(dir, join(dir, 'base8.vhdx'), 'end-past-eof.vhdx', [[1, present(20n)]]);
  const cases: Array<[string, Array<[number, bigint]>]> = [
    ['past-eof', [[1, present(100n)]]],
    ['end-past-eof', []],
    ['over-log', [[2, present(1n)]]],
    ['over-bat', [[2, present(2n)]]],
    ['over-metadata', [[5, present(3n)]]],
    ['overflow', [[1, 0xffff_ffff_fff0_0006n]]],
    ['high', [[1, 0x7fff_ffff_fff0_0006n]]],
    ['several', [[1, present(100n)], [4, present(3n)], [6, 0xffff_ffff_fff0_0006n]]],
  ];
  for (const [name, entries] of cases) {
    const path = name === 'end-past-eof' ? endPast : variant(dir, base, `${name}.vhdx`, entries);
    await sameCheck(path);
    // Outside check, both refuse the image with the first problem.
    const theirs = qemuImg(['info', path]);
    const ours = await vmimg(['info', path]);
    assert.equal(theirs.status, 1, name);
    assert.equal(ours.status, 1, name);
    const first = messages(theirs.stderr)[0]!;
    assert.ok(ours.stderr.includes(first), `${name}: ${ours.stderr} lacks ${first}`);
  }
  const ours = await vmimg(['check', '--output=json', join(dir, 'several.vhdx')]);
  assert.equal(JSON.parse(ours.stdout).corruptions, 4);
});

test('vhdx check reports what qemu-img check passes: shared blocks, invalid states, blocks at offset 0', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t, 'vmimg-vhdx-extra-');
  const base = smallDisk(dir);
  const cases: Array<[string, Array<[number, bigint]>, RegExp[]]> = [
    ['shared', [[5, present(8n)]], [/^VHDX BAT entry 5 block 8388608-9437184 overlaps with BAT entry 0 block 8388608-9437184$/]],
    ['partially-present', [[2, 7n]], [/^VHDX BAT entry 2 \(payload block 2\) has state 7, which a disk without a parent cannot have$/]],
    ['state-4', [[2, 4n]], [/^VHDX BAT entry 2 \(payload block 2\) has state 4, which a disk without a parent cannot have$/]],
    ['offset-0', [[2, 6n]], [/^VHDX BAT entry 2 \(payload block 2\) places the block at file offset 0, inside the header section$/]],
  ];
  for (const [name, entries, lines] of cases) {
    const path = variant(dir, base, `${name}.vhdx`, entries);
    const theirs = qemuImg(['check', path]);
    assert.deepEqual([theirs.status, theirs.stdout], [0, 'No errors were found on the image.\n'], name);
    const ours = await vmimg(['check', path]);
    assert.equal(ours.status, 2, name);
    const got = messages(ours.stderr);
    assert.equal(got.length, lines.length, `${name}: ${ours.stderr}`);
    lines.forEach((re, i) => assert.match(got[i]!, re));
    // info opens it, as qemu-img's does; reading the bad block is refused (qemu-img: I/O error).
    await sameInfo(path);
    if (name === 'shared') continue;
    await withImage(path, undefined, async (image) => {
      await assert.rejects(new ChainReader([image]).read(2 * MiB, 512), (e: unknown) => e instanceof VmimgError && e.code === 'CORRUPT_IMAGE');
    });
    if (name !== 'offset-0') assert.match(qemuImg(['convert', '-O', 'raw', path, join(dir, 'x.raw')]).stderr, /Input\/output error/);
  }
});

test('vhdx check: QEMU skips the region check of every (chunk ratio + 1)th present block; vmimg does not', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t, 'vmimg-vhdx-payblocks-');
  // 17 blocks of 256 MiB (chunk ratio 16): BAT entries 0..15, a sector bitmap entry, then 17.
  for (const [index, qemuSees] of [
    [15, true],
    [17, false],
  ] as const) {
    // Created afresh rather than copied: the 4.3 GB sparse file would be copied byte by byte.
    const name = `meta${index}.vhdx`;
    sh(dir, 'qemu-img', ['create', '-q', '-f', 'vhdx', '-o', 'subformat=fixed,block_state_zero=off,block_size=256M', name, '4352M']);
    const path = join(dir, name);
    poke(path, 2 * MiB + index * 8, u64le(present(3n)));
    const theirs = qemuImg(['check', path]);
    const ours = await vmimg(['check', path]);
    const regionLine = 'VHDX region 3145728-271581184 overlaps with region 3145728-4194304';
    assert.deepEqual(messages(theirs.stderr), qemuSees ? [regionLine] : []);
    // vmimg reports it either way, and that the moved block now overlaps block 0's data.
    assert.deepEqual(messages(ours.stderr), [regionLine, `VHDX BAT entry 0 block 8388608-276824064 overlaps with BAT entry ${index} block 3145728-271581184`]);
    assert.equal(ours.status, 2);
  }
});
