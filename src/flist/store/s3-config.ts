/**
 * S3 settings from an rfs.conf-style file and the environment (docs/flist-s3.md "Configuration").
 *
 * File: KEY=VALUE lines; blank lines and lines starting with '#' are skipped; an optional leading
 * `export ` is allowed; values may be "double-quoted" (\" \\ \n \t escapes) or 'single-quoted'
 * (literal); an unquoted value ends at ' #' (inline comment) and is trimmed. Unknown keys are
 * ignored (rfs.conf carries other settings). Keys: S3_ENDPOINT, S3_REGION, S3_BUCKET, S3_PREFIX,
 * S3_ACCESS_KEY, S3_SECRET_KEY.
 *
 * Precedence, per key: environment variable (non-empty) > file > default. Default file:
 * `config/rfs.conf` under the working directory; missing is fine unless a path was given.
 *
 * S3_ENDPOINT is `http://HOST[:PORT]` (→ s3://), `https://HOST[:PORT]` (→ s3s://), or a bare
 * `HOST[:PORT]` (→ s3:// plain http, as rfs's default).
 *
 * No value read here (above all S3_SECRET_KEY) is ever quoted in an error message.
 */
import { readFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fromSystemError, VmimgError } from '../../util/errors.js';
import { DEFAULT_S3_REGION, normalisePrefix } from './s3-url.js';

export const S3_CONFIG_KEYS = ['S3_ENDPOINT', 'S3_REGION', 'S3_BUCKET', 'S3_PREFIX', 'S3_ACCESS_KEY', 'S3_SECRET_KEY'] as const;
export type S3ConfigKey = (typeof S3_CONFIG_KEYS)[number];
export type S3Config = Partial<Record<S3ConfigKey, string>>;

export const DEFAULT_S3_CONFIG_PATH = 'config/rfs.conf';
const MAX_CONFIG_BYTES = 1024 * 1024;

function bad(source: string, line: number, why: string): VmimgError {
  return new VmimgError('INVALID_OPTION', `${source}:${line}: ${why}`, { path: source, line });
}

function unquoteDouble(body: string, source: string, line: number): string {
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const n = body[++i];
    if (n === undefined) throw bad(source, line, 'a value ends with a lone backslash');
    out += n === 'n' ? '\n' : n === 't' ? '\t' : n;
  }
  return out;
}

/** Parses rfs.conf text. `source` names the file in errors. Values of unknown keys are dropped. */
export function parseS3ConfigText(text: string, source = 'rfs.conf'): S3Config {
  const out: S3Config = {};
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    let line = lines[i]!.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    if (line.startsWith('export ')) line = line.slice(7).trimStart();
    const eq = line.indexOf('=');
    if (eq <= 0) throw bad(source, lineNo, 'expected KEY=VALUE');
    const key = line.slice(0, eq).trim();
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw bad(source, lineNo, `bad key name '${key.slice(0, 64)}'`);
    const raw = line.slice(eq + 1).trim();
    let value: string;
    const q = raw[0];
    if (q === '"' || q === "'") {
      // Find the closing quote (skipping escaped ones inside double quotes).
      let end = -1;
      for (let j = 1; j < raw.length; j++) {
        if (q === '"' && raw[j] === '\\') {
          j++;
          continue;
        }
        if (raw[j] === q) {
          end = j;
          break;
        }
      }
      if (end < 0) throw bad(source, lineNo, `unterminated ${q === '"' ? 'double' : 'single'} quote in the value of ${key}`);
      const rest = raw.slice(end + 1).trim();
      if (rest !== '' && !rest.startsWith('#')) throw bad(source, lineNo, `unexpected text after the quoted value of ${key}`);
      const body = raw.slice(1, end);
      value = q === '"' ? unquoteDouble(body, source, lineNo) : body;
    } else {
      const hash = raw.search(/\s#/);
      value = (hash >= 0 ? raw.slice(0, hash) : raw).trim();
    }
    if ((S3_CONFIG_KEYS as readonly string[]).includes(key)) out[key as S3ConfigKey] = value;
  }
  return out;
}

/** Reads the config file (missing → undefined unless `required`). */
export async function readS3ConfigFile(path: string, required: boolean): Promise<S3Config | undefined> {
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new VmimgError('INVALID_OPTION', `S3 config '${path}' is not a regular file`, { path });
    if (st.size > MAX_CONFIG_BYTES) {
      throw new VmimgError('INVALID_OPTION', `S3 config '${path}' is ${st.size} bytes, more than the ${MAX_CONFIG_BYTES}-byte cap`, { path, size: st.size });
    }
    return parseS3ConfigText(await readFile(path, 'utf8'), path);
  } catch (e) {
    if (e instanceof VmimgError) throw e;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !required) return undefined;
    throw fromSystemError(e, path, 'read');
  }
}

/** Merges file and environment: a non-empty environment variable wins over the file, per key. */
export function mergeS3Config(file: S3Config | undefined, env: NodeJS.ProcessEnv): S3Config {
  const out: S3Config = { ...(file ?? {}) };
  for (const key of S3_CONFIG_KEYS) {
    const v = env[key];
    if (v !== undefined && v !== '') out[key] = v;
  }
  return out;
}

/** Builds the s3 store URL for a config. Throws INVALID_OPTION naming the first missing key. */
export function s3UrlFromS3Config(config: S3Config, source: string): string {
  const need = (key: S3ConfigKey): string => {
    const v = config[key];
    if (v === undefined || v === '') throw new VmimgError('INVALID_OPTION', `S3 configuration (${source}) lacks ${key}`, { source, key });
    return v;
  };
  const endpointRaw = need('S3_ENDPOINT').replace(/\/+$/, '');
  const bucket = need('S3_BUCKET');
  const m = /^(?:(https?):\/\/)?([^/\s@]+)$/i.exec(endpointRaw);
  if (!m) {
    throw new VmimgError('INVALID_OPTION', `S3_ENDPOINT (${source}) must be http(s)://HOST[:PORT] or HOST[:PORT] without a path or credentials`, { source, key: 'S3_ENDPOINT' });
  }
  const scheme = m[1]?.toLowerCase() === 'https' ? 's3s' : 's3';
  const host = m[2]!;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(bucket)) {
    throw new VmimgError('INVALID_OPTION', `S3_BUCKET (${source}) is not a valid bucket name: '${bucket.slice(0, 80)}'`, { source, key: 'S3_BUCKET' });
  }
  const access = config.S3_ACCESS_KEY ?? '';
  const secret = config.S3_SECRET_KEY ?? '';
  if (secret !== '' && access === '') throw new VmimgError('INVALID_OPTION', `S3 configuration (${source}) has S3_SECRET_KEY but no S3_ACCESS_KEY`, { source, key: 'S3_ACCESS_KEY' });
  const userinfo = access === '' ? '' : `${encodeURIComponent(access)}${secret === '' ? '' : `:${encodeURIComponent(secret)}`}@`;
  const prefix = normalisePrefix(`${scheme}://${host}/${bucket}`, config.S3_PREFIX ?? '');
  const path = [bucket, ...(prefix === '' ? [] : prefix.split('/'))].map(encodeURIComponent).join('/');
  const region = config.S3_REGION && config.S3_REGION !== '' ? config.S3_REGION : DEFAULT_S3_REGION;
  return `${scheme}://${userinfo}${host}/${path}?region=${encodeURIComponent(region)}`;
}

/**
 * The s3 store URL from the config file and environment, or undefined when neither sets any S3_*
 * key. `configPath` (relative to the working directory) makes a missing file an error; without it
 * `config/rfs.conf` is read when present. `env` defaults to process.env.
 */
export async function s3UrlFromConfig(options: { configPath?: string; env?: NodeJS.ProcessEnv }): Promise<string | undefined> {
  const env = options.env ?? process.env;
  const path = resolve(options.configPath ?? DEFAULT_S3_CONFIG_PATH);
  const file = await readS3ConfigFile(path, options.configPath !== undefined);
  const merged = mergeS3Config(file, env);
  if (!S3_CONFIG_KEYS.some((k) => merged[k] !== undefined && merged[k] !== '')) return undefined;
  const source = file ? `${path} and environment` : 'environment';
  return s3UrlFromS3Config(merged, source);
}

/**
 * Access and secret key from the config file and environment (same precedence as above), for an
 * s3 URL given without userinfo; undefined when no S3_ACCESS_KEY is configured.
 */
export async function s3CredentialsFromConfig(options: { configPath?: string; env?: NodeJS.ProcessEnv }): Promise<{ accessKeyId: string; secretAccessKey: string } | undefined> {
  const path = resolve(options.configPath ?? DEFAULT_S3_CONFIG_PATH);
  const merged = mergeS3Config(await readS3ConfigFile(path, options.configPath !== undefined), options.env ?? process.env);
  if (!merged.S3_ACCESS_KEY) return undefined;
  return { accessKeyId: merged.S3_ACCESS_KEY, secretAccessKey: merged.S3_SECRET_KEY ?? '' };
}
