/**
 * bench/create: wall time of `vmimg create -f qcow2 x 1G` beside `qemu-img create -f qcow2 x 1G`
 * and beside `node -e 0` (the floor for any Node CLI), interleaved in one run; prints medians and
 * ratios. Usage: node dist/bench/create.js [runs]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const runs = Number(process.argv[2] ?? 30);
const cli = resolve(fileURLToPath(import.meta.url), '../../src/cli/vmimg.cjs');
const dir = mkdtempSync(join(tmpdir(), 'vmimg-bench-create-'));

interface Case {
  name: string;
  cmd: string;
  args: string[];
}
const cases: Case[] = [
  { name: 'node -e 0', cmd: process.execPath, args: ['-e', '0'] },
  { name: 'qemu-img create -f qcow2 x 1G', cmd: 'qemu-img', args: ['create', '-q', '-f', 'qcow2', join(dir, 'q.qcow2'), '1G'] },
  { name: 'vmimg create -f qcow2 x 1G', cmd: process.execPath, args: [cli, 'create', '-q', '-f', 'qcow2', join(dir, 'v.qcow2'), '1G'] },
];

function timeOnce(c: Case): number {
  const start = process.hrtime.bigint();
  const r = spawnSync(c.cmd, c.args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (r.status !== 0) throw new Error(`${c.name} failed: ${r.stderr?.toString() ?? r.error}`);
  return ms;
}

const samples = new Map<string, number[]>(cases.map((c) => [c.name, []]));
for (const c of cases) timeOnce(c); // warm the page cache
for (let i = 0; i < runs; i++) for (const c of cases) samples.get(c.name)!.push(timeOnce(c));
rmSync(dir, { recursive: true, force: true });

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const med = Object.fromEntries([...samples].map(([k, v]) => [k, median(v)]));
const nodeMs = med['node -e 0']!;
const qemuMs = med['qemu-img create -f qcow2 x 1G']!;
const oursMs = med['vmimg create -f qcow2 x 1G']!;
console.log(`runs: ${runs} (interleaved), median wall time`);
for (const [name, ms] of Object.entries(med)) console.log(`  ${name.padEnd(32)} ${ms.toFixed(1).padStart(8)} ms`);
console.log(`ratio vmimg / qemu-img:   ${(oursMs / qemuMs).toFixed(2)}`);
console.log(`ratio vmimg / node -e 0:  ${(oursMs / nodeMs).toFixed(2)}`);
console.log(`vmimg beyond node start:  ${(oursMs - nodeMs).toFixed(1)} ms`);
