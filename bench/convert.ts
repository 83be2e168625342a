/**
 * bench/convert: vmimg convert next to qemu-img convert on the same source, in one run.
 * Source: 4 GiB virtual raw image holding 2 GiB of random data, 1 GiB of written zeros and a
 * 1 GiB hole (qemu-img's reference measurement shape). Cases: raw→qcow2, qcow2→raw, raw→vmdk,
 * raw→vhdx, raw→qcow2 -c zstd. Prints wall times, ratio vmimg/qemu-img and peak RSS of each.
 * Usage: node dist/bench/convert.js [rounds] [workdir]   (workdir needs ~12 GiB free)
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const rounds = Number(process.argv[2] ?? 1);
const dir = process.argv[3] ?? mkdtempSync(join(tmpdir(), 'vmimg-bench-convert-'));
const cli = resolve(fileURLToPath(import.meta.url), '../../src/cli/vmimg.cjs');
const GiB = 1 << 30;

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

/** Runs a command under /usr/bin/time; returns seconds and peak RSS (MiB), or an error text. */
function timed(cmd: string, args: string[]): { s: number; rssMiB: number } | { error: string } {
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M', cmd, ...args], { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) return { error: (r.stderr ?? '').trim().split('\n').slice(-2, -1)[0] ?? `exit ${r.status}` };
  const [s, kb] = r.stderr.trim().split('\n').pop()!.split(' ');
  return { s: Number(s), rssMiB: Number(kb) / 1024 };
}

const src = join(dir, 'src.raw');
if (!existsSync(src)) {
  sh('sh', ['-c', `head -c ${2 * GiB} /dev/urandom > src.raw && head -c ${GiB} /dev/zero >> src.raw && truncate -s ${4 * GiB} src.raw`]);
}
sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', 'src.raw', 'src.qcow2']);

const cases: Array<{ name: string; args: string[] }> = [
  { name: 'raw→qcow2', args: ['-f', 'raw', '-O', 'qcow2', 'src.raw', 'out.qcow2'] },
  { name: 'qcow2→raw', args: ['-f', 'qcow2', '-O', 'raw', 'src.qcow2', 'out.raw'] },
  { name: 'raw→vmdk', args: ['-f', 'raw', '-O', 'vmdk', 'src.raw', 'out.vmdk'] },
  { name: 'raw→vhdx', args: ['-f', 'raw', '-O', 'vhdx', 'src.raw', 'out.vhdx'] },
  { name: 'raw→qcow2 -c zstd', args: ['-c', '-f', 'raw', '-O', 'qcow2', '-o', 'compression_type=zstd', 'src.raw', 'out.zst.qcow2'] },
];

console.log(`convert of a 4 GiB virtual / 2 GiB data image (1 GiB zeros, 1 GiB hole); best of ${rounds}`);
console.log('case                 qemu-img s  vmimg s  ratio  qemu RSS MiB  vmimg RSS MiB');
for (const c of cases) {
  let best: { q?: { s: number; rssMiB: number }; v?: { s: number; rssMiB: number }; err?: string } = {};
  for (let i = 0; i < rounds; i++) {
    const q = timed('qemu-img', ['convert', ...c.args]);
    sh('rm', ['-f', c.args[c.args.length - 1]!]);
    const v = timed(process.execPath, [cli, 'convert', ...c.args]);
    sh('rm', ['-f', c.args[c.args.length - 1]!]);
    if ('error' in v) best.err = v.error;
    if ('s' in q && (!best.q || q.s < best.q.s)) best.q = q;
    if ('s' in v && (!best.v || v.s < best.v.s)) best.v = v;
  }
  const q = best.q;
  const v = best.v;
  const ratio = q && v ? (v.s / q.s).toFixed(2) : '-';
  console.log(
    `${c.name.padEnd(20)} ${q ? q.s.toFixed(2).padStart(9) : '        -'} ${v ? v.s.toFixed(2).padStart(8) : '       -'} ${ratio.padStart(6)} ${q ? q.rssMiB.toFixed(0).padStart(13) : ''} ${v ? v.rssMiB.toFixed(0).padStart(14) : ''}${best.err && !v ? `   vmimg: ${best.err}` : ''}`,
  );
}
if (process.argv[3] === undefined) rmSync(dir, { recursive: true, force: true });
