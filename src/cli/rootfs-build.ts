/**
 * `vmimg rootfs build RECIPE [-o OUT] [--agent PATH] [--arch A] [--format F] [--lock FILE]
 *  [--update] [--mirror URL] [--cache-dir DIR] [--timeout S] [-q] [--output=human|json]`
 * `vmimg rootfs build-all [--dest DIR] [same options]` — the built-in go, node and python images.
 * RECIPE is a YAML/JSON recipe file or a built-in name (src/rootfs/recipe; docs/rootfs.md).
 */
import { join } from 'node:path';
import type { Command } from 'commander';
import { FetchCache, defaultCacheDir } from '../rootfs/fetch/cache.js';
import { parseArch } from '../rootfs/fetch/firecracker.js';
import { BUILTIN_RECIPES } from '../rootfs/recipe/builtin.js';
import { buildRootfs, type RootfsBuildResult } from '../rootfs/recipe/build.js';
import { defaultOutput, loadRecipe } from '../rootfs/recipe/load.js';
import { parseOutputFormat, parseTimeoutMs, runCommand, type CliIO } from './run.js';

interface BuildFlags {
  out?: string;
  dest?: string;
  agent?: string;
  arch?: string;
  format?: string;
  lock?: string;
  update?: boolean;
  mirror?: string;
  base?: string;
  cacheDir?: string;
  timeout?: string;
  quiet?: boolean;
  output?: string;
}

/** Default image folder, as the tools/firecracker Makefile expects. */
export const DEFAULT_IMAGE_DIR = join('tools', 'firecracker', 'images');

function options(cmd: Command): Command {
  return cmd
    .option('--agent <path>', 'guest agent binary, installed as /usr/local/bin/<name> (overrides the recipe)')
    .option('--arch <arch>', 'x86_64 or aarch64 (default: the recipe, else the host)')
    .option('--format <fmt>', 'image format: raw (default), qcow2, vmdk, vhdx, vpc')
    .option('--update', 'ignore the lock file: resolve packages again and rewrite it')
    .option('--mirror <url>', 'Alpine mirror for built-in recipes (the folder holding v3.20/)')
    .option('--base <path>', "use this local tarball or directory as the base instead of the recipe's")
    .option('--cache-dir <dir>', 'fetch cache (default $VMIMG_CACHE_DIR, else ~/.cache/vmimg)')
    .option('--timeout <seconds>', 'network idle timeout (default 30)')
    .option('-q, --quiet', 'no progress messages on stderr')
    .option('--output <fmt>', "'human' (default) or 'json'");
}

function summary(r: RootfsBuildResult): Record<string, unknown> {
  return {
    output: r.output,
    lock: r.lockPath,
    recipe: r.lock.recipe,
    arch: r.lock.arch,
    format: r.ext4.format,
    'image-size': r.ext4.imageSize,
    sha256: r.lock.image.sha256,
    entries: r.entries,
    packages: r.lock.packages.map((p) => `${p.name}-${p.version}`),
    ...(r.runtime !== undefined ? { runtime: r.runtime } : {}),
  };
}

function human(r: RootfsBuildResult): string {
  const pk = r.lock.packages.length;
  return `${r.output}: ext4 (${r.ext4.format}), ${r.ext4.imageSize} bytes, ${r.entries} entries, ${pk} package${pk === 1 ? '' : 's'} installed${r.runtime ? `, runtime ${r.runtime}` : ''}; lock ${r.lockPath}\n`;
}

async function buildOne(io: CliIO, name: string, flags: BuildFlags, out: string | undefined, dir: string): Promise<RootfsBuildResult> {
  const recipe = await loadRecipe(name, {
    arch: parseArch(flags.arch),
    forceArch: flags.arch !== undefined,
    ...(flags.agent !== undefined ? { agent: flags.agent } : {}),
    ...(flags.format !== undefined ? { format: flags.format } : {}),
    ...(flags.mirror !== undefined ? { mirror: flags.mirror } : {}),
    ...(flags.base !== undefined ? { base: flags.base } : {}),
  });
  const timeoutMs = parseTimeoutMs(flags.timeout);
  return buildRootfs({
    recipe,
    output: out ?? defaultOutput(recipe, dir),
    cache: new FetchCache(flags.cacheDir ?? defaultCacheDir()),
    useLock: !flags.update,
    ...(flags.lock !== undefined ? { lockPath: flags.lock } : {}),
    ...(timeoutMs !== undefined ? { http: { timeoutMs } } : {}),
    log: flags.quiet ? () => undefined : (m) => io.err(`${recipe.name}: ${m}\n`),
  });
}

export function registerRootfsBuild(rootfs: Command, io: CliIO, setStatus: (s: number) => void): void {
  options(
    rootfs
      .command('build')
      .description('build an ext4 root filesystem from a recipe (file or built-in: go, node, python), without root')
      .argument('<recipe>', 'recipe file (YAML/JSON) or built-in name')
      .option('-o, --out <file>', `image to write (default: the recipe's output.path, else ${DEFAULT_IMAGE_DIR}/<name>.ext4)`)
      .option('--lock <file>', 'lock file (default <image>.lock.json)'),
  ).action(async (name: string, flags: BuildFlags) => {
    setStatus(
      await runCommand(io, async () => {
        const output = parseOutputFormat(flags.output);
        const r = await buildOne(io, name, flags, flags.out, DEFAULT_IMAGE_DIR);
        io.out(output === 'json' ? JSON.stringify(summary(r), null, 4) + '\n' : human(r));
        return 0;
      }),
    );
  });
  options(
    rootfs
      .command('build-all')
      .description(`build the built-in images (${BUILTIN_RECIPES.join(', ')}) into DEST`)
      .option('--dest <dir>', `image folder (default ${DEFAULT_IMAGE_DIR})`),
  ).action(async (flags: BuildFlags) => {
    setStatus(
      await runCommand(io, async () => {
        const output = parseOutputFormat(flags.output);
        const results: RootfsBuildResult[] = [];
        for (const name of BUILTIN_RECIPES) results.push(await buildOne(io, name, flags, undefined, flags.dest ?? DEFAULT_IMAGE_DIR));
        io.out(output === 'json' ? JSON.stringify(results.map(summary), null, 4) + '\n' : results.map(human).join(''));
        return 0;
      }),
    );
  });
}
