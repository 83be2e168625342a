#!/usr/bin/env node
/** The `vmimg` command line: one file per command under src/cli, wired here. */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { cleanupTemporaryFiles, settleCreations } from '../storage/atomic.js';
import { processIO, type CliIO } from './run.js';

type Register = (program: Command, io: CliIO, setStatus: (s: number) => void) => void;

/** Each command's module, loaded only when that command runs (start-up time is part of the job). */
const COMMANDS: Record<string, () => Promise<Register>> = {
  create: async () => (await import('./create.js')).registerCreate,
  info: async () => (await import('./info.js')).registerInfo,
  map: async () => (await import('./map.js')).registerMap,
  check: async () => (await import('./check.js')).registerCheck,
  convert: async () => (await import('./convert.js')).registerConvert,
  compare: async () => (await import('./compare.js')).registerCompare,
  measure: async () => (await import('./measure.js')).registerMeasure,
  mkfs: async () => (await import('./mkfs.js')).registerMkfs,
  packagefs: async () => (await import('./packagefs.js')).registerPackagefs,
  fetch: async () => (await import('./fetch.js')).registerFetch,
  flist: async () => (await import('./flist.js')).registerFlist,
  rootfs: async () => (await import('./rootfs.js')).registerRootfs,
  fs: async () => (await import('./fs.js')).registerFs,
};

/** Builds the program with the command named `only` (all commands when it names none). */
export async function buildProgram(io: CliIO, setStatus: (status: number) => void, only?: string): Promise<Command> {
  const program = new Command();
  program
    .name('vmimg')
    .description('Make, inspect, convert and ship virtual-machine disk images')
    .version('0.1.0')
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .exitOverride()
    // Program options (-V/--version, -h) only before the command name, so commands can have
    // their own --version (fetch firecracker --version vX.Y.Z) whichever commands are loaded.
    .enablePositionalOptions();
  const names = only !== undefined && Object.hasOwn(COMMANDS, only) ? [only] : Object.keys(COMMANDS);
  for (const name of names) (await COMMANDS[name]!())(program, io, setStatus);
  return program;
}

/** Runs the CLI with `argv` (without node and script); resolves to the exit status. */
export async function runCli(argv: string[], io: CliIO = processIO): Promise<number> {
  let status = 0;
  const first = argv.find((a) => !a.startsWith('-'));
  const program = await buildProgram(io, (s) => (status = s), first);
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

/** Runs the CLI as the process: signal clean-up, process arguments, exit status. */
export function main(): void {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      const status = 128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1);
      cleanupTemporaryFiles();
      // A temporary file whose creation is still running on a pool thread appears after the
      // clean-up above: wait for it (at most 1 s) and clean again.
      const creations = settleCreations();
      if (!creations) process.exit(status);
      void creations.then(() => {
        cleanupTemporaryFiles();
        process.exit(status);
      });
    });
  }
  runCli(process.argv.slice(2)).then((status) => {
    process.exitCode = status;
  });
}

// Also runnable directly (`node dist/src/cli/main.js`), with libuv's default thread pool; the
// `vmimg` executable is vmimg.cjs, which sizes the pool first.
if (invokedDirectly()) main();
