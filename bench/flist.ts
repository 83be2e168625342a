/**
 * bench/flist: `vmimg flist pack` of a ~1 GiB tree into a dir store, next to b2sum over the same
 * files in one run (b2sum -l 256 computes the BLAKE2b-256 every block needs: the hashing limit).
 * b2sum runs once single-threaded and once with xargs -P2 (both cores, as pack uses them).
 * Prints each round's pack figures (wall, CPU = user + system, peak RSS), then the best wall and
 * CPU seconds, medians, throughputs and the ratio vmimg/b2sum (goal ≥ 0.8), and the floor rfs's
 * double hash sets: b2sum's CPU over the tree plus over the blobs, halved (two cores).
 * The tree: 60% incompressible files (64 KiB .. 8 MiB), 40% text-like, in 16 folders.
 * Usage: node dist/bench/flist.js [rounds] [MiB] [workdir]
 */
import { spawnSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const rounds = Number(process.argv[2] ?? 3);
const mib = Number(process.argv[3] ?? 1024);
const dir = process.argv[4] ?? mkdtempSync(join(tmpdir(), 'vmimg-bench-flist-'));
const cli = resolve(fileURLToPath(import.meta.url), '../../src/cli/vmimg.cjs');
const src = join(dir, 'tree');

/**
 * Every file distinct (so no block deduplicates and pack encodes and stores all of it, as b2sum
 * hashes all of it): 60% AES-CTR keystream (incompressible), 40% text stamped every 256 bytes.
 */
function makeTree(): number {
  let total = 0;
  let seed = 1;
  const rnd = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const words = 'alpha beta gamma delta kernel module firmware rootfs image block store manifest '.repeat(20);
  const text = Buffer.from(words.repeat(Math.ceil((8 << 20) / words.length)).slice(0, 8 << 20));
  const zeros = Buffer.alloc(8 << 20);
  for (let n = 0; total < mib * 1048576; n++) {
    const size = Math.floor(64 * 1024 + rnd() * (8 * 1048576 - 64 * 1024));
    let body: Buffer;
    if (n % 5 < 3) {
      const key = createHash('sha256').update(`file ${n}`).digest();
      body = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16)).update(zeros.subarray(0, size));
    } else {
      body = Buffer.from(text.subarray(0, size));
      for (let at = 0; at + 8 <= size; at += 256) body.write(((n << 20) + at / 256).toString(16).padStart(8, '0'), at, 'latin1');
    }
    const sub = join(src, `d${n % 16}`);
    mkdirSync(sub, { recursive: true });
    writeFileSync(join(sub, `f${n}.bin`), body);
    total += size;
  }
  return total;
}

/** Wall seconds, CPU seconds (user + system, all threads and children) and peak RSS. */
function timed(cmd: string, args: string[]): { s: number; cpu: number; rssMiB: number } {
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M %U %S', cmd, ...args], { cwd: dir, encoding: 'utf8', maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  const [s, kb, user, sys] = r.stderr.trim().split('\n').pop()!.split(' ');
  return { s: Number(s), cpu: Number(user) + Number(sys), rssMiB: Number(kb) / 1024 };
}

let bytes: number;
if (!existsSync(src)) bytes = makeTree();
else bytes = Number(spawnSync('du', ['-sb', src], { encoding: 'utf8' }).stdout.split('\t')[0]);
const b2single = `find tree -type f -print0 | xargs -0 b2sum -l 256 > /dev/null`;
const b2par = `find tree -type f -print0 | xargs -0 -P2 -n 16 b2sum -l 256 > /dev/null`;
type Run = ReturnType<typeof timed>;
const runs = { single: [] as Run[], par: [] as Run[], pack: [] as Run[], repack: [] as Run[], cp: [] as Run[] };
// Each round packs into a store folder of its own, removed only at the end: ext4 (without a
// journal, as here) scans recently deleted inodes when it allocates one, so packing into a folder
// whose 2,000 blobs were just deleted costs ~2 CPU-s more than the same pack into a new one.
const stores: string[] = [];
const pack = (store: string): Run => timed(process.execPath, [cli, 'flist', 'pack', '-m', 'x.fl', '-s', `dir://${store}`, 'tree']);
for (let i = 0; i < rounds; i++) {
  runs.single.push(timed('sh', ['-c', b2single]));
  runs.par.push(timed('sh', ['-c', b2par]));
  const store = join(dir, `store-${process.pid}-${i}`);
  stores.push(store);
  rmSync(join(dir, 'x.fl'), { force: true });
  runs.pack.push(pack(store));
  // Again into the same store: every blob is there, so this is reading + encoding alone.
  rmSync(join(dir, 'x.fl'), { force: true });
  runs.repack.push(pack(store));
  // What writing the same bytes as files costs on this filesystem, whoever writes them.
  rmSync(join(dir, 'copy'), { recursive: true, force: true });
  runs.cp.push(timed('cp', ['-r', 'tree', 'copy']));
  rmSync(join(dir, 'copy'), { recursive: true, force: true });
  const [v, re] = [runs.pack[i]!, runs.repack[i]!];
  console.log(`round ${i + 1}: pack ${v.s.toFixed(2)} s CPU ${v.cpu.toFixed(2)} s RSS ${v.rssMiB.toFixed(0)} MiB; into the full store ${re.s.toFixed(2)} s CPU ${re.cpu.toFixed(2)} s RSS ${re.rssMiB.toFixed(0)} MiB`);
}
// The floor rfs's encoding sets (ratio bound): every block is hashed twice, the plaintext (the
// key) and the stored bytes (the id), so even an encoder that did nothing else (no snappy, no
// AES-GCM, no reads, no writes, no start-up) needs b2sum's CPU over the tree plus b2sum's CPU over
// the blobs, at best split over both cores.
const blobHash = [0, 1, 2].map(() => timed('sh', ['-c', `find ${stores[0]} -type f -print0 | xargs -0 b2sum -l 256 > /dev/null`]));
for (const s of stores) rmSync(s, { recursive: true, force: true });
const min = (rs: Run[], k: keyof Run): number => Math.min(...rs.map((r) => r[k]));
const median = (rs: Run[], k: keyof Run): number => {
  const v = rs.map((r) => r[k]).sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
};
const best = {
  single: min(runs.single, 's'), par: min(runs.par, 's'), cpuB2: min(runs.single, 'cpu'),
  vmimg: min(runs.pack, 's'), cpuV: min(runs.pack, 'cpu'), repack: min(runs.repack, 's'), cpuRe: min(runs.repack, 'cpu'),
  cp: min(runs.cp, 's'), cpuCp: min(runs.cp, 'cpu'),
};
const tp = (s: number): string => (bytes / 1048576 / s).toFixed(0);
const med = (rs: Run[]): string => `median ${median(rs, 's').toFixed(2)} s, CPU ${median(rs, 'cpu').toFixed(2)} s, RSS ${median(rs, 'rssMiB').toFixed(0)} MiB (max ${Math.max(...rs.map((r) => r.rssMiB)).toFixed(0)})`;
console.log(`flist pack of ${(bytes / 1048576).toFixed(0)} MiB (${rounds} rounds; best, then medians): dir store, a new one each round`);
console.log(`b2sum -l 256, 1 process       ${best.single.toFixed(2)} s  ${tp(best.single)} MiB/s  CPU ${best.cpuB2.toFixed(2)} s`);
console.log(`b2sum -l 256, xargs -P2       ${best.par.toFixed(2)} s  ${tp(best.par)} MiB/s`);
console.log(`vmimg flist pack              ${best.vmimg.toFixed(2)} s  ${tp(best.vmimg)} MiB/s  CPU ${best.cpuV.toFixed(2)} s  (${med(runs.pack)})`);
console.log(`vmimg flist pack, blobs there ${best.repack.toFixed(2)} s  ${tp(best.repack)} MiB/s  CPU ${best.cpuRe.toFixed(2)} s  (${med(runs.repack)}; read + encode, no writes)`);
console.log(`cp -r of the tree             ${best.cp.toFixed(2)} s  ${tp(best.cp)} MiB/s  CPU ${best.cpuCp.toFixed(2)} s  (the cost of writing 1× the bytes here)`);
console.log(`ratio vmimg/b2sum: ${(best.single / best.vmimg).toFixed(2)} (1 process), ${(best.par / best.vmimg).toFixed(2)} (both cores); goal ≥ 0.8`);
console.log(`ratio without the blob writes: ${(best.single / best.repack).toFixed(2)} (1 process), ${(best.par / best.repack).toFixed(2)} (both cores)`);
const floor = (min(runs.single, 'cpu') + min(blobHash, 'cpu')) / 2;
console.log(`floor: b2sum CPU over the tree ${min(runs.single, 'cpu').toFixed(2)} s + over the stored blobs ${min(blobHash, 'cpu').toFixed(2)} s, on two cores ≥ ${floor.toFixed(2)} s wall: best possible ratio ${(best.single / floor).toFixed(2)} before AES-GCM, snappy, I/O and start-up`);
console.log(`CPU per byte, vmimg/b2sum: ${(best.cpuV / best.cpuB2).toFixed(2)}; without writes ${(best.cpuRe / best.cpuB2).toFixed(2)} (every block is hashed twice, plus snappy and AES-GCM)`);
if (process.argv[4] === undefined) rmSync(dir, { recursive: true, force: true });
