/**
 * Valid images to mutate, one family per format, written by the real qemu-img/qemu-io (data at
 * known places, compressed clusters, subclusters, backing references). Small virtual sizes keep
 * a fuzz case fast.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../helpers/oracle.js';

export interface Seed {
  name: string;
  /** Format forced at open (undefined = probe, as the CLI does without -f). */
  format?: string;
  bytes: Uint8Array;
}

function sh(dir: string, cmd: string, args: string[]): void {
  const r = run(cmd, args, { cwd: dir });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

const WRITES = ['write -P 0x11 0 64k', 'write -P 0x22 1M 96k', 'write -z 2M 64k', 'write -P 0x33 3M 4k'];

function writeData(dir: string, file: string, format: string): void {
  sh(dir, 'qemu-io', ['-f', format, ...WRITES.flatMap((w) => ['-c', w]), file]);
}

/** Builds the seed corpus in `dir` with qemu-img/qemu-io (caller checked they exist). */
export function buildSeeds(dir: string): Seed[] {
  const seeds: Seed[] = [];
  const add = (name: string, file: string, format?: string): void => void seeds.push({ name, format, bytes: readFileSync(join(dir, file)) });

  sh(dir, 'qemu-img', ['create', '-q', '-f', 'raw', 'src.raw', '4M']);
  writeData(dir, 'src.raw', 'raw');
  add('raw', 'src.raw', 'raw');

  for (const [name, opts] of [
    ['qcow2', 'compat=1.1'],
    ['qcow2-v2', 'compat=0.10'],
    ['qcow2-l2ext', 'extended_l2=on,cluster_size=64k'],
    ['qcow2-small-clusters', 'cluster_size=4k,refcount_bits=1'],
  ] as const) {
    sh(dir, 'qemu-img', ['create', '-q', '-f', 'qcow2', '-o', opts, `${name}.qcow2`, '4M']);
    writeData(dir, `${name}.qcow2`, 'qcow2');
    add(name, `${name}.qcow2`);
  }
  sh(dir, 'qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', 'src.raw', 'zlib.qcow2']);
  add('qcow2-zlib', 'zlib.qcow2');
  sh(dir, 'qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'compression_type=zstd', 'src.raw', 'zstd.qcow2']);
  add('qcow2-zstd', 'zstd.qcow2');
  sh(dir, 'qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'qcow2.qcow2', '-F', 'qcow2', 'overlay.qcow2']);
  add('qcow2-overlay', 'overlay.qcow2');

  sh(dir, 'qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', 'src.raw', 'sparse.vmdk']);
  add('vmdk', 'sparse.vmdk');
  sh(dir, 'qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', 'src.raw', 'stream.vmdk']);
  add('vmdk-stream', 'stream.vmdk');
  sh(dir, 'qemu-img', ['convert', '-f', 'raw', '-O', 'vpc', 'src.raw', 'dyn.vhd']);
  add('vpc', 'dyn.vhd');
  sh(dir, 'qemu-img', ['convert', '-f', 'raw', '-O', 'vpc', '-o', 'subformat=fixed', 'src.raw', 'fixed.vhd']);
  add('vpc-fixed', 'fixed.vhd', 'vpc');
  sh(dir, 'qemu-img', ['convert', '-f', 'raw', '-O', 'vhdx', 'src.raw', 'dyn.vhdx']);
  add('vhdx', 'dyn.vhdx');
  sh(dir, 'qemu-img', ['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=fixed,block_state_zero=off', 'src.raw', 'fixed.vhdx']);
  add('vhdx-fixed', 'fixed.vhdx');
  return seeds;
}
