/**
 * `vmimg info [-f FMT] [--backing-chain] [--output=human|json] [--safety-check] FILE` — the
 * fields, values and layout of `qemu-img info` (7.2). Backing files are opened only with
 * --backing-chain and only under the chain policy.
 */
import type { Command } from 'commander';
import { collectInfo, renderInfoHuman } from '../ops/info.js';
import { VmimgError } from '../util/errors.js';
import { toQemuJson } from '../util/qjson.js';
import { addPolicyFlags, policyFrom, type PolicyFlags } from './policy-flags.js';
import { parseOutputFormat, runCommand, type CliIO } from './run.js';

interface InfoFlags extends PolicyFlags {
  format?: string;
  backingChain?: boolean;
  output?: string;
  safetyCheck?: boolean;
  forceShare?: boolean;
}

export function registerInfo(program: Command, io: CliIO, setStatus: (s: number) => void): void {
  const cmd = program
    .command('info')
    .description('show information about a disk image (qemu-img info work-alike)')
    .argument('<filename>', 'image file')
    .option('-f, --format <fmt>', 'image format (default: probe the content)')
    .option('--backing-chain', 'show every image of the backing chain (opened under the policy)')
    .option('--output <fmt>', "'human' (default) or 'json'")
    .option('--safety-check', 'exit non-zero when the image refers to other files or carries unknown or unsafe features')
    .option('-U, --force-share', 'accepted for qemu-img compatibility (vmimg never takes image locks)');
  addPolicyFlags(cmd).action(async (filename: string, flags: InfoFlags) => {
    setStatus(await runCommand(io, () => info(io, filename, flags)));
  });
}

async function info(io: CliIO, filename: string, flags: InfoFlags): Promise<number> {
  const output = parseOutputFormat(flags.output);
  const result = await collectInfo({ filename, format: flags.format, backingChain: flags.backingChain, policy: policyFrom(flags, filename) });
  if (output === 'json') {
    io.out(toQemuJson(flags.backingChain ? result.infos : result.infos[0]!) + '\n');
  } else {
    io.out(result.infos.map(renderInfoHuman).join('\n'));
  }
  if (flags.safetyCheck && result.safetyIssues.length > 0) {
    throw new VmimgError('UNSUPPORTED_IMAGE', `Safety check failed for '${filename}': ${result.safetyIssues.join('; ')}`, { issues: result.safetyIssues });
  }
  return 0;
}
