/**
 * `vmimg measure [--output=human|json] (--size SIZE | [-f FMT] [-l SNAPSHOT] FILE) [-O FMT] [-o OPTIONS]`
 * — qemu-img measure's numbers, output and argument rules for raw and qcow2 targets; vmdk, vpc
 * and vhdx answered too. Human output: "required size: N", "fully allocated size: N" and, when
 * known, "bitmaps size: N"; JSON in QEMU's key order (bitmaps, required, fully-allocated).
 */
import type { Command } from 'commander';
import { measureDict, measureHuman, measureImage } from '../ops/measure.js';
import { VmimgError } from '../util/errors.js';
import { toQemuJson } from '../util/qjson.js';
import { addPolicyFlags, policyFrom, type PolicyFlags } from './policy-flags.js';
import { collect, parseOutputFormat, runCommand, type CliIO } from './run.js';

interface MeasureFlags extends PolicyFlags {
  size?: string;
  format?: string;
  snapshot?: string;
  outputFormat?: string;
  options?: string[];
  output?: string;
  forceShare?: boolean;
}

export function registerMeasure(program: Command, io: CliIO, setStatus: (s: number) => void): void {
  const cmd = program
    .command('measure')
    .description('compute the size an image in a given format needs (qemu-img measure work-alike)')
    .argument('[filename...]', 'image to measure (or use --size)')
    .option('--size <size>', 'measure a new image of this virtual size')
    .option('-f, --format <fmt>', 'format of the image (default: probe)')
    .option('-l, --snapshot <snapshot>', 'internal snapshot of the image (id or name)')
    .option('-O, --output-format <fmt>', 'target format (default raw)')
    .option('-o, --options <options>', 'target format options, as for create', collect)
    .option('--output <fmt>', "'human' (default) or 'json'")
    .option('-U, --force-share', 'accepted for qemu-img compatibility (vmimg never takes image locks)');
  addPolicyFlags(cmd).action(async (filenames: string[], flags: MeasureFlags) => {
    setStatus(
      await runCommand(io, async () => {
        if (flags.output !== undefined && flags.output !== 'human' && flags.output !== 'json') {
          throw new VmimgError('USAGE', '--output must be used with human or json as argument.', { value: flags.output });
        }
        const output = parseOutputFormat(flags.output);
        if (filenames.length > 1) throw new VmimgError('USAGE', 'At most one filename argument is allowed.', {});
        const source = filenames[0];
        const r = await measureImage({
          size: flags.size,
          source,
          sourceFormat: flags.format,
          snapshot: flags.snapshot,
          targetFormat: flags.outputFormat ?? 'raw',
          optionStrings: flags.options,
          policyFor: (p) => policyFrom(flags, p),
        });
        io.out(output === 'json' ? toQemuJson(measureDict(r)) + '\n' : measureHuman(r));
        return 0;
      }),
    );
  });
}
