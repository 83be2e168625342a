/**
 * `vmimg mkfs -t TYPE [-o OUT] [--max-size SIZE] [--mtime SECONDS] [--owner UID:GID] [--skip-special]
 * [--squash-owner] [--output=human|json] INPUT...` — builds a filesystem image from directories
 * and/or tar, tar.gz, tar.zst archives (several inputs are overlaid in order as OCI layers).
 * Dispatches on -t: packagefs, ext4 (src/fs/ext4/command.ts; OUT may be the last argument).
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Command } from 'commander';
import { VmimgError } from '../util/errors.js';
import { parseSize, toSafeNumber } from '../util/size.js';
import type { Ext4Flags } from '../fs/ext4/command.js';
import { parseOutputFormat, runCommand, type CliIO } from './run.js';

/** The flags of every type: ext4's (src/fs/ext4/command.ts) plus packagefs's and the CLI's own. */
export interface MkfsFlags extends Ext4Flags {
  type?: string;
  skipSpecial?: boolean;
  compress?: string;
  output?: string;
}

/** One filesystem type's build: inputs and flags → a result summary (JSON-able). */
type Builder = (inputs: string[], flags: MkfsFlags) => Promise<Record<string, unknown>>;

const BUILDERS: Record<string, () => Promise<Builder>> = {
  packagefs: async () => buildPackagefsCommand,
  ext4: async () => {
    const { ext4Command } = await import('../fs/ext4/command.js');
    return (inputs, flags) => ext4Command(inputs, flags, commonBuildFlags(flags));
  },
  cpio: async () => {
    const { cpioCommand } = await import('../fs/cpio/command.js');
    return (inputs, flags) => cpioCommand(inputs, flags, commonBuildFlags(flags));
  },
};

export function registerMkfs(program: Command, io: CliIO, setStatus: (s: number) => void): void {
  program
    .command('mkfs')
    .description('build a filesystem image from directories and/or tar archives (overlaid in order)')
    .argument('<inputs...>', 'directories or tar/tar.gz/tar.zst archives')
    .requiredOption('-t, --type <type>', `filesystem type: ${Object.keys(BUILDERS).join(', ')}`)
    .option('-o, --out <file>', 'image to write (packagefs default: build/pkgfs.img)')
    .option('--max-size <size>', 'fail when the image would be larger (k, M, G, T suffixes)')
    .option('--mtime <seconds>', 'packagefs: timestamp of every entry; ext4, cpio: later mtimes are clamped to it, and it is the ext4 superblock time (default: SOURCE_DATE_EPOCH)')
    .option('--owner <uid:gid>', 'owner of every entry (packagefs default 0:0)')
    .option('--skip-special', 'leave out device nodes, fifos and sockets the type cannot hold')
    .option('--squash-owner', 'set every uid and gid in the tree to 0')
    .option('--output <fmt>', "'human' (default) or 'json'")
    .option('-L, --label <label>', 'ext4: volume label')
    .option('-U, --uuid <uuid>', 'ext4: filesystem UUID (default derived from the tree)')
    .option('--hash-seed <uuid>', 'ext4: directory hash seed (default derived from the tree)')
    .option('--size <size>', 'ext4: filesystem size (default automatic)')
    .option('--free <pct>', 'ext4: automatic size leaves this share free (default 10)')
    .option('-N, --inodes <n>', 'ext4: inode count')
    .option('-i, --bytes-per-inode <n>', 'ext4: one inode per this many bytes when -N is not given (default 16384)')
    .option('-J, --journal', 'ext4: create a jbd2 journal')
    .option('-O, --features <list>', 'ext4: features, mke2fs style (metadata_csum,^64bit,...)')
    .option('--format <fmt>', 'ext4: image format of OUT (raw, qcow2, vmdk, vhdx, vpc)')
    .option('--compress <c>', 'cpio: gzip (an initramfs) or none (default)')
    .action(async (inputs: string[], flags: MkfsFlags) => {
      setStatus(await runCommand(io, () => mkfs(io, inputs, flags)));
    });
}

async function mkfs(io: CliIO, inputs: string[], flags: MkfsFlags): Promise<number> {
  const output = parseOutputFormat(flags.output);
  const type = flags.type ?? '';
  if (!Object.hasOwn(BUILDERS, type)) {
    throw new VmimgError('UNSUPPORTED_OPTION', `mkfs type '${type}' is not supported (supported: ${Object.keys(BUILDERS).join(', ')})`, { type });
  }
  const result = await (await BUILDERS[type]!())(inputs, flags);
  if (output === 'json') io.out(JSON.stringify(result, null, 4) + '\n');
  else io.out(`${result['output']}: ${type}, ${result['entries']} entries, ${result['image-size']} bytes\n`);
  // A builder's `warnings` (strings): what the image could not hold; on stderr in human mode.
  if (output !== 'json' && Array.isArray(result['warnings'])) for (const w of result['warnings']) io.err(`vmimg: warning: ${String(w)}\n`);
  return 0;
}

function parseInteger(text: string, what: string, min: number, max: number): number {
  if (!/^-?[0-9]+$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new VmimgError('INVALID_OPTION', `${what} must be an integer in ${min}..${max}, not '${text}'`, { value: text });
  }
  return Number(text);
}

/** Flags shared by the builders: owner, mtime, max size. */
export function commonBuildFlags(flags: MkfsFlags): { uid?: number; gid?: number; mtime?: number; maxSize?: number } {
  const out: { uid?: number; gid?: number; mtime?: number; maxSize?: number } = {};
  if (flags.owner !== undefined) {
    const m = /^([0-9]+):([0-9]+)$/.exec(flags.owner);
    if (!m) throw new VmimgError('INVALID_OPTION', `--owner must be UID:GID, not '${flags.owner}'`, { value: flags.owner });
    out.uid = parseInteger(m[1]!, 'uid', 0, 0xffffffff);
    out.gid = parseInteger(m[2]!, 'gid', 0, 0xffffffff);
  }
  if (flags.mtime !== undefined) out.mtime = parseInteger(flags.mtime, '--mtime', -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  if (flags.maxSize !== undefined) out.maxSize = toSafeNumber(parseSize(flags.maxSize, { what: 'maximum size' }), 'maximum size');
  return out;
}

async function buildPackagefsCommand(inputs: string[], flags: MkfsFlags): Promise<Record<string, unknown>> {
  const { loadTree } = await import('../tree/index.js');
  const { buildPackagefs } = await import('../fs/packagefs/build.js');
  const target = flags.out ?? 'build/pkgfs.img';
  const options = { ...commonBuildFlags(flags), skipSpecial: flags.skipSpecial };
  const tree = await loadTree(inputs, { squashOwner: flags.squashOwner, sourceDateEpoch: options.mtime });
  try {
    await mkdir(dirname(target), { recursive: true });
    const r = await buildPackagefs(tree, target, options);
    return { output: target, type: 'packagefs', 'image-size': r.imageSize, entries: r.entryCount, files: r.fileCount, 'data-bytes': r.dataBytes };
  } finally {
    await tree.close();
  }
}
