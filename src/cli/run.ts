/**
 * Shared plumbing for CLI commands: output writers, error rendering and exit statuses.
 * Commands never call process.exit themselves; they return a status or throw.
 */
import { isVmimgError, VmimgError } from '../util/errors.js';

export interface CliIO {
  out(text: string): void;
  err(text: string): void;
  /** Raw bytes to stdout (file contents); resolves once written (back-pressure). */
  outBytes?(bytes: Uint8Array): Promise<void> | void;
}

export const processIO: CliIO = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  outBytes: (b) => new Promise<void>((resolve, reject) => process.stdout.write(b, (e) => (e ? reject(e) : resolve()))),
};

export type OutputFormat = 'human' | 'json';

export function parseOutputFormat(value: string | undefined): OutputFormat {
  if (value === undefined || value === 'human') return 'human';
  if (value === 'json') return 'json';
  throw new VmimgError('USAGE', `--output must be 'human' or 'json', not '${value}'`, { value });
}

/** Renders an error for stderr: "vmimg: <message> [CODE]". */
export function renderError(e: unknown): string {
  if (isVmimgError(e)) return `vmimg: ${e.fullMessage()} [${e.code}]\n`;
  const err = e as Error;
  return `vmimg: internal error: ${err?.stack ?? String(e)} [INTERNAL]\n`;
}

/** Runs a command body; returns its exit status, printing any error (1 unless mapped). */
export async function runCommand(io: CliIO, body: () => Promise<number>, exitFor: (e: unknown) => number = () => 1): Promise<number> {
  try {
    return await body();
  } catch (e) {
    io.err(renderError(e));
    return exitFor(e);
  }
}

/** Collects a repeatable option's values (commander argParser). */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** --timeout SECONDS (a positive number) in milliseconds; undefined when not given. */
export function parseTimeoutMs(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const s = Number(text);
  if (!(s > 0)) throw new VmimgError('USAGE', `--timeout must be a positive number of seconds, not '${text}'`, { value: text });
  return s * 1000;
}

/** qemu-img's cache modes (-t and -T). */
const CACHE_MODES = ['none', 'writeback', 'writethrough', 'directsync', 'unsafe'];

/** Validates a -t (`what` 'cache') or -T (`what` 'source cache') mode with qemu-img's message. */
export function checkCacheMode(mode: string | undefined, what: 'cache' | 'source cache'): void {
  if (mode !== undefined && !CACHE_MODES.includes(mode)) throw new VmimgError('USAGE', `Invalid ${what} option: ${mode}`, { value: mode });
}
