#!/usr/bin/env node
/** The `vmimg` command line: one file per command under src/cli, wired here. */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { cleanupTemporaryFiles } from '../storage/atomic.js';
import { registerCreate } from './create.js';
import { registerCheck } from './check.js';
import { registerInfo } from './info.js';
import { registerMap } from './map.js';
import { processIO, type CliIO } from './run.js';

/** Builds the program; `setStatus` receives each command's exit status. */
export function buildProgram(io: CliIO, setStatus: (status: number) => void): Command {
  const program = new Command();
  program
    .name('vmimg')
    .description('Make, inspect, convert and ship virtual-machine disk images')
    .version('0.1.0')
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .exitOverride();
  registerCreate(program, io, setStatus);
  registerInfo(program, io, setStatus);
  registerMap(program, io, setStatus);
  registerCheck(program, io, setStatus);
  return program;
}

/** Runs the CLI with `argv` (without node and script); resolves to the exit status. */
export async function runCli(argv: string[], io: CliIO = processIO): Promise<number> {
  let status = 0;
  const program = buildProgram(io, (s) => (status = s));
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 1;
    throw e;
  }
  return status;
}

function invokedDirectly(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      cleanupTemporaryFiles();
      process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1));
    });
  }
  runCli(process.argv.slice(2)).then((status) => {
    process.exitCode = status;
  });
}
