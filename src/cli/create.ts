/**
 * `vmimg create [-q] [-f FMT] [-b BACKING [-F FMT]] [-u] [-o OPTIONS] [--output=human|json] FILENAME [SIZE]`
 * — qemu-img create's flags, option names and "Formatting" line; --output=json is vmimg's own.
 */
import type { Command } from 'commander';
import { createImage, type CreateResult } from '../ops/create.js';
import { optionsHelp, wantsHelp } from '../formats/options.js';
import { getDriver } from '../formats/registry.js';
import { VmimgError } from '../util/errors.js';
import { collect, parseOutputFormat, runCommand, type CliIO } from './run.js';

interface CreateFlags {
  format?: string;
  backing?: string;
  backingFormat?: string;
  unsafe?: boolean;
  options?: string[];
  quiet?: boolean;
  output?: string;
}

export function registerCreate(program: Command, io: CliIO, setStatus: (s: number) => void): void {
  program
    .command('create')
    .description('create a new disk image (qemu-img create work-alike)')
    .argument('[filename]', 'image file to create')
    .argument('[size]', 'virtual size (k, M, G, T, P, E suffixes); optional with -b')
    .option('-f, --format <fmt>', 'image format: raw, qcow2, vmdk, vpc, vhdx', 'raw')
    .option('-b, --backing <file>', 'backing file (recorded verbatim, opened relative to the new image)')
    .option('-F, --backing-format <fmt>', 'format of the backing file')
    .option('-u, --unsafe', 'do not open the backing file (SIZE must then be given)')
    .option('-o, --options <options>', "format options key=value[,key=value]; ',,' is a literal comma; 'help' lists them", collect)
    .option('-q, --quiet', 'do not print the Formatting line')
    .option('--output <fmt>', "'human' (default) or 'json'")
    .action(async (filename: string | undefined, size: string | undefined, flags: CreateFlags) => {
      setStatus(await runCommand(io, () => create(io, filename, size, flags)));
    });
}

async function create(io: CliIO, filename: string | undefined, size: string | undefined, flags: CreateFlags): Promise<number> {
  const output = parseOutputFormat(flags.output);
  const optionStrings = flags.options ?? [];
  if (wantsHelp(optionStrings)) {
    const driver = await getDriver(flags.format ?? 'raw');
    io.out(optionsHelp(driver.name, driver.createOptions));
    return 0;
  }
  if (filename === undefined) throw new VmimgError('USAGE', 'Expecting image file name', {});
  const result = await createImage({
    filename,
    format: flags.format,
    size,
    optionStrings,
    backingFile: flags.backing,
    backingFormat: flags.backingFormat,
    unsafe: flags.unsafe,
    onFormatting: (line) => {
      if (!flags.quiet && output === 'human') io.out(line + '\n');
    },
    onWarning: (message) => io.err(`vmimg: warning: ${message}\n`),
  });
  if (output === 'json') io.out(JSON.stringify(createdJson(result), null, 4) + '\n');
  return 0;
}

/** The --output=json object: qemu-img info's key spelling for the shared facts. */
export function createdJson(r: CreateResult): Record<string, unknown> {
  const json: Record<string, unknown> = {
    filename: r.filename,
    format: r.format,
    'virtual-size': Number(r.virtualSize),
    'file-length': r.fileLength,
    'actual-size': r.actualSize,
  };
  if (r.clusterSize !== undefined) json['cluster-size'] = r.clusterSize;
  if (r.subformat !== undefined) json['subformat'] = r.subformat;
  if (r.backingFilename !== undefined) json['backing-filename'] = r.backingFilename;
  if (r.backingFormat !== undefined) json['backing-filename-format'] = r.backingFormat;
  if (r.dataFile !== undefined) json['data-file'] = r.dataFile;
  return json;
}
