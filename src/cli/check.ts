/**
 * `vmimg check [-f FMT] [--output=human|json] [-r leaks|all] [-q] FILE` — qemu-img check's
 * result shape, stdout/stderr split and exit statuses (0 clean, 1 failed, 2 corruptions,
 * 3 leaks, 63 unsupported format). Files the image refers to that the check reads (vmdk
 * extents) are opened under the chain policy.
 */
import type { Command } from 'commander';
import { CHECK_UNSUPPORTED_STATUS, checkDict, checkHuman, checkImage, repairedPreamble } from '../ops/check.js';
import { isVmimgError, VmimgError } from '../util/errors.js';
import { toQemuJson } from '../util/qjson.js';
import { addPolicyFlags, policyFrom, type PolicyFlags } from './policy-flags.js';
import { checkCacheMode, parseOutputFormat, renderError, type CliIO } from './run.js';

interface CheckFlags extends PolicyFlags {
  format?: string;
  output?: string;
  repair?: string;
  quiet?: boolean;
  forceShare?: boolean;
  sourceCache?: string;
}

export function registerCheck(program: Command, io: CliIO, setStatus: (s: number) => void): void {
  const cmd = program
    .command('check')
    .description('check an image for consistency (qemu-img check work-alike)')
    .argument('<filename>', 'image file')
    .option('-f, --format <fmt>', 'image format (default: probe the content)')
    .option('--output <fmt>', "'human' (default) or 'json'")
    .option('-r, --repair <what>', "repair 'leaks' or 'all' (qcow2)")
    .option('-q, --quiet', 'print nothing on stdout')
    .option('-T, --source-cache <mode>', 'source cache mode; accepted for compatibility (vmimg reads through the page cache)')
    .option('-U, --force-share', 'accepted for qemu-img compatibility (vmimg never takes image locks)');
  addPolicyFlags(cmd).action(async (filename: string, flags: CheckFlags) => {
    setStatus(await check(io, filename, flags));
  });
}

async function check(io: CliIO, filename: string, flags: CheckFlags): Promise<number> {
  try {
    const output = parseOutputFormat(flags.output);
    checkCacheMode(flags.sourceCache, 'source cache');
    if (flags.repair !== undefined && flags.repair !== 'leaks' && flags.repair !== 'all') {
      throw new VmimgError('USAGE', `Unknown option value for -r (expecting 'leaks' or 'all'): ${flags.repair}`, { value: flags.repair });
    }
    const fix = flags.repair === undefined ? undefined : { leaks: true, errors: flags.repair === 'all' };
    const outcome = await checkImage({
      filename,
      format: flags.format,
      fix,
      policy: policyFrom(flags, filename),
      report: (line) => io.err(line.endsWith('\n') ? line : line + '\n'),
    });
    if (!flags.quiet) {
      if (output === 'json') io.out(toQemuJson(checkDict(outcome)) + '\n');
      else io.out(repairedPreamble(outcome.result) + checkHuman(outcome.result));
    }
    if (outcome.result.checkErrors) io.err('vmimg: Check failed [CORRUPT_IMAGE]\n');
    return outcome.status;
  } catch (e) {
    io.err(isVmimgError(e) && e.code === 'CORRUPT_IMAGE' ? renderError(e).replace(/^vmimg: /, 'vmimg: Check failed: ') : renderError(e));
    if (isVmimgError(e) && e.details['status'] === CHECK_UNSUPPORTED_STATUS) return CHECK_UNSUPPORTED_STATUS;
    return 1;
  }
}
