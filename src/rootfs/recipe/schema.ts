/**
 * The rootfs recipe: a declarative YAML or JSON document (docs/rootfs.md "Recipe format") parsed
 * and validated into a Recipe. Every field is checked here, so the builder never meets a value of
 * the wrong kind; an invalid recipe is INVALID_RECIPE naming the field path and the value.
 * Host paths in the recipe are resolved against the recipe file's directory.
 */
import { isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { VmimgError } from '../../util/errors.js';
import { parseSize, toSafeNumber } from '../../util/size.js';

/** Where the base tree comes from: a pinned download, or a local tarball or directory. */
export type RecipeBase =
  | { kind: 'download'; url: string; sha256: string }
  | { kind: 'path'; path: string }
  | { kind: 'empty' };

export interface RecipeFile {
  /** Absolute path inside the image. */
  path: string;
  /** Host file to copy (absolute after parsing), or literal text content. */
  source?: string;
  content?: string;
  mode: number;
  uid: number;
  gid: number;
}

export interface RecipeDirectory {
  path: string;
  mode: number;
  uid: number;
  gid: number;
}

/** How /sbin/init is made: a generated script that execs the agent, a symlink to the agent, or a host file. */
export type RecipeInit = { kind: 'generated' } | { kind: 'symlink' } | { kind: 'file'; source: string } | { kind: 'keep' };

export interface Recipe {
  name: string;
  arch: 'x86_64' | 'aarch64';
  base: RecipeBase;
  apk: {
    /** Full repository URLs (…/alpine/v3.20/main). */
    repositories: string[];
    /** Host paths of trusted public keys (PEM), besides the base tree's /etc/apk/keys when trustBaseKeys. */
    keys: string[];
    trustBaseKeys: boolean;
  };
  packages: string[];
  files: RecipeFile[];
  directories: RecipeDirectory[];
  agent?: { source?: string; name: string };
  init: RecipeInit;
  hostname?: string;
  /** resolv.conf text (lines joined), when given. */
  resolv?: string;
  /** Runtime binary the image must hold (checked after the build, recorded in the lock). */
  runtime?: string;
  /** Exact filesystem size in bytes, or undefined for automatic sizing with `freePercent`. */
  size?: number;
  freePercent: number;
  output: { format: string; path?: string };
  ext4: { label?: string; uuid?: string; journal: boolean; features?: string };
  /** Timestamp (seconds) of generated entries and the clamp for every mtime; undefined = derived from the tree. */
  epoch?: number;
}

const TOP_KEYS = new Set(['name', 'arch', 'base', 'apk', 'packages', 'files', 'directories', 'agent', 'init', 'hostname', 'resolv', 'runtime', 'size', 'free', 'output', 'ext4', 'epoch']);

function fail(field: string, message: string, value?: unknown): never {
  const shown = value === undefined ? '' : ` (got ${JSON.stringify(value)?.slice(0, 120)})`;
  throw new VmimgError('INVALID_RECIPE', `recipe field '${field}': ${message}${shown}`, { field, ...(value !== undefined ? { value } : {}) });
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function onlyKeys(o: Obj, field: string, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) fail(`${field}.${k}`, `unknown field (allowed: ${allowed.join(', ')})`);
}

function str(v: unknown, field: string, opts: { max?: number; pattern?: RegExp } = {}): string {
  if (typeof v !== 'string' || v.length === 0) fail(field, 'must be a non-empty string', v);
  if (v.length > (opts.max ?? 4096)) fail(field, `longer than ${opts.max ?? 4096} characters`, v.slice(0, 40));
  if (v.includes('\0')) fail(field, 'contains a NUL character');
  if (opts.pattern && !opts.pattern.test(v)) fail(field, `must match ${opts.pattern}`, v);
  return v;
}

function optStr(v: unknown, field: string, opts: { max?: number; pattern?: RegExp } = {}): string | undefined {
  return v === undefined || v === null ? undefined : str(v, field, opts);
}

function bool(v: unknown, field: string, dflt: boolean): boolean {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'boolean') fail(field, 'must be true or false', v);
  return v;
}

function id(v: unknown, field: string): number {
  if (v === undefined || v === null) return 0;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) fail(field, 'must be an integer in 0..4294967295', v);
  return v;
}

/** Modes as octal strings ("0755", "755") or numbers (YAML 0o755 / JSON decimal 493). */
function mode(v: unknown, field: string, dflt: number): number {
  if (v === undefined || v === null) return dflt;
  let n: number;
  if (typeof v === 'string' && /^0?o?[0-7]{1,4}$/.test(v)) n = parseInt(v.replace(/^0?o?/, '') || '0', 8);
  else if (typeof v === 'number' && Number.isInteger(v)) n = v;
  else fail(field, "must be an octal mode such as '0755'", v);
  if (n < 0 || n > 0o7777) fail(field, 'must be within 0..07777', v);
  return n;
}

/** An absolute, normalised image path: '/a/b' with no '.', '..' or empty components. */
function imagePath(v: unknown, field: string): string {
  const p = str(v, field, { max: 4096 });
  if (!p.startsWith('/')) fail(field, 'must be an absolute path inside the image', p);
  const parts = p.split('/').filter((c) => c !== '');
  if (parts.some((c) => c === '.' || c === '..')) fail(field, "must not contain '.' or '..' components", p);
  if (parts.length === 0) fail(field, 'must not be the root directory', p);
  return '/' + parts.join('/');
}

function hostPath(v: unknown, field: string, baseDir: string): string {
  const p = str(v, field);
  return isAbsolute(p) ? p : resolve(baseDir, p);
}

function list(v: unknown, field: string, max = 10000): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) fail(field, 'must be a list', v);
  if (v.length > max) fail(field, `more than ${max} items`);
  return v;
}

const SHA256 = /^[0-9a-f]{64}$/;

function parseBase(v: unknown, baseDir: string): RecipeBase {
  if (v === undefined || v === null) return { kind: 'empty' };
  if (typeof v === 'string') return { kind: 'path', path: hostPath(v, 'base', baseDir) };
  if (!isObj(v)) fail('base', 'must be a map with url+sha256 or path', v);
  onlyKeys(v, 'base', ['url', 'sha256', 'path']);
  if (v['path'] !== undefined) {
    if (v['url'] !== undefined) fail('base', 'give either path or url+sha256, not both');
    return { kind: 'path', path: hostPath(v['path'], 'base.path', baseDir) };
  }
  const url = str(v['url'], 'base.url', { pattern: /^https?:\/\// });
  const sha256 = str(v['sha256'], 'base.sha256', { pattern: SHA256 });
  return { kind: 'download', url, sha256 };
}

function parseFiles(v: unknown, baseDir: string): RecipeFile[] {
  return list(v, 'files').map((item, i) => {
    const f = `files[${i}]`;
    if (!isObj(item)) fail(f, 'must be a map with path and source or content', item);
    onlyKeys(item, f, ['path', 'source', 'content', 'mode', 'uid', 'gid']);
    const hasSource = item['source'] !== undefined;
    const hasContent = item['content'] !== undefined;
    if (hasSource === hasContent) fail(f, 'needs exactly one of source (a host file) and content (text)');
    if (hasContent && typeof item['content'] !== 'string') fail(`${f}.content`, 'must be a string', item['content']);
    return {
      path: imagePath(item['path'], `${f}.path`),
      ...(hasSource ? { source: hostPath(item['source'], `${f}.source`, baseDir) } : { content: item['content'] as string }),
      mode: mode(item['mode'], `${f}.mode`, 0o644),
      uid: id(item['uid'], `${f}.uid`),
      gid: id(item['gid'], `${f}.gid`),
    };
  });
}

function parseDirectories(v: unknown): RecipeDirectory[] {
  return list(v, 'directories').map((item, i) => {
    const f = `directories[${i}]`;
    if (typeof item === 'string') return { path: imagePath(item, f), mode: 0o755, uid: 0, gid: 0 };
    if (!isObj(item)) fail(f, 'must be a path or a map with path, mode, uid, gid', item);
    onlyKeys(item, f, ['path', 'mode', 'uid', 'gid']);
    return { path: imagePath(item['path'], `${f}.path`), mode: mode(item['mode'], `${f}.mode`, 0o755), uid: id(item['uid'], `${f}.uid`), gid: id(item['gid'], `${f}.gid`) };
  });
}

/** Agent file names: one path component, no slash. */
const AGENT_NAME = /^[A-Za-z0-9._+-]{1,255}$/;

function parseInit(v: unknown, baseDir: string): RecipeInit {
  if (v === undefined || v === null || v === 'generated') return { kind: 'generated' };
  if (v === 'symlink') return { kind: 'symlink' };
  if (v === 'keep') return { kind: 'keep' };
  if (isObj(v)) {
    onlyKeys(v, 'init', ['source']);
    return { kind: 'file', source: hostPath(v['source'], 'init.source', baseDir) };
  }
  return fail('init', "must be 'generated', 'symlink', 'keep' or { source: FILE }", v);
}

/** Alpine repository shorthands ("main", "community") expand against this mirror and branch. */
export function expandRepository(entry: string, mirror: string, branch: string): string {
  return /^https?:\/\//.test(entry) ? entry.replace(/\/+$/, '') : `${mirror.replace(/\/+$/, '')}/${branch}/${entry}`;
}

function parseApk(v: unknown, baseDir: string): Recipe['apk'] {
  if (v === undefined || v === null) return { repositories: [], keys: [], trustBaseKeys: true };
  if (!isObj(v)) fail('apk', 'must be a map with repositories, keys, trustBaseKeys', v);
  onlyKeys(v, 'apk', ['repositories', 'keys', 'trustBaseKeys', 'mirror', 'branch']);
  const mirror = optStr(v['mirror'], 'apk.mirror', { pattern: /^https?:\/\// }) ?? 'https://dl-cdn.alpinelinux.org/alpine';
  const branch = optStr(v['branch'], 'apk.branch', { pattern: /^(v[0-9]+\.[0-9]+|edge)$/ });
  const repositories = list(v['repositories'], 'apk.repositories', 32).map((r, i) => {
    const s = str(r, `apk.repositories[${i}]`);
    if (!/^https?:\/\//.test(s)) {
      if (!/^[a-z]+$/.test(s)) fail(`apk.repositories[${i}]`, 'must be a URL or a repository name such as main or community', s);
      if (branch === undefined) fail('apk.branch', `is needed to expand the repository name '${s}' (e.g. v3.20)`);
    }
    return expandRepository(s, mirror, branch ?? '');
  });
  const keys = list(v['keys'], 'apk.keys', 64).map((k, i) => hostPath(k, `apk.keys[${i}]`, baseDir));
  return { repositories, keys, trustBaseKeys: bool(v['trustBaseKeys'], 'apk.trustBaseKeys', true) };
}

/** Validates a parsed document (from YAML or JSON) into a Recipe. */
export function validateRecipe(doc: unknown, options: { baseDir: string; defaultName: string; hostArch: 'x86_64' | 'aarch64' }): Recipe {
  if (!isObj(doc)) fail('(top)', 'a recipe must be a map', typeof doc);
  for (const k of Object.keys(doc)) if (!TOP_KEYS.has(k)) fail(k, `unknown field (allowed: ${[...TOP_KEYS].join(', ')})`);
  const { baseDir } = options;
  const name = optStr(doc['name'], 'name', { max: 64, pattern: /^[A-Za-z0-9][A-Za-z0-9._-]*$/ }) ?? options.defaultName;
  const archText = optStr(doc['arch'], 'arch') ?? options.hostArch;
  if (archText !== 'x86_64' && archText !== 'aarch64') fail('arch', "must be 'x86_64' or 'aarch64'", archText);
  const packages = list(doc['packages'], 'packages', 4096).map((p, i) => str(p, `packages[${i}]`, { max: 256, pattern: /^[^\s]+$/ }));
  let agent: Recipe['agent'];
  if (doc['agent'] !== undefined && doc['agent'] !== null) {
    const a = doc['agent'];
    if (typeof a === 'string') agent = { source: hostPath(a, 'agent', baseDir), name: 'agent' };
    else if (isObj(a)) {
      onlyKeys(a, 'agent', ['source', 'name']);
      agent = { name: optStr(a['name'], 'agent.name', { pattern: AGENT_NAME }) ?? 'agent' };
      if (a['source'] !== undefined) agent.source = hostPath(a['source'], 'agent.source', baseDir);
    } else fail('agent', 'must be a host path or { source, name }', a);
  }
  let resolv: string | undefined;
  const r = doc['resolv'];
  if (typeof r === 'string') resolv = r.endsWith('\n') ? r : r + '\n';
  else if (Array.isArray(r)) resolv = list(r, 'resolv', 64).map((l, i) => str(l, `resolv[${i}]`, { max: 1024 })).join('\n') + '\n';
  else if (r !== undefined && r !== null) fail('resolv', 'must be text or a list of lines', r);
  let size: number | undefined;
  if (doc['size'] !== undefined && doc['size'] !== null) {
    const s = doc['size'];
    if (typeof s !== 'string' && typeof s !== 'number') fail('size', "must be a size such as '512M'", s);
    try {
      size = toSafeNumber(parseSize(String(s), { what: 'recipe size' }), 'recipe size');
    } catch (e) {
      fail('size', `is not a valid size: ${(e as Error).message}`, s);
    }
  }
  const freeRaw = doc['free'];
  if (freeRaw !== undefined && freeRaw !== null && (typeof freeRaw !== 'number' || !Number.isInteger(freeRaw) || freeRaw < 0 || freeRaw > 90)) fail('free', 'must be an integer percentage in 0..90', freeRaw);
  const out = doc['output'];
  let output: Recipe['output'] = { format: 'raw' };
  if (out !== undefined && out !== null) {
    if (!isObj(out)) fail('output', 'must be a map with format and path', out);
    onlyKeys(out, 'output', ['format', 'path']);
    output = { format: optStr(out['format'], 'output.format', { pattern: /^(raw|qcow2|vmdk|vhdx|vpc)$/ }) ?? 'raw' };
    if (out['path'] !== undefined) output.path = hostPath(out['path'], 'output.path', baseDir);
  }
  const e = doc['ext4'];
  let ext4: Recipe['ext4'] = { journal: false };
  if (e !== undefined && e !== null) {
    if (!isObj(e)) fail('ext4', 'must be a map with label, uuid, journal, features', e);
    onlyKeys(e, 'ext4', ['label', 'uuid', 'journal', 'features']);
    ext4 = { journal: bool(e['journal'], 'ext4.journal', false) };
    const label = optStr(e['label'], 'ext4.label', { max: 16 });
    const uuid = optStr(e['uuid'], 'ext4.uuid', { pattern: /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/ });
    const features = optStr(e['features'], 'ext4.features', { max: 512 });
    if (label !== undefined) ext4.label = label;
    if (uuid !== undefined) ext4.uuid = uuid;
    if (features !== undefined) ext4.features = features;
  }
  const epoch = doc['epoch'];
  if (epoch !== undefined && epoch !== null && (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 0)) fail('epoch', 'must be a non-negative integer number of seconds', epoch);
  const hostname = optStr(doc['hostname'], 'hostname', { max: 64, pattern: /^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/ });
  const runtime = optStr(doc['runtime'], 'runtime', { max: 4096 });
  const recipe: Recipe = {
    name,
    arch: archText,
    base: parseBase(doc['base'], baseDir),
    apk: parseApk(doc['apk'], baseDir),
    packages,
    files: parseFiles(doc['files'], baseDir),
    directories: parseDirectories(doc['directories']),
    init: parseInit(doc['init'], baseDir),
    freePercent: (freeRaw as number | undefined) ?? 20,
    output,
    ext4,
  };
  if (agent) recipe.agent = agent;
  if (hostname !== undefined) recipe.hostname = hostname;
  if (resolv !== undefined) recipe.resolv = resolv;
  if (runtime !== undefined) recipe.runtime = runtime.startsWith('/') ? imagePath(runtime, 'runtime') : runtime;
  if (size !== undefined) recipe.size = size;
  if (typeof epoch === 'number') recipe.epoch = epoch;
  if (packages.length > 0 && recipe.apk.repositories.length === 0) fail('apk.repositories', 'packages are listed but no apk repository is given');
  if ((recipe.init.kind === 'generated' || recipe.init.kind === 'symlink') && !recipe.agent) fail('init', `'${recipe.init.kind}' init execs the agent, so the recipe needs an agent (or init: keep)`);
  return recipe;
}

/** Parses recipe text: JSON when it starts with '{', YAML otherwise (YAML 1.2 core schema). */
export function parseRecipeText(text: string, where: string): unknown {
  if (text.length > 1024 * 1024) throw new VmimgError('INVALID_RECIPE', `recipe '${where}' is larger than 1 MiB`, { path: where });
  try {
    return text.trimStart().startsWith('{') ? JSON.parse(text) : parseYaml(text, { maxAliasCount: 100, uniqueKeys: true });
  } catch (e) {
    throw new VmimgError('INVALID_RECIPE', `recipe '${where}' is not valid ${text.trimStart().startsWith('{') ? 'JSON' : 'YAML'}: ${(e as Error).message.split('\n')[0]}`, { path: where }, { cause: e });
  }
}
