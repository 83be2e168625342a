/**
 * `vmimg map [-f FMT] [--output=human|json] [--start-offset N] [--max-length N] FILE` — qemu-img
 * map's entries (JSON: start, length, depth, present, zero, data, offset). The backing chain is
 * opened under the chain policy.
 */
import type { Command } from 'commander';
import { openChain } from '../chain/open.js';
import { EMPTY_MAP_ENTRY, MAP_HUMAN_HEADER, mapChain, mapHumanLine, mapJsonEntry, type MapEntry } from '../ops/map.js';
import { VmimgError } from '../util/errors.js';
import { parseSize } from '../util/size.js';
import { addPolicyFlags, policyFrom, type PolicyFlags } from './policy-flags.js';
import { parseOutputFormat, runCommand, type CliIO } from './run.js';

interface MapFlags extends PolicyFlags {
  format?: string;
  output?: string;
  startOffset?: string;
  maxLength?: string;
  forceShare?: boolean;
}

export function registerMap(program: Command, io: CliIO, setStatus: (s: number) => void): void {
  const cmd = program
    .command('map')
    .description('show where the data of an image lives (qemu-img map work-alike)')
    .argument('<filename>', 'image file')
    .option('-f, --format <fmt>', 'image format (default: probe the content)')
    .option('--output <fmt>', "'human' (default) or 'json'")
    .option('-s, --start-offset <offset>', 'first guest byte to map')
    .option('-l, --max-length <length>', 'number of guest bytes to map')
    .option('-U, --force-share', 'accepted for qemu-img compatibility (vmimg never takes image locks)');
  addPolicyFlags(cmd).action(async (filename: string, flags: MapFlags) => {
    setStatus(await runCommand(io, () => map(io, filename, flags)));
  });
}

async function map(io: CliIO, filename: string, flags: MapFlags): Promise<number> {
  const output = parseOutputFormat(flags.output);
  const chain = await openChain(filename, { format: flags.format, policy: policyFrom(flags, filename) });
  try {
    const size = chain.top.virtualSize;
    const start = flags.startOffset === undefined ? 0 : Math.min(size, Number(parseSize(flags.startOffset, { what: 'start offset' })));
    const length = flags.maxLength === undefined ? size - start : Math.min(size - start, Number(parseSize(flags.maxLength, { what: 'max length' })));
    if (output === 'json') {
      // Streamed as img_map prints it: '[' first, each entry once the next one is known, so a
      // read error part-way leaves what qemu-img leaves on stdout ('[' and the entries before it).
      io.out('[');
      let pending: MapEntry | undefined;
      for await (const e of mapChain(chain, start, length)) {
        if (pending) io.out(mapJsonEntry(pending) + ',\n');
        pending = e;
      }
      io.out(mapJsonEntry(pending ?? EMPTY_MAP_ENTRY) + ']\n');
      return 0;
    }
    io.out(MAP_HUMAN_HEADER);
    for await (const e of mapChain(chain, start, length)) {
      if (e.data && e.offset === undefined) {
        throw new VmimgError('UNSUPPORTED_IMAGE', 'File contains external, encrypted or compressed clusters.', { start: e.start });
      }
      const line = mapHumanLine(e);
      if (line) io.out(line);
    }
    return 0;
  } finally {
    await chain.close();
  }
}
