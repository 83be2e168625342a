/**
 * `vmimg convert [-f FMT] [-O FMT] [-o OPTIONS] [-c] [-B BACKING -F FMT] [-n] [-S SIZE] [-W]
 * [-m N] [-p] [-q] [--target-is-zero] [--salvage] SRC... DST` — qemu-img convert's flags and meanings.
 */
import type { Command } from 'commander';
import { convertImages, DEFAULT_MIN_SPARSE } from '../ops/convert/convert.js';
import { VmimgError } from '../util/errors.js';
import { parseSize } from '../util/size.js';
import { addPolicyFlags, policyFrom, type PolicyFlags } from './policy-flags.js';
import { progressBar } from './progress.js';
import { optionsHelp, wantsHelp } from '../formats/options.js';
import { getDriver } from '../formats/registry.js';
import { checkCacheMode, collect, runCommand, type CliIO } from './run.js';

interface ConvertFlags extends PolicyFlags {
  format?: string;
  snapshot?: string;
  outputFormat?: string;
  options?: string[];
  compress?: boolean;
  backing?: string;
  backingFormat?: string;
  /** commander's negatable --no-create: false when -n is given. */
  create?: boolean;
  sparseSize?: string;
  outOfOrder?: boolean;
  coroutines?: string;
  progress?: boolean;
  quiet?: boolean;
  targetIsZero?: boolean;
  cache?: string;
  sourceCache?: string;
  forceShare?: boolean;
  rateLimit?: string;
  copyRange?: boolean;
  skipBrokenBitmaps?: boolean;
  bitmaps?: boolean;
  salvage?: boolean;
}

export function registerConvert(program: Command, io: CliIO, setStatus: (s: number) => void): void {
  const cmd = program
    .command('convert')
    .description('convert images from one format to another (qemu-img convert work-alike)')
    .argument('[files...]', 'source image(s) followed by the output file')
    .option('-f, --format <fmt>', 'format of the source images (default: probe)')
    .option('-l, --snapshot <param>', "read an internal snapshot of the source: 'snapshot.id=ID,snapshot.name=NAME' or an id or name")
    .option('-O, --output-format <fmt>', 'output format (default raw)')
    .option('-o, --options <options>', 'output format options, as for create', collect)
    .option('-c, --compress', 'compress the output (qcow2: zlib or zstd per compression_type; vmdk: streamOptimized)')
    .option('-B, --backing <file>', 'make the output an overlay of FILE; unallocated source ranges stay unallocated')
    .option('-F, --backing-format <fmt>', 'format of the -B backing file')
    .option('-n, --no-create', 'do not create the target; write into an existing one')
    .option('-S, --sparse-size <size>', 'minimum run of zeros turned into a hole (default 4k; 0 = fully allocate)')
    .option('-C, --copy-range', 'accepted for qemu-img compatibility (copy offloading); vmimg copies through its own buffers')
    .option('-W, --out-of-order', 'accepted for qemu-img compatibility: vmimg overlaps reads and compression but always writes in order')
    .option('-m, --coroutines <n>', 'chunks in flight, 1..16 (default 8)')
    .option('-r, --rate-limit <rate>', 'accepted for qemu-img compatibility (a size per second); vmimg does not throttle')
    .option('-p, --progress', 'show a progress bar on stderr')
    .option('-q, --quiet', 'quiet')
    .option('--bitmaps', "copy the source's persistent bitmaps (qcow2 v3 to qcow2 v3)")
    .option('--skip-broken-bitmaps', 'with --bitmaps: skip inconsistent (in-use) bitmaps with a warning instead of failing')
    .option('--salvage', 'keep going on read errors: unreadable 512-byte sectors become zeros, each with a warning (exit status 0)')
    .option('--target-is-zero', 'with -n: the target already reads as zeros, skip writing zeros')
    .option('-t, --cache <mode>', 'target cache mode: unsafe (default, as qemu-img: never flush) or writeback/writethrough/none/directsync (flush the target to disk at the end)')
    .option('-T, --source-cache <mode>', 'source cache mode; accepted for compatibility (vmimg reads through the page cache)')
    .option('-U, --force-share', 'accepted for qemu-img compatibility (vmimg never takes image locks)');
  addPolicyFlags(cmd).action(async (files: string[], flags: ConvertFlags) => {
    setStatus(await runCommand(io, () => convert(io, files, flags)));
  });
}

async function convert(io: CliIO, files: string[], flags: ConvertFlags): Promise<number> {
  // img_convert checks this first, right after reading the flags.
  if (flags.skipBrokenBitmaps && !flags.bitmaps) throw new VmimgError('USAGE', 'Use of --skip-broken-bitmaps requires --bitmaps', {});
  // img_convert answers -o help before looking at any file name (and then converts nothing).
  if (wantsHelp(flags.options ?? [])) {
    const driver = await getDriver(flags.outputFormat ?? 'raw');
    io.out(optionsHelp(driver.name, driver.createOptions));
    return 0;
  }
  if (files.length < 2) throw new VmimgError('USAGE', 'Expecting at least one source and an output file name', {});
  checkCacheMode(flags.cache, 'cache');
  checkCacheMode(flags.sourceCache, 'source cache');
  if (flags.copyRange && flags.compress) throw new VmimgError('USAGE', 'Cannot enable copy offloading when -c is used', {});
  if (flags.copyRange && flags.sparseSize !== undefined) throw new VmimgError('USAGE', 'Cannot enable copy offloading when -S is used', {});
  if (flags.copyRange && flags.salvage) throw new VmimgError('USAGE', 'Cannot use copy offloading in salvaging mode', {});
  const sources = files.slice(0, -1);
  const target = files[files.length - 1]!;
  let minSparse = DEFAULT_MIN_SPARSE;
  if (flags.sparseSize !== undefined) {
    const v = parseSize(flags.sparseSize, { what: 'sparse size', max: BigInt(Number.MAX_SAFE_INTEGER) });
    minSparse = Number(v) - (Number(v) % 512); // qemu-img rounds -S down to whole sectors
  }
  if (flags.rateLimit !== undefined) parseSize(flags.rateLimit, { what: 'rate limit', max: BigInt(Number.MAX_SAFE_INTEGER) });
  const parallel = flags.coroutines === undefined ? undefined : Number(flags.coroutines);
  const bar = progressBar(!!flags.progress && !flags.quiet);
  try {
    await convertImages({
      sources,
      sourceFormat: flags.format,
      ...(flags.snapshot !== undefined ? { snapshot: flags.snapshot } : {}),
      target,
      targetFormat: flags.outputFormat,
      optionStrings: flags.options,
      compress: flags.compress,
      backingFile: flags.backing,
      backingFormat: flags.backingFormat,
      noCreate: flags.create === false,
      minSparse,
      parallel,
      targetIsZero: flags.targetIsZero,
      skipBrokenBitmaps: flags.skipBrokenBitmaps,
      bitmaps: flags.bitmaps,
      salvage: flags.salvage,
      quiet: flags.quiet,
      onWarning: (message) => io.err(`vmimg: warning: ${message}\n`),
      sync: flags.cache !== undefined && flags.cache !== 'unsafe',
      policyFor: (source) => policyFrom(flags, source),
      onProgress: (done, total) => bar.update(done, total),
    });
  } finally {
    bar.stop();
  }
  return 0;
}
