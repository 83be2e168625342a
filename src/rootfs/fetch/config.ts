/**
 * The fetch config file (JSON). Looked up at, first found wins:
 *   1. the path given with --config;
 *   2. $VMIMG_FETCH_CONFIG;
 *   3. $XDG_CONFIG_HOME/vmimg/fetch.json, else ~/.config/vmimg/fetch.json.
 * A missing file at 2 or 3 means "no config"; a missing file at 1 is an error. Shape (all optional):
 *   { "cacheDir": "/var/cache/vmimg", "timeoutSeconds": 30,
 *     "firecracker": { "baseUrl": "https://mirror/firecracker/releases/download", "version": "v1.16.1" },
 *     "kernel": { "baseUrl": "https://mirror/spec.ccfc.min" } }
 * Command-line flags override the file; the file overrides built-in defaults.
 */
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fromSystemError, VmimgError } from '../../util/errors.js';

export interface FetchConfig {
  cacheDir?: string;
  timeoutSeconds?: number;
  firecracker?: { baseUrl?: string; version?: string };
  kernel?: { baseUrl?: string };
}

export function defaultConfigPath(): string {
  const env = process.env['VMIMG_FETCH_CONFIG'];
  if (env) return env;
  const xdg = process.env['XDG_CONFIG_HOME'];
  return join(xdg ? xdg : join(homedir(), '.config'), 'vmimg', 'fetch.json');
}

function optionalString(v: unknown, where: string, path: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '') throw new VmimgError('INVALID_OPTION', `${path}: '${where}' must be a non-empty string`, { path });
  return v;
}

function section(v: unknown, where: string, path: string): Record<string, unknown> {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new VmimgError('INVALID_OPTION', `${path}: '${where}' must be an object`, { path });
  return v as Record<string, unknown>;
}

/** Reads and validates the config; `explicit` is the --config path, if any. */
export async function loadFetchConfig(explicit?: string): Promise<FetchConfig> {
  const path = explicit ?? defaultConfigPath();
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if (explicit === undefined && (e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw fromSystemError(e, path, 'read');
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new VmimgError('INVALID_OPTION', `${path}: not valid JSON (${(e as Error).message})`, { path });
  }
  const top = section(raw, '(top level)', path);
  const fc = section(top['firecracker'], 'firecracker', path);
  const kernel = section(top['kernel'], 'kernel', path);
  const timeout = top['timeoutSeconds'];
  if (timeout !== undefined && (typeof timeout !== 'number' || !(timeout > 0))) {
    throw new VmimgError('INVALID_OPTION', `${path}: 'timeoutSeconds' must be a positive number`, { path });
  }
  return {
    cacheDir: optionalString(top['cacheDir'], 'cacheDir', path),
    timeoutSeconds: timeout as number | undefined,
    firecracker: { baseUrl: optionalString(fc['baseUrl'], 'firecracker.baseUrl', path), version: optionalString(fc['version'], 'firecracker.version', path) },
    kernel: { baseUrl: optionalString(kernel['baseUrl'], 'kernel.baseUrl', path) },
  };
}
