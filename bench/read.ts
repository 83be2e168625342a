/**
 * bench/read: sequential full read (8 chunk reads in flight, as qemu-img's default -m 8) of a qcow2 chain holding 2 GiB of data (4 GiB virtual:
 * 1 GiB in the base, 1 GiB in the overlay, the rest unallocated) through vmimg's chain reader,
 * next to `qemu-img convert` of the same chain into a null target (read, discard). One run,
 * interleaved, prints times and the ratio. Usage: node dist/bench/read.js [rounds] [dir]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openChain } from '../src/chain/open.js';
import { defaultPolicy } from '../src/chain/policy.js';
import { ChainReader } from '../src/chain/read.js';

const rounds = Number(process.argv[2] ?? 3);
const dir = process.argv[3] ?? mkdtempSync(join(tmpdir(), 'vmimg-bench-read-'));
const GiB = 1 << 30;
const IN_FLIGHT = 8;

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'base.qcow2', '4G']);
sh('qemu-io', ['-c', 'write -P 0x5a 0 1G', 'base.qcow2']);
sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow2']);
sh('qemu-io', ['-c', 'write -P 0xa5 2G 1G', 'top.qcow2']);
const top = join(dir, 'top.qcow2');

async function vmimgRead(): Promise<number> {
  const start = performance.now();
  const chain = await openChain(top, { policy: defaultPolicy(top) });
  try {
    const reader = new ChainReader(chain.layers);
    // Like qemu-img convert's default -m 8: up to 8 chunk reads in flight, buffers recycled.
    const chunk = 2 * 1024 * 1024;
    const buffers = Array.from({ length: IN_FLIGHT }, () => new Uint8Array(chunk));
    let next = 0;
    const worker = async (buffer: Uint8Array): Promise<void> => {
      while (next < reader.virtualSize) {
        const off = next;
        next += chunk;
        await reader.readInto(off, buffer.subarray(0, Math.min(chunk, reader.virtualSize - off)));
      }
    };
    await Promise.all(buffers.map(worker));
  } finally {
    await chain.close();
  }
  return performance.now() - start;
}

function qemuRead(): number {
  const start = performance.now();
  sh('qemu-img', ['convert', '-n', '-f', 'qcow2', top, '--target-image-opts', `driver=null-co,size=${4 * GiB}`]);
  return performance.now() - start;
}

const ours: number[] = [];
const theirs: number[] = [];
let peakRss = 0;
for (let i = 0; i < rounds; i++) {
  theirs.push(qemuRead());
  ours.push(await vmimgRead());
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`sequential read of a 4 GiB-virtual / 2 GiB-data qcow2 chain (2 layers), median of ${rounds}`);
console.log(`  qemu-img convert -> null-co  ${(median(theirs) / 1000).toFixed(2)} s`);
console.log(`  vmimg ChainReader            ${(median(ours) / 1000).toFixed(2)} s   (peak RSS ${(peakRss / 2 ** 20).toFixed(0)} MiB)`);
console.log(`ratio vmimg / qemu-img: ${(median(ours) / median(theirs)).toFixed(2)}`);
if (process.argv[3] === undefined) rmSync(dir, { recursive: true, force: true });
