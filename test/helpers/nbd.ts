/**
 * Persistent bitmaps as QEMU itself reads them: qemu-nbd exports a qcow2 image read-only with
 * its bitmaps (-B NAME, repeatable) on a unix socket, and `qemu-img map` over NBD with
 * x-dirty-bitmap=qemu:dirty-bitmap:NAME reports each bitmap's dirty areas as "data": false
 * (clean ones as "data": true). The server runs detached (--fork, ready once it returns) and is
 * killed before returning, and again when the test ends; every command has a timeout.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { tempDir } from './oracle.js';

const TIMEOUT_MS = 30_000;

/** Dirty ranges [start, length] per bitmap name, adjacent ranges merged. */
export type DirtyRanges = Map<string, Array<[number, number]>>;

/**
 * Stops the server and waits (at most 5 s) until it is gone, so that its lock on the image is
 * released before the caller opens the image for writing.
 */
function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return; // already gone
  }
  const tick = new Int32Array(new SharedArrayBuffer(4));
  for (let waited = 0; waited < 5000; waited += 10) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    Atomics.wait(tick, 0, 0, 10);
  }
}

export function dirtyRanges(t: TestContext, image: string, names: readonly string[]): DirtyRanges {
  const out: DirtyRanges = new Map();
  if (names.length === 0) return out;
  const dir = tempDir(t, 'vmimg-nbd-');
  const socket = join(dir, 's');
  const pidFile = join(dir, 'pid');
  const args = ['--fork', '--pid-file', pidFile, '--read-only', '--persistent', '--socket', socket, '--format', 'qcow2'];
  for (const n of names) args.push('--bitmap', n);
  const server = spawnSync('qemu-nbd', [...args, image], { encoding: 'utf8', timeout: TIMEOUT_MS });
  if (server.status !== 0) throw new Error(`qemu-nbd ${image} failed (${server.status}): ${server.stderr}`);
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  let running = true;
  const stop = (): void => {
    if (running) kill(pid);
    running = false;
  };
  t.after(stop);
  try {
    for (const name of names) {
      const opts = `driver=nbd,server.type=unix,server.path=${socket},x-dirty-bitmap=qemu:dirty-bitmap:${name}`;
      const r = spawnSync('qemu-img', ['map', '--output=json', '--image-opts', opts], { encoding: 'utf8', timeout: TIMEOUT_MS });
      if (r.status !== 0) throw new Error(`qemu-img map of bitmap '${name}' in ${image} failed: ${r.stderr}`);
      const ranges: Array<[number, number]> = [];
      for (const e of JSON.parse(r.stdout) as Array<{ start: number; length: number; data: boolean }>) {
        if (e.data) continue;
        const last = ranges[ranges.length - 1];
        if (last && last[0] + last[1] === e.start) last[1] += e.length;
        else ranges.push([e.start, e.length]);
      }
      out.set(name, ranges);
    }
  } finally {
    stop();
  }
  return out;
}
