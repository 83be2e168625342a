/**
 * `vmimg check` against `qemu-img check` (7.2) on qcow2 images: clean images of every kind the
 * read tests cover, and images with poked refcounts, table entries and refcount structures.
 * For each: the same stdout (human and JSON), the same per-problem lines on stderr and the same
 * exit status; with -r leaks / -r all the repaired files are byte-identical to the ones qemu-img
 * repairs, and qemu-img finds ours consistent.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { vmimg } from '../../helpers/cli.js';
import { be32, be64, checkBoth, create, io, layout, messages, poke, sameCheck, setRefcount16, sh, workDir } from './read-support.js';

/** A 64 MiB image: data at 0–1M and 32M, zero clusters at 4M. Clusters: 0 header, 1 reftable, 2 refblock, 3 L1, 4 L2, 5.. data. */
function base(name: string, opts = ''): void {
  create(name, '64M', opts);
  io(name, ['write -P 1 0 1M', 'write -z 4M 1M', 'write -P 2 32M 64k']);
}

function copy(from: string, to: string): string {
  sh('cp', [from, to]);
  return to;
}

/** The 64-bit L2 entry `i` of the first L2 table. */
function l2Entry(name: string, i: number): bigint {
  const l = layout(name);
  return readFileSync(name).readBigUInt64BE(l.l2 + i * 8);
}

test('clean images of every kind check like qemu-img', async (t) => {
  if (!workDir(t)) return;
  base('d.qcow2');
  await sameCheck('d.qcow2');
  create('x.qcow2', '8M', 'extended_l2=on,cluster_size=16k');
  io('x.qcow2', ['write -P 3 1k 2k', 'write -z 70k 3k', 'write -z -u 1M 64k', 'write -P 4 2M 600k']);
  await sameCheck('x.qcow2');
  create('v2.qcow2', '8M', 'compat=0.10,cluster_size=512');
  io('v2.qcow2', ['write -P 5 0 100k', 'write -z 1M 4k']);
  await sameCheck('v2.qcow2');
  create('rc1.qcow2', '8M', 'refcount_bits=1,cluster_size=4k');
  io('rc1.qcow2', ['write -P 6 0 100k']);
  await sameCheck('rc1.qcow2');
  sh('qemu-img', ['create', '-q', '-f', 'raw', 'src.raw', '3M']);
  io('src.raw', ['write -P 7 0 1M', 'write -P 8 2M 7k'], 'raw');
  sh('qemu-img', ['convert', '-c', '-O', 'qcow2', '-o', 'compression_type=zstd', 'src.raw', 'z.qcow2']);
  io('z.qcow2', ['write -P 9 64k 4k']);
  await sameCheck('z.qcow2');
  create('df.qcow2', '4M', 'data_file=df.data');
  io('df.qcow2', ['write -P 10 0 128k', 'write -z 1M 64k']);
  await sameCheck('df.qcow2');
  create('s.qcow2', '4M', 'cluster_size=4k');
  io('s.qcow2', ['write -P 11 0 64k']);
  sh('qemu-img', ['snapshot', '-c', 'one', 's.qcow2']);
  io('s.qcow2', ['write -P 12 4k 8k']);
  sh('qemu-img', ['bitmap', '--add', 's.qcow2', 'bm']);
  await sameCheck('s.qcow2');
  create('pre.qcow2', '4M', 'preallocation=metadata');
  await sameCheck('pre.qcow2');
});

test('leaked clusters: reported, repaired by -r leaks and -r all (freed clusters read as zeros)', async (t) => {
  if (!workDir(t)) return;
  base('d.qcow2');
  const l = layout('d.qcow2');
  // A refcount for a cluster past the end of the file (reference A.8f).
  setRefcount16(copy('d.qcow2', 'leak-eof.qcow2'), l.fileLength / l.clusterSize + 1, 1);
  // A data cluster no L2 entry refers to any more.
  copy('d.qcow2', 'leak-data.qcow2');
  poke('leak-data.qcow2', l.l2, be64(0));
  // The L1 table's cluster counted twice.
  setRefcount16(copy('d.qcow2', 'leak-l1.qcow2'), l.l1Offset / l.clusterSize, 2);
  // A data cluster counted twice: a leak and an OFLAG_COPIED error.
  setRefcount16(copy('d.qcow2', 'leak-copied.qcow2'), Number(l2Entry('d.qcow2', 1) & 0xffffffffffn) / l.clusterSize, 2);
  for (const name of ['leak-eof.qcow2', 'leak-data.qcow2', 'leak-l1.qcow2', 'leak-copied.qcow2']) {
    await sameCheck(name);
    await sameCheck(name, 'leaks');
    await sameCheck(name, 'all');
  }
});

test('corrupted refcounts: errors, -r leaks refusing to rebuild, -r all rebuilding the refcount structure', async (t) => {
  if (!workDir(t)) return;
  base('d.qcow2');
  const l = layout('d.qcow2');
  // The L1 table's refcount zeroed (reference A.8e).
  setRefcount16(copy('d.qcow2', 'zero-l1.qcow2'), l.l1Offset / l.clusterSize, 0);
  // A data cluster's refcount zeroed.
  setRefcount16(copy('d.qcow2', 'zero-data.qcow2'), 5, 0);
  // COPIED cleared on an L2 entry and on the L1 entry.
  copy('d.qcow2', 'copied.qcow2');
  poke('copied.qcow2', l.l2 + 8, be64(l2Entry('d.qcow2', 1) & ~(1n << 63n)));
  poke('copied.qcow2', l.l1Offset, be64(BigInt(l.l2)));
  // Reserved bits in an L2 entry and in a refcount table entry.
  copy('d.qcow2', 'reserved.qcow2');
  poke('reserved.qcow2', l.l2 + 16, be64(l2Entry('d.qcow2', 2) | 0x2n));
  copy('d.qcow2', 'rt-reserved.qcow2');
  poke('rt-reserved.qcow2', l.reftableOffset, be64(BigInt(l.refblock) | 0x10n));
  // An unaligned data cluster offset and an unaligned preallocated zero cluster.
  copy('d.qcow2', 'unaligned.qcow2');
  poke('unaligned.qcow2', l.l2 + 24, be64(l2Entry('d.qcow2', 3) + 0x200n));
  copy('d.qcow2', 'prealloc-zero.qcow2');
  poke('prealloc-zero.qcow2', l.l2 + 64 * 8, be64((l2Entry('d.qcow2', 3) + 0x200n) | 1n));
  // An L2 entry pointing far past the end of the file.
  copy('d.qcow2', 'past-eof.qcow2');
  poke('past-eof.qcow2', l.l2 + 8 * 100, be64((1n << 63n) | 0x100000000n));
  // A second refcount block past the end of the file.
  copy('d.qcow2', 'refblock-out.qcow2');
  poke('refblock-out.qcow2', l.reftableOffset + 8, be64(64n << 20n));
  for (const name of ['zero-l1', 'zero-data', 'copied', 'reserved', 'rt-reserved', 'unaligned', 'prealloc-zero', 'past-eof', 'refblock-out']) {
    await sameCheck(`${name}.qcow2`);
    await sameCheck(`${name}.qcow2`, 'leaks');
    await sameCheck(`${name}.qcow2`, 'all');
  }
});

test('extended L2, compressed, refcount-width and dirty lazy-refcount images with problems', async (t) => {
  if (!workDir(t)) return;
  create('x.qcow2', '8M', 'extended_l2=on');
  io('x.qcow2', ['write -P 3 1k 2k', 'write -P 4 1M 64k']);
  const lx = layout('x.qcow2');
  const raw = readFileSync('x.qcow2');
  // Entry 0 (allocated): a subcluster both allocated and zero. Entry 2 (unallocated): allocation bits.
  copy('x.qcow2', 'x-bitmap.qcow2');
  poke('x-bitmap.qcow2', lx.l2 + 8, be32(raw.readUInt32BE(lx.l2 + 12)));
  poke('x-bitmap.qcow2', lx.l2 + 2 * 16 + 12, be32(4));
  await sameCheck('x-bitmap.qcow2');
  await sameCheck('x-bitmap.qcow2', 'all');

  sh('qemu-img', ['create', '-q', '-f', 'raw', 'src.raw', '1M']);
  io('src.raw', ['write -P 7 0 1M'], 'raw');
  sh('qemu-img', ['convert', '-c', '-O', 'qcow2', 'src.raw', 'c.qcow2']);
  const lc = layout('c.qcow2');
  const centry = readFileSync('c.qcow2').readBigUInt64BE(lc.l2);
  copy('c.qcow2', 'c-copied.qcow2');
  poke('c-copied.qcow2', lc.l2, be64(centry | (1n << 63n)));
  await sameCheck('c-copied.qcow2');

  for (const bits of [1, 8, 64]) {
    const name = `rc${bits}.qcow2`;
    create(name, '4M', `refcount_bits=${bits}`);
    io(name, ['write -P 1 0 256k']);
    const l = layout(name);
    // Refcount of cluster 5 (a data cluster) set to 0: entry 5 of the first block.
    const block = readFileSync(name).subarray(l.refblock, l.refblock + l.clusterSize);
    if (bits === 1) block[0] = block[0]! & ~(1 << 5);
    else block.fill(0, (5 * bits) / 8, (6 * bits) / 8);
    poke(name, l.refblock, block);
    await sameCheck(name);
    await sameCheck(name, 'all');
  }

  create('lazy.qcow2', '16M', 'lazy_refcounts=on');
  sh('sh', ['-c', "qemu-io -c 'write -P 0x81 0 1M' -c 'write -P 0x82 8M 64k' -c 'sigraise 9' lazy.qcow2 || true"]);
  await sameCheck('lazy.qcow2');
  await sameCheck('lazy.qcow2', 'leaks', true);
  await sameCheck('lazy.qcow2', 'all');
  // After -r all the dirty bit is gone.
  const fixed = await checkBoth('lazy.qcow2', ['-r', 'all']);
  assert.equal(fixed.ours.status, 0);
  assert.equal(readFileSync('lazy.qcow2.v').readBigUInt64BE(72) & 1n, 0n);
});

test('quiet mode, and an image without a refcount table (it opens in check mode only)', async (t) => {
  if (!workDir(t)) return;
  base('d.qcow2');
  setRefcount16('d.qcow2', 3, 0);
  const q = await vmimg(['check', '-q', 'd.qcow2']);
  assert.equal(q.status, 2);
  assert.equal(q.stdout, '');
  assert.deepEqual(messages(q.stderr), ['ERROR cluster 3 refcount=0 reference=1']);
  // A refcount table of zero clusters opens for check (QEMU's BDRV_O_CHECK) and everything is an error.
  create('nort.qcow2', '1M');
  poke('nort.qcow2', 56, be32(0));
  const { ours, theirs } = await checkBoth('nort.qcow2');
  assert.equal(ours.status, theirs.status);
  assert.deepEqual(messages(ours.stderr), messages(theirs.stderr));
  assert.equal(ours.stdout, theirs.stdout);
});

test('repairs keep internal snapshots where qemu-img 7.2 loses them (image with bitmaps and snapshots)', async (t) => {
  if (!workDir(t)) return;
  create('sb.qcow2', '4M');
  io('sb.qcow2', ['write -P 1 0 64k']);
  sh('qemu-img', ['snapshot', '-c', 'keep-me', 'sb.qcow2']);
  io('sb.qcow2', ['write -P 2 0 64k']);
  sh('qemu-img', ['bitmap', '--add', 'sb.qcow2', 'bm']);
  const { ours, theirs } = await checkBoth('sb.qcow2', ['-r', 'leaks']);
  // qemu-img opens the image read-write in check mode without reading the snapshot table; the
  // bitmap code then rewrites the header with no snapshots, and the check frees their clusters.
  assert.match(theirs.stderr, /Repairing cluster/);
  assert.doesNotMatch(sh('qemu-img', ['snapshot', '-l', 'sb.qcow2.q']).stdout, /keep-me/);
  // vmimg finds nothing to repair and the snapshot survives, consistent for qemu-img.
  assert.equal(ours.status, 0, ours.stderr);
  assert.equal(ours.stderr, '');
  assert.match(sh('qemu-img', ['snapshot', '-l', 'sb.qcow2.v']).stdout, /keep-me/);
  assert.equal(sh('qemu-img', ['check', 'sb.qcow2.v']).status, 0);
});
