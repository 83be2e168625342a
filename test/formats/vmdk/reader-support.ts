/**
 * Helpers for the vmdk reader tests: running qemu-img/qemu-io in a directory, running the same
 * command through qemu-img and vmimg, and reading a whole image through vmimg's ChainReader
 * against `qemu-img convert -O raw`.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ChainReader } from '../../../src/chain/read.js';
import { openChain } from '../../../src/chain/open.js';
import { defaultPolicy, type ChainPolicy } from '../../../src/chain/policy.js';
import { FileStorage } from '../../../src/storage/file.js';
import { vmimg, type CliResult } from '../../helpers/cli.js';
import { run, type RunResult } from '../../helpers/oracle.js';

/** Runs a tool in `dir`; throws with its stderr when it fails. */
export function sh(dir: string, cmd: string, args: string[]): RunResult {
  const r = run(cmd, args, { cwd: dir });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r;
}

/** qemu-io -f vmdk with one -c per command. */
export function qemuIo(dir: string, file: string, commands: string[]): void {
  sh(dir, 'qemu-io', ['-f', 'vmdk', ...commands.flatMap((c) => ['-c', c]), file]);
}

export interface Both {
  qemu: RunResult;
  ours: CliResult;
}

/** Runs `qemu-img ARGS` and `vmimg ARGS` (absolute paths in ARGS, so both print the same names). */
export async function both(args: string[]): Promise<Both> {
  return { qemu: run('qemu-img', args), ours: await vmimg(args) };
}

/** Asserts vmimg printed exactly what qemu-img printed on stdout, with the same exit status. */
export async function sameAsQemu(args: string[], what = args.join(' ')): Promise<Both> {
  const r = await both(args);
  assert.equal(r.ours.stdout, r.qemu.stdout, `stdout of '${what}' (vmimg stderr: ${r.ours.stderr})`);
  assert.equal(r.ours.status, r.qemu.status, `status of '${what}' (qemu-img: ${r.qemu.stderr}; vmimg: ${r.ours.stderr})`);
  return r;
}

/** The standard comparisons for one image: info, map and check, JSON and human. */
export async function sameReports(path: string): Promise<void> {
  for (const args of [
    ['info', '--output=json', path],
    ['info', path],
    ['map', '--output=json', path],
    ['map', path],
    ['check', path],
    ['check', '--output=json', path],
  ]) {
    await sameAsQemu(args);
  }
}

const CHUNK = 4 * 1024 * 1024;

/**
 * Reads the whole image at `path` (chain included) through ChainReader and compares it with
 * `qemu-img convert -O raw` of it, chunk by chunk. Chunks that are holes in qemu-img's sparse
 * output are compared with zeros without reading them.
 */
export async function sameContentAsQemu(dir: string, path: string, policy: ChainPolicy = defaultPolicy(path)): Promise<void> {
  const raw = join(dir, `oracle-${Math.random().toString(36).slice(2)}.raw`);
  sh(dir, 'qemu-img', ['convert', '-O', 'raw', path, raw]);
  const chain = await openChain(path, { policy });
  const theirs = await FileStorage.open(raw);
  try {
    const reader = new ChainReader(chain.layers);
    assert.equal(await theirs.size(), reader.virtualSize, `size of ${path}`);
    for (let pos = 0; pos < reader.virtualSize; pos += CHUNK) {
      const n = Math.min(CHUNK, reader.virtualSize - pos);
      const ours = await reader.read(pos, n);
      const st = await theirs.blockStatus(pos, n);
      const expected = st.data || st.length < n ? await theirs.read(pos, n) : new Uint8Array(n);
      if (!Buffer.from(ours).equals(Buffer.from(expected))) {
        let i = 0;
        while (ours[i] === expected[i]) i++;
        assert.fail(`${path}: content differs from qemu-img's at guest byte ${pos + i}: ${ours[i]} vs ${expected[i]}`);
      }
    }
  } finally {
    await theirs.close();
    await chain.close();
  }
}
