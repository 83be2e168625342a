/**
 * bench/ext4: wall time of `vmimg mkfs -t ext4` beside `mke2fs -t ext4 -d` on one generated
 * tree (10k files in 100 directories, ~200 MiB), both writing a fresh raw image of the same
 * size with the same features (no journal unless -J is passed), alternating runs; prints
 * medians and the ratio vmimg / mke2fs (target ≤ 1.0).
 * Usage: node dist/bench/ext4.js [runs] [-J]
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const runs = Number(process.argv[2] ?? 3);
const journal = process.argv.includes('-J');
const cli = resolve(fileURLToPath(import.meta.url), '../../src/cli/vmimg.cjs');
const dir = mkdtempSync(join(tmpdir(), 'vmimg-bench-ext4-'));
const src = join(dir, 'src');

// 10 000 files: sizes cycle over 1 KiB .. 40 KiB, ~20 KiB average -> ~200 MiB.
let bytes = 0;
let seed = 12345;
const block = Buffer.alloc(64 * 1024);
for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((seed = (seed * 1103515245 + 12345) >>> 0), i);
for (let d = 0; d < 100; d++) {
  mkdirSync(join(src, `dir${d}`), { recursive: true });
  for (let f = 0; f < 100; f++) {
    const size = 1024 + (((d * 100 + f) * 7919) % 40) * 1024;
    block.writeUInt32LE(d * 100 + f, 0); // distinct content per file
    writeFileSync(join(src, `dir${d}`, `file-${f}.bin`), block.subarray(0, size));
    bytes += size;
  }
}

function timeOnce(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): number {
  const start = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr?.toString() ?? r.error}`);
  return ms;
}

const vmimgOut = join(dir, 'v.img');
const mke2fsOut = join(dir, 'm.img');
const vmimgArgs = [cli, 'mkfs', '-t', 'ext4', '--mtime', '1700000000', ...(journal ? ['-J'] : []), src, vmimgOut];
timeOnce(process.execPath, vmimgArgs); // warm the page cache; fixes the size mke2fs gets
const size = statSync(vmimgOut).size;
const features = journal ? 'has_journal' : '^has_journal';
const mke2fsArgs = ['-q', '-F', '-t', 'ext4', '-b', '4096', '-O', `${features},^resize_inode`, '-E', 'root_owner=0:0,nodiscard', '-d', src, mke2fsOut, `${size / 4096}`];
const env = { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000' };

const samples = { vmimg: [] as number[], mke2fs: [] as number[] };
for (let i = 0; i < runs; i++) {
  rmSync(vmimgOut, { force: true });
  samples.vmimg.push(timeOnce(process.execPath, vmimgArgs));
  rmSync(mke2fsOut, { force: true });
  samples.mke2fs.push(timeOnce('mke2fs', mke2fsArgs, env));
}
rmSync(dir, { recursive: true, force: true });

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const v = median(samples.vmimg);
const m = median(samples.mke2fs);
console.log(`tree: 10000 files, ${(bytes / 1048576).toFixed(1)} MiB; image ${(size / 1048576).toFixed(0)} MiB${journal ? ', with journal' : ''}; ${runs} runs each`);
console.log(`vmimg mkfs -t ext4   median ${v.toFixed(0)} ms`);
console.log(`mke2fs -t ext4 -d    median ${m.toFixed(0)} ms`);
console.log(`ratio vmimg/mke2fs   ${(v / m).toFixed(2)}`);
