/**
 * bench/convert: vmimg convert next to qemu-img convert on the same source, in one run.
 * Source: 4 GiB virtual raw image holding 2 GiB of random data, 1 GiB of written zeros and a
 * 1 GiB hole (qemu-img's reference measurement shape). Cases: raw→qcow2, qcow2→raw, raw→vmdk,
 * raw→vhdx, raw→qcow2 -c zstd. Each round runs both tools on every case (interleaved, so both see
 * the same machine state; qemu-img first in even rounds, vmimg first in odd ones); prints the
 * best and the median wall time of each tool, the ratios vmimg/qemu-img of both, peak RSS, and
 * every run's time in the order the runs ran. On a VM the kernel's cost of filling fresh page
 * cache pages varies several-fold between runs of the same command; the median shows it.
 * Settling: on this VM a run started right after the previous run's output was deleted costs a
 * fraction of one started a few seconds later (freed memory goes back to the host and idle page
 * cache is reclaimed within seconds, so later runs fault pages in again and may re-read the
 * source). With SETTLE seconds of sleep before every timed run (default 0: none) each run starts
 * in the later, slower state.
 * Usage: node dist/bench/convert.js [rounds (default 5)] [workdir] [settle seconds (default 0)]
 * (workdir needs ~12 GiB free)
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const rounds = Number(process.argv[2] ?? 5);
const settle = Number(process.argv[4] ?? 0);
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
// Write the set-up's 2 GiB back now: otherwise its writeback lands in the first case's timed runs.
sh('sync', []);

const cases: Array<{ name: string; args: string[] }> = [
  { name: 'raw→qcow2', args: ['-f', 'raw', '-O', 'qcow2', 'src.raw', 'out.qcow2'] },
  { name: 'qcow2→raw', args: ['-f', 'qcow2', '-O', 'raw', 'src.qcow2', 'out.raw'] },
  { name: 'raw→vmdk', args: ['-f', 'raw', '-O', 'vmdk', 'src.raw', 'out.vmdk'] },
  { name: 'raw→vhdx', args: ['-f', 'raw', '-O', 'vhdx', 'src.raw', 'out.vhdx'] },
  { name: 'raw→qcow2 -c zstd', args: ['-c', '-f', 'raw', '-O', 'qcow2', '-o', 'compression_type=zstd', 'src.raw', 'out.zst.qcow2'] },
];

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
/** Median wall time (ms) of `node -e 0` in `env`: what every vmimg run pays before any vmimg code. */
function nodeStartMs(env: NodeJS.ProcessEnv): number {
  const xs: number[] = [];
  for (let i = 0; i < 11; i++) {
    const t0 = process.hrtime.bigint();
    spawnSync(process.execPath, ['-e', '0'], { env, stdio: 'ignore' });
    xs.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(xs);
}
const start = nodeStartMs(process.env);
// NODE_EXTRA_CA_CERTS makes Node parse that certificate file at every start, before any script.
const { NODE_EXTRA_CA_CERTS: extraCerts, ...withoutCerts } = process.env;
const startNote = extraCerts === undefined ? '' : ` (NODE_EXTRA_CA_CERTS is set: ${nodeStartMs(withoutCerts).toFixed(0)} ms without it)`;
console.log(`Node start-up here (node -e 0, median of 11): ${start.toFixed(0)} ms${startNote}`);
console.log(`convert of a 4 GiB virtual / 2 GiB data image (1 GiB zeros, 1 GiB hole); ${rounds} interleaved rounds, ${settle} s settle before each run`);
console.log('case                 qemu best/median s  vmimg best/median s  ratio best/median  qemu RSS MiB  vmimg RSS MiB');
for (const c of cases) {
  const q: number[] = [];
  const v: number[] = [];
  let rss = { q: 0, v: 0 };
  let err: string | undefined;
  /** Every run in the order it ran (q = qemu-img, v = vmimg), rounds separated by '|'. */
  const order: string[] = [];
  for (let i = 0; i < rounds; i++) {
    const out = c.args[c.args.length - 1]!;
    const runQemu = (): ReturnType<typeof timed> => (sh('sleep', [String(settle)]), timed('qemu-img', ['convert', ...c.args]));
    const runVmimg = (): ReturnType<typeof timed> => (sh('sleep', [String(settle)]), timed(process.execPath, [cli, 'convert', ...c.args]));
    // Alternate who goes first, so neither tool always inherits the pages the other just freed.
    let a: ReturnType<typeof timed>;
    let b: ReturnType<typeof timed>;
    if (i % 2 === 0) {
      a = runQemu();
      sh('rm', ['-f', out]);
      b = runVmimg();
    } else {
      b = runVmimg();
      sh('rm', ['-f', out]);
      a = runQemu();
    }
    sh('rm', ['-f', out]);
    const shown = (tool: string, r: ReturnType<typeof timed>): string => `${tool}${'s' in r ? r.s.toFixed(2) : '!'}`;
    order.push(i % 2 === 0 ? `${shown('q', a)} ${shown('v', b)}` : `${shown('v', b)} ${shown('q', a)}`);
    if ('s' in a) (q.push(a.s), (rss.q = Math.max(rss.q, a.rssMiB)));
    if ('s' in b) (v.push(b.s), (rss.v = Math.max(rss.v, b.rssMiB)));
    else err = b.error;
  }
  const f = (x: number): string => x.toFixed(2);
  const pair = (xs: number[]): string => (xs.length ? `${f(Math.min(...xs))}/${f(median(xs))}` : '-');
  const ratio = q.length && v.length ? `${f(Math.min(...v) / Math.min(...q))}/${f(median(v) / median(q))}` : '-';
  console.log(`${c.name.padEnd(20)} ${pair(q).padStart(18)} ${pair(v).padStart(20)} ${ratio.padStart(18)} ${rss.q.toFixed(0).padStart(13)} ${rss.v.toFixed(0).padStart(14)}${err ? `   vmimg: ${err}` : ''}`);
  // Which tool drew the slow page state, and after which run, shows here.
  console.log(`  runs in order: ${order.join(' | ')}`);
}
if (process.argv[3] === undefined) rmSync(dir, { recursive: true, force: true });
