/**
 * convert round trips judged by qemu-img: every readable source format (written by qemu-img
 * from one pattern image) into every writable target format, with and without compression and
 * backing; the result must pass `qemu-img check` and compare identical to the source.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { vmimg } from '../helpers/cli.js';
import { patternSource } from '../helpers/images.js';
import { oracle, qemuImg, run, tempDir } from '../helpers/oracle.js';

const SOURCES: Array<{ fmt: string; opts: string[] }> = [
  { fmt: 'raw', opts: [] },
  { fmt: 'qcow2', opts: [] },
  { fmt: 'qcow2', opts: ['-c', '-o', 'compression_type=zstd'] },
  { fmt: 'vmdk', opts: [] },
  { fmt: 'vmdk', opts: ['-o', 'subformat=streamOptimized'] },
  { fmt: 'vpc', opts: [] },
  { fmt: 'vhdx', opts: [] },
];

const TARGETS: Array<{ fmt: string; opts: string[]; checkable: boolean }> = [
  { fmt: 'raw', opts: [], checkable: false },
  { fmt: 'qcow2', opts: [], checkable: true },
  { fmt: 'qcow2', opts: ['-o', 'compat=0.10'], checkable: true },
  { fmt: 'qcow2', opts: ['-o', 'cluster_size=4k,extended_l2=off,refcount_bits=1'], checkable: true },
  { fmt: 'qcow2', opts: ['-o', 'extended_l2=on'], checkable: true },
  { fmt: 'qcow2', opts: ['-c'], checkable: true },
  { fmt: 'qcow2', opts: ['-c', '-o', 'compression_type=zstd,cluster_size=16k'], checkable: true },
  { fmt: 'vmdk', opts: [], checkable: true },
  { fmt: 'vmdk', opts: ['-o', 'subformat=streamOptimized'], checkable: true },
  // qemu-img has no check for vpc (exit 63); compare still judges the content.
  { fmt: 'vpc', opts: [], checkable: false },
  { fmt: 'vpc', opts: ['-o', 'subformat=fixed'], checkable: false },
  { fmt: 'vhdx', opts: [], checkable: true },
  { fmt: 'vhdx', opts: ['-o', 'subformat=fixed,block_size=1M'], checkable: true },
];

test('convert: every source format into every target format reads back identical and checks clean', async (t) => {
  const dir = tempDir(t);
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const raw = patternSource(dir);
  for (const [si, s] of SOURCES.entries()) {
    const src = join(dir, `s${si}.${s.fmt}`);
    assert.equal(qemuImg(['convert', '-f', 'raw', '-O', s.fmt, ...s.opts, raw, src]).status, 0);
    for (const [ti, tg] of TARGETS.entries()) {
      const out = join(dir, `o${si}-${ti}.${tg.fmt}`);
      const label = `${s.fmt} ${s.opts.join(' ')} → ${tg.fmt} ${tg.opts.join(' ')}`;
      const r = await vmimg(['convert', '-O', tg.fmt, ...tg.opts, src, out]);
      assert.equal(r.status, 0, `${label}: ${r.stderr}`);
      if (tg.checkable) {
        const c = qemuImg(['check', out]);
        assert.equal(c.status, 0, `${label}: qemu-img check: ${c.stdout}${c.stderr}`);
      }
      const cmp = qemuImg(['compare', '-f', 'raw', '-F', tg.fmt, raw, out]);
      assert.equal(cmp.status, 0, `${label}: ${cmp.stdout}${cmp.stderr}`);
      run('rm', ['-f', out]);
    }
  }
});

test('convert -B keeps source-unallocated ranges unallocated and masks zeros over the new backing file', async (t) => {
  const dir = tempDir(t);
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const mk = (args: string[]): void => assert.equal(qemuImg(args, dir).status, 0, args.join(' '));
  mk(['create', '-q', '-f', 'qcow2', 'base.qcow2', '16M']);
  assert.equal(run('qemu-io', ['-c', 'write -P 7 0 4M', join(dir, 'base.qcow2')]).status, 0);
  mk(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow2']);
  assert.equal(run('qemu-io', ['-c', 'write -P 9 1M 1M', '-c', 'write -z 3M 64k', join(dir, 'top.qcow2')]).status, 0);
  for (const opts of [[], ['-o', 'compat=0.10'], ['-o', 'extended_l2=on']]) {
    const out = join(dir, 'out.qcow2');
    const r = await vmimg(['convert', '-O', 'qcow2', ...opts, '-B', 'base.qcow2', '-F', 'qcow2', join(dir, 'top.qcow2'), out]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(qemuImg(['check', out]).status, 0);
    assert.equal(qemuImg(['compare', join(dir, 'top.qcow2'), out]).status, 0, opts.join(' '));
    // Only the overlay's own clusters were written: about 1 MiB of data, not the 4 MiB of the base.
    const map = JSON.parse(qemuImg(['map', '--output=json', out]).stdout) as Array<{ depth: number; data: boolean; length: number }>;
    const own = map.filter((e) => e.depth === 0 && e.data).reduce((n, e) => n + e.length, 0);
    assert.ok(own >= 1 << 20 && own <= (1 << 20) + (1 << 16), `${opts.join(' ')}: ${own} bytes in the top layer`);
    run('rm', ['-f', out]);
  }
});

test('a failed convert leaves no target behind and keeps an existing file', async (t) => {
  const dir = tempDir(t);
  const { writeFileSync, readFileSync, readdirSync } = await import('node:fs');
  writeFileSync(join(dir, 'src.raw'), Buffer.alloc(1 << 20, 1));
  writeFileSync(join(dir, 'keep.qcow2'), 'precious');
  const r = await vmimg(['convert', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=1000', join(dir, 'src.raw'), join(dir, 'keep.qcow2')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /\[INVALID_OPTION\]/);
  assert.equal(readFileSync(join(dir, 'keep.qcow2'), 'utf8'), 'precious');
  assert.deepEqual(readdirSync(dir).sort(), ['keep.qcow2', 'src.raw']);
  const bad = await vmimg(['convert', '-m', '17', join(dir, 'src.raw'), join(dir, 'x.raw')]);
  assert.match(bad.stderr, /between 1 and 16 \[USAGE\]/);
});

test('convert -n writes into existing qcow2 images in place (over old data, into a fresh image with --target-is-zero, over a backing file)', async (t) => {
  const dir = tempDir(t);
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const raw = patternSource(dir);
  const mk = (args: string[]): void => assert.equal(qemuImg(args, dir).status, 0, args.join(' '));
  mk(['create', '-q', '-f', 'qcow2', 'old.qcow2', '24M']);
  assert.equal(run('qemu-io', ['-c', 'write -P 0x77 0 24M', join(dir, 'old.qcow2')]).status, 0);
  mk(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', 'fresh.qcow2', '24M']);
  mk(['create', '-q', '-f', 'qcow2', 'base.qcow2', '24M']);
  assert.equal(run('qemu-io', ['-c', 'write -P 0x99 0 24M', join(dir, 'base.qcow2')]).status, 0);
  mk(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'over.qcow2']);
  for (const [name, extra] of [['old.qcow2', []], ['fresh.qcow2', ['--target-is-zero']], ['over.qcow2', []]] as const) {
    const out = join(dir, name);
    const r = await vmimg(['convert', '-n', '-O', 'qcow2', ...extra, raw, out]);
    assert.equal(r.status, 0, `${name}: ${r.stderr}`);
    const c = qemuImg(['check', out]);
    assert.equal(c.status, 0, `${name}: ${c.stdout}${c.stderr}`);
    const cmp = qemuImg(['compare', '-f', 'raw', '-F', 'qcow2', raw, out]);
    assert.equal(cmp.status, 0, `${name}: ${cmp.stdout}${cmp.stderr}`);
  }
  const vhdx = join(dir, 'v.vhdx');
  mk(['create', '-q', '-f', 'vhdx', 'v.vhdx', '32M']);
  // vhdx has an in-place write path too (test/formats/vhdx/write.test.ts).
  const intoVhdx = await vmimg(['convert', '-n', '-O', 'vhdx', raw, vhdx]);
  assert.equal(intoVhdx.status, 0, intoVhdx.stderr);
  assert.equal(qemuImg(['compare', '-f', 'raw', '-F', 'vhdx', raw, vhdx]).status, 0);
});

test('convert -n into an existing raw file punches holes where the source reads as zeros, as qemu-img does', async (t) => {
  const dir = tempDir(t);
  if (!oracle(t, 'qemu-img') || !oracle(t, 'qemu-io')) return;
  const { statSync, writeFileSync } = await import('node:fs');
  const raw = patternSource(dir);
  const size = statSync(raw).size;
  const mine = join(dir, 'mine.raw');
  const theirs = join(dir, 'theirs.raw');
  for (const f of [mine, theirs]) writeFileSync(f, Buffer.alloc(size, 0x77));
  const r = await vmimg(['convert', '-n', '-f', 'raw', '-O', 'raw', raw, mine]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(qemuImg(['convert', '-n', '-f', 'raw', '-O', 'raw', raw, theirs]).status, 0);
  assert.equal(qemuImg(['compare', '-f', 'raw', '-F', 'raw', raw, mine]).status, 0);
  // The old bytes under the source's holes are gone from the disk, not overwritten with zeros.
  const allocated = statSync(mine).blocks * 512;
  assert.ok(allocated < size, `${allocated} bytes allocated of ${size}`);
  assert.equal(allocated, statSync(theirs).blocks * 512);
  // And the hole map equals qemu-img's own result.
  assert.equal(qemuImg(['map', '--output=json', '-f', 'raw', mine]).stdout, qemuImg(['map', '--output=json', '-f', 'raw', theirs]).stdout.replaceAll('theirs', 'mine'));
});
