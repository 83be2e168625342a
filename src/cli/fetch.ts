/**
 * `vmimg fetch firecracker [--version vX.Y.Z] [--arch x86_64|aarch64] [--dest DIR] [--base-url URL]`
 * `vmimg fetch kernel [--version 5.10|6.1] [--arch ARCH] [--sha256 HEX] [--dest DIR] [--base-url URL]`
 * Common: [--cache-dir DIR] [--config FILE] [--timeout SECONDS] [-q] [--output=human|json].
 * Pinned, SHA256-verified, cached, lock-protected downloads (src/rootfs/fetch; docs/fetch.md).
 * Precedence: flag, then the config file, then the built-in default.
 */
import { join } from 'node:path';
import type { Command } from 'commander';
import { VmimgError } from '../util/errors.js';
import { FetchCache, defaultCacheDir } from '../rootfs/fetch/cache.js';
import { loadFetchConfig, type FetchConfig } from '../rootfs/fetch/config.js';
import { FIRECRACKER_DEFAULT_BASE_URL, FIRECRACKER_DEFAULT_VERSION, fetchFirecracker, parseArch, parseFirecrackerVersion } from '../rootfs/fetch/firecracker.js';
import { KERNEL_DEFAULT_BASE_URL, KERNEL_DEFAULT_VERSION, fetchKernel } from '../rootfs/fetch/kernel.js';
import { progressBar } from './progress.js';
import { parseOutputFormat, parseTimeoutMs, runCommand, type CliIO } from './run.js';

interface CommonFlags {
  version?: string;
  arch?: string;
  dest?: string;
  baseUrl?: string;
  cacheDir?: string;
  config?: string;
  timeout?: string;
  quiet?: boolean;
  output?: string;
}

interface KernelFlags extends CommonFlags {
  sha256?: string;
}

function common(cmd: Command): Command {
  return cmd
    .option('--arch <arch>', 'x86_64 or aarch64 (default: the host)')
    .option('--dest <dir>', 'destination directory')
    .option('--base-url <url>', 'mirror base URL (overrides the config file)')
    .option('--cache-dir <dir>', 'fetch cache (default $VMIMG_CACHE_DIR, else ~/.cache/vmimg)')
    .option('--config <file>', 'config file (default $VMIMG_FETCH_CONFIG, else ~/.config/vmimg/fetch.json)')
    .option('--timeout <seconds>', 'network idle timeout (default 30)')
    .option('-q, --quiet', 'no progress bar')
    .option('--output <fmt>', "'human' (default) or 'json'");
}

function timeoutMs(flags: CommonFlags, config: FetchConfig): number | undefined {
  if (flags.timeout !== undefined) return parseTimeoutMs(flags.timeout);
  return config.timeoutSeconds !== undefined ? config.timeoutSeconds * 1000 : undefined;
}

async function setup(flags: CommonFlags) {
  const config = await loadFetchConfig(flags.config);
  const cache = new FetchCache(flags.cacheDir ?? config.cacheDir ?? defaultCacheDir());
  const progress = progressBar(!flags.quiet && process.stderr.isTTY === true);
  return { config, cache, progress, arch: parseArch(flags.arch), timeoutMs: timeoutMs(flags, config), output: parseOutputFormat(flags.output) };
}

export function registerFetch(program: Command, io: CliIO, setStatus: (s: number) => void): void {
  const fetch = program.command('fetch').description('download pinned, SHA256-verified Firecracker binaries and guest kernels');
  common(
    fetch
      .command('firecracker')
      .description('install firecracker and jailer from a Firecracker release into DEST/bin')
      .option('--version <vX.Y.Z>', `release (default ${FIRECRACKER_DEFAULT_VERSION})`),
  ).action(async (flags: CommonFlags) => {
    setStatus(
      await runCommand(io, async () => {
        const s = await setup(flags);
        const r = await fetchFirecracker({
          version: parseFirecrackerVersion(flags.version ?? s.config.firecracker?.version ?? FIRECRACKER_DEFAULT_VERSION),
          arch: s.arch,
          dest: flags.dest ?? join('tools', 'firecracker'),
          baseUrl: flags.baseUrl ?? s.config.firecracker?.baseUrl ?? FIRECRACKER_DEFAULT_BASE_URL,
          cache: s.cache,
          progress: s.progress,
          timeoutMs: s.timeoutMs,
        });
        if (s.output === 'json') io.out(JSON.stringify(r, null, 4) + '\n');
        else io.out(`firecracker ${r.version} (${r.arch}): ${r.status === 'present' ? 'already installed' : 'installed'} ${r.bin.firecracker}, ${r.bin.jailer} (tarball sha256 ${r.sha256})\n`);
        return 0;
      }),
    );
  });
  common(
    fetch
      .command('kernel')
      .description('install a Firecracker CI guest kernel (vmlinux) into DEST')
      .option('--version <version>', `guest kernel series (default ${KERNEL_DEFAULT_VERSION})`)
      .option('--sha256 <hex>', 'expected digest: overrides the pinned one; required for a version vmimg has none pinned for'),
  ).action(async (flags: KernelFlags) => {
    setStatus(
      await runCommand(io, async () => {
        const s = await setup(flags);
        const r = await fetchKernel({
          version: flags.version ?? KERNEL_DEFAULT_VERSION,
          arch: s.arch,
          dest: flags.dest ?? join('tools', 'firecracker', 'kernels', s.arch),
          baseUrl: flags.baseUrl ?? s.config.kernel?.baseUrl ?? KERNEL_DEFAULT_BASE_URL,
          sha256: flags.sha256,
          cache: s.cache,
          progress: s.progress,
          timeoutMs: s.timeoutMs,
        });
        if (s.output === 'json') io.out(JSON.stringify(r, null, 4) + '\n');
        else io.out(`kernel ${r.version} (${r.arch}): ${r.status === 'present' ? 'already installed' : 'installed'} ${r.path} (sha256 ${r.sha256})\n`);
        return 0;
      }),
    );
  });
}
