/**
 * vmdk reading on synthetic images with geometries qemu-img never writes (grains of 1–128
 * sectors, 1–512 GTEs per GT, grains out of order in the file, partial last grains, COWD
 * files): map and read against a model of the image (property test), a few of them against
 * qemu-img, and a seeded mutation run over vmdk-only seeds.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { ChainReader } from '../../../src/chain/read.js';
import { openChain, openImageFromStorage } from '../../../src/chain/open.js';
import { defaultPolicy, DENY_ALL } from '../../../src/chain/policy.js';
import type { Extent, Image } from '../../../src/formats/image.js';
import { MemoryStorage } from '../../../src/storage/memory.js';
import { mutate, Rng, runCase } from '../../fuzz/harness.js';
import { oracle, tempDir } from '../../helpers/oracle.js';
import { qemuIo, sameContentAsQemu, sameReports, sh } from './reader-support.js';
import { buildCowd, buildVmdk4, sectorContent, type GrainKind, type SparseSpec, type SyntheticSparse } from './synthetic.js';
import { vmwareStream } from './vmware-stream.js';

const SECTOR = 512;

const specArb: fc.Arbitrary<SparseSpec> = fc
  .record({
    grainSectors: fc.constantFrom(1, 2, 8, 16, 128),
    gtesPerGt: fc.constantFrom(1, 3, 16, 512),
    grains: fc.integer({ min: 1, max: 96 }),
    tail: fc.integer({ min: 0, max: 127 }),
    zeroGrain: fc.boolean(),
    kinds: fc.array(fc.constantFrom<GrainKind>('unallocated', 'zero', 'data', 'data'), { minLength: 96, maxLength: 96 }),
    shuffle: fc.boolean(),
    seed: fc.integer(),
  })
  .map((r) => {
    // A partial last grain when `tail` is less than a grain.
    const capacitySectors = (r.grains - 1) * r.grainSectors + Math.max(1, r.tail % r.grainSectors || r.grainSectors);
    const kinds = r.kinds.map((k) => (k === 'zero' && !r.zeroGrain ? 'unallocated' : k));
    const dataCount = kinds.slice(0, r.grains).filter((k) => k === 'data').length;
    const order = Array.from({ length: dataCount }, (_, i) => i);
    if (r.shuffle) {
      const rng = new Rng(r.seed);
      for (let i = order.length - 1; i > 0; i--) {
        const j = rng.below(i + 1);
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
    }
    return { capacitySectors, grainSectors: r.grainSectors, gtesPerGt: r.gtesPerGt, zeroGrain: r.zeroGrain, kinds, order };
  });

async function open(bytes: Uint8Array): Promise<Image> {
  return (await openImageFromStorage(new MemoryStorage(bytes, { writable: false }), 'synthetic.vmdk', { format: 'vmdk', policy: DENY_ALL })).image;
}

/** The extents must tile the range, agree with the model at both ends of each extent, and be maximal. */
function checkExtents(img: SyntheticSparse, start: number, length: number, extents: Extent[]): void {
  let pos = start;
  for (const [i, e] of extents.entries()) {
    assert.equal(e.start, pos, 'extents are contiguous');
    assert.ok(e.length > 0);
    for (const at of [e.start, e.start + e.length - 1]) {
      const grain = Math.floor(at / SECTOR / img.grainSectors);
      const m = img.model[grain]!;
      assert.equal(e.kind, m.kind, `kind at guest byte ${at}`);
      if (e.kind === 'data') assert.equal(e.offset + (at - e.start), m.host! * SECTOR + (at - grain * img.grainSectors * SECTOR), `host offset at guest byte ${at}`);
    }
    const prev = extents[i - 1];
    if (prev && prev.kind === e.kind) {
      const hostContiguous = e.kind === 'data' && prev.kind === 'data' && prev.storage === e.storage && prev.offset + prev.length === e.offset;
      assert.ok(e.kind === 'data' && !hostContiguous, `adjacent ${e.kind} extents at ${e.start} were not merged`);
    }
    pos += e.length;
  }
  assert.equal(pos, start + length, 'extents cover the range');
}

test('property: map and read of random sparse geometries agree with the model', async () => {
  await fc.assert(
    fc.asyncProperty(specArb, fc.array(fc.tuple(fc.nat(), fc.nat()), { minLength: 1, maxLength: 6 }), async (spec, ranges) => {
      const img = buildVmdk4(spec);
      const image = await open(img.bytes);
      try {
        const size = img.capacitySectors * SECTOR;
        assert.equal(image.virtualSize, size);
        checkExtents(img, 0, size, await image.map(0, size));
        for (const [a, b] of ranges) {
          const start = a % size;
          const length = 1 + (b % (size - start));
          checkExtents(img, start, length, await image.map(start, length));
        }
        const bytes = await new ChainReader([image]).read(0, size);
        for (let s = 0; s < img.capacitySectors; s++) {
          const kind = img.model[Math.floor(s / img.grainSectors)]!.kind;
          const expected = kind === 'data' ? sectorContent(s) : new Uint8Array(SECTOR);
          assert.ok(Buffer.from(bytes.subarray(s * SECTOR, (s + 1) * SECTOR)).equals(Buffer.from(expected)), `sector ${s} (${kind})`);
        }
      } finally {
        await image.close();
      }
    }),
    { seed: 20261123, numRuns: 60 },
  );
});

test('synthetic geometries and COWD files against qemu-img: info, map, check and content', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t);
  const samples = fc.sample(specArb, { seed: 42, numRuns: 5 });
  for (const [i, spec] of samples.entries()) {
    const path = join(dir, `s${i}.vmdk`);
    writeFileSync(path, buildVmdk4({ ...spec, cid: 0x100 + i }).bytes);
    await sameReports(path);
    await sameContentAsQemu(dir, path);
  }
  // A bare COWD file (QEMU reports an empty create-type and extent format)...
  const cowd = join(dir, 'cowd.vmdk');
  writeFileSync(cowd, buildCowd(8192 + 7, 16, [0, 5, 6, 512]).bytes);
  await sameReports(cowd);
  await sameContentAsQemu(dir, cowd);
  // ...and as the VMFSSPARSE extent of a vmfsSparse descriptor (the blank line before the
  // extent line makes QEMU count it twice: two extents on the same file).
  writeFileSync(join(dir, 'cowd2.vmdk'), buildCowd(8192 + 16, 16, [0, 5, 6, 512]).bytes);
  const desc = join(dir, 'vmfs.vmdk');
  writeFileSync(desc, '# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType="vmfsSparse"\n\nRW 8208 VMFSSPARSE "cowd2.vmdk"\n');
  await sameReports(desc);
  await sameContentAsQemu(dir, desc);
});

test('deliberate deviation: a sparse extent ending inside a grain ends there (QEMU lets the grain spill into the next extent)', async (t) => {
  if (!oracle(t, 'qemu-img')) return;
  const dir = tempDir(t);
  // Two extents on one COWD file of 8199 sectors (16-sector grains): the first ends 7 sectors
  // into grain 512, which holds data.
  writeFileSync(join(dir, 'c.vmdk'), buildCowd(8199, 16, [0, 512]).bytes);
  const desc = join(dir, 'd.vmdk');
  writeFileSync(desc, '# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType="vmfsSparse"\nRW 8199 VMFSSPARSE "c.vmdk"\nRW 8199 VMFSSPARSE "c.vmdk"\n');
  const chain = await openChain(desc, { policy: defaultPolicy(desc) });
  try {
    const boundary = 8199 * SECTOR;
    const extents = await chain.top.map(8192 * SECTOR, 32 * SECTOR);
    assert.deepEqual(
      extents.map((e) => [e.kind, e.start, e.length]),
      [
        ['data', 8192 * SECTOR, 7 * SECTOR],
        ['data', boundary, 16 * SECTOR],
        ['unallocated', boundary + 16 * SECTOR, 9 * SECTOR],
      ],
    );
    // vmimg: the second extent's first sector is guest sector 0 of the COWD file.
    const ours = await new ChainReader(chain.layers).read(boundary, SECTOR);
    assert.ok(Buffer.from(ours).equals(Buffer.from(sectorContent(0))));
    // qemu-img: the first extent's grain 512 runs on, so it reads the grain's 8th sector there.
    sh(dir, 'qemu-img', ['convert', '-O', 'raw', desc, 'q.raw']);
    const theirs = readFileSync(join(dir, 'q.raw')).subarray(boundary, boundary + SECTOR);
    assert.ok(theirs.equals(Buffer.from(sectorContent(8199))));
  } finally {
    await chain.close();
  }
});

test('seeded mutations of vmdk-only seeds raise nothing but VmimgError', async (t) => {
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const dir = tempDir(t);
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'zeroed_grain=on', 'z.vmdk', '4M']);
  qemuIo(dir, 'z.vmdk', ['write -P 0x11 0 128k', 'write -z 1M 128k', 'write -P 0x22 3M 4k']);
  const disk = new Uint8Array(2 * 1024 * 1024).fill(0x5a, 100_000, 300_000);
  const seeds = [
    { name: 'zeroed-grain', bytes: new Uint8Array(readFileSync(join(dir, 'z.vmdk'))) },
    { name: 'vmware-stream', bytes: vmwareStream(disk, { name: 'x.vmdk', cid: 1 }) },
    { name: 'cowd', bytes: buildCowd(4096, 8, [0, 1, 9, 300]).bytes },
    { name: 'small-grains', bytes: buildVmdk4({ capacitySectors: 3001, grainSectors: 2, gtesPerGt: 3, zeroGrain: true, kinds: Array.from({ length: 1501 }, (_, i) => (['data', 'zero', 'unallocated'] as const)[i % 3]!) }).bytes },
  ];
  const bugs: string[] = [];
  let accepted = 0;
  for (const [si, seed] of seeds.entries()) {
    const base = await runCase(seed.bytes, 'vmdk');
    assert.equal(base.outcome, 'accepted', `${seed.name} itself opens`);
    const rng = new Rng(20261123 + si);
    for (let i = 0; i < 250; i++) {
      const r = await runCase(mutate(seed.bytes, rng), rng.below(2) === 0 ? 'vmdk' : undefined);
      if (r.bug) bugs.push(`${seed.name}#${i}: ${r.bug.split('\n')[0]}`);
      if (r.outcome === 'accepted') accepted++;
    }
  }
  assert.deepEqual(bugs, []);
  assert.ok(accepted > 0);
});
