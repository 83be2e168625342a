/** `vmimg rootfs build|build-all|verify`: microVM root filesystems (docs/rootfs.md). Wiring only. */
import type { Command } from 'commander';
import { registerRootfsBuild } from './rootfs-build.js';
import { registerRootfsVerify } from './rootfs-verify.js';
import type { CliIO } from './run.js';

export function registerRootfs(program: Command, io: CliIO, setStatus: (s: number) => void): void {
  const rootfs = program.command('rootfs').description('build and check microVM root filesystems (ext4) from recipes, without root');
  registerRootfsBuild(rootfs, io, setStatus);
  registerRootfsVerify(rootfs, io, setStatus);
}
