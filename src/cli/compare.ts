/**
 * `vmimg compare [-f FMT] [-F FMT] [-s] [-p] [-q] A B` — qemu-img compare's messages and exit
 * statuses (0 identical, 1 differ, 2 open error, 3 allocation-status error, 4 read error).
 */
import type { Command } from 'commander';
import { compareImages } from '../ops/compare.js';
import { isVmimgError } from '../util/errors.js';
import { addPolicyFlags, policyFrom, type PolicyFlags } from './policy-flags.js';
import { progressBar } from './progress.js';
import { checkCacheMode, renderError, type CliIO } from './run.js';

interface CompareFlags extends PolicyFlags {
  aFormat?: string;
  bFormat?: string;
  strict?: boolean;
  progress?: boolean;
  quiet?: boolean;
  forceShare?: boolean;
  sourceCache?: string;
}

export function registerCompare(program: Command, io: CliIO, setStatus: (s: number) => void): void {
  const cmd = program
    .command('compare')
    .description('compare the contents of two images (qemu-img compare work-alike)')
    .argument('<a>', 'first image')
    .argument('<b>', 'second image')
    .option('-f, --a-format <fmt>', 'format of the first image (default: probe)')
    .option('-F, --b-format <fmt>', 'format of the second image (default: probe)')
    .option('-s, --strict', 'images of different sizes or allocation differ')
    .option('-p, --progress', 'show a progress bar on stderr')
    .option('-q, --quiet', 'print nothing; the exit status tells')
    .option('-T, --source-cache <mode>', 'source cache mode; accepted for compatibility (vmimg reads through the page cache)')
    .option('-U, --force-share', 'accepted for qemu-img compatibility (vmimg never takes image locks)');
  addPolicyFlags(cmd).action(async (a: string, b: string, flags: CompareFlags) => {
    const bar = progressBar(!!flags.progress && !flags.quiet);
    try {
      checkCacheMode(flags.sourceCache, 'source cache');
      const r = await compareImages({ a, b, formatA: flags.aFormat, formatB: flags.bFormat, strict: flags.strict, policyFor: (p) => policyFrom(flags, p), onProgress: (d, t) => bar.update(d, t) });
      bar.stop();
      if (!flags.quiet) io.out((r.sizeWarning && !flags.strict ? 'Warning: Image size mismatch!\n' : '') + r.message + '\n');
      setStatus(r.status);
    } catch (e) {
      bar.stop();
      io.err(renderError(e));
      const status = isVmimgError(e) ? e.details['status'] : undefined;
      setStatus(typeof status === 'number' ? status : 2);
    }
  });
}
