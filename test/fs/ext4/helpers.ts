/** Helpers for ext4 tests: in-memory trees, builds into temp files, and the e2fsck/debugfs oracles. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { bufferContent } from '../../../src/tree/content.js';
import { treeFromLayers } from '../../../src/tree/index.js';
import type { ContentSource, RawEntry, Tree, TreeEntry } from '../../../src/tree/types.js';
import { buildExt4, type Ext4BuildOptions, type Ext4Result } from '../../../src/fs/ext4/index.js';
import { oracle, run } from '../../helpers/oracle.js';

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

export type Spec = {
  path: string;
  type?: RawEntry['type'];
  data?: string | Buffer;
  content?: ContentSource;
  target?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtimeNs?: bigint;
  rdev?: [number, number];
  xattrs?: Record<string, Buffer | string>;
};

/** A Tree from a compact description (content in memory unless `content` is given). */
export function memoryTree(specs: Spec[]): Tree {
  const raw: RawEntry[] = specs.map((s) => {
    const type = s.type ?? 'file';
    const data = Buffer.from(s.data ?? '');
    const xattrs = new Map(Object.entries(s.xattrs ?? {}).map(([k, v]) => [k, Buffer.from(v)] as [string, Buffer]));
    const e: RawEntry = { path: Buffer.from(s.path), type, mode: s.mode ?? (type === 'dir' ? 0o755 : 0o644), uid: s.uid ?? 1000, gid: s.gid ?? 100, mtimeNs: s.mtimeNs ?? 1_700_000_000_123_456_789n, size: 0, xattrs };
    if (type === 'file') Object.assign(e, s.content ? { size: s.content.size, content: s.content } : { size: data.length, content: bufferContent(data) });
    if (type === 'symlink') Object.assign(e, { symlinkTarget: Buffer.from(s.target!), size: Buffer.byteLength(s.target!) });
    if (type === 'hardlink') e.linkTarget = Buffer.from(s.target!);
    if (s.rdev) e.rdev = { major: s.rdev[0], minor: s.rdev[1] };
    return e;
  });
  return treeFromLayers([raw], { sourceDateEpoch: null });
}

/** One generated entry (a fast-check record) before it is placed in a tree: see specsFromRecords. */
export interface EntryRecord {
  /** Picks the parent among the directories placed so far (modulo their count). */
  parent: number;
  name: string;
  kind: NonNullable<Spec['type']>;
  /** Picks a hard link's target among the files placed so far. */
  seed: number;
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: bigint;
  /** A file's content (called for files only). */
  data: () => Buffer;
  target: string;
  rdev: [number, number];
  xattrs?: Record<string, Buffer>;
}

/**
 * Turns generated records into a consistent tree description: parents exist, paths are unique
 * (and at most `maxPathBytes` long when given), a hard link names an earlier file (it is dropped
 * when there is none yet), symlinks have mode 0777; `dirMode` adjusts directory modes.
 */
export function specsFromRecords(records: Iterable<EntryRecord>, options: { maxPathBytes?: number; dirMode?: (mode: number) => number } = {}): Spec[] {
  const dirs = [''];
  const files: string[] = [];
  const seen = new Set<string>();
  const out: Spec[] = [];
  for (const r of records) {
    const parent = dirs[r.parent % dirs.length]!;
    const path = parent ? `${parent}/${r.name}` : r.name;
    if (seen.has(path) || (options.maxPathBytes !== undefined && Buffer.byteLength(path) > options.maxPathBytes)) continue;
    seen.add(path);
    const mode = r.kind === 'dir' && options.dirMode ? options.dirMode(r.mode) : r.mode;
    const base = { path, mode, uid: r.uid, gid: r.gid, mtimeNs: r.mtimeNs, ...(r.xattrs ? { xattrs: r.xattrs } : {}) };
    switch (r.kind) {
      case 'file':
        out.push({ ...base, data: r.data() });
        files.push(path);
        break;
      case 'dir':
        out.push({ ...base, type: 'dir' });
        dirs.push(path);
        break;
      case 'symlink':
        out.push({ ...base, mode: 0o777, type: 'symlink', target: r.target });
        break;
      case 'hardlink':
        if (files.length > 0) out.push({ path, type: 'hardlink', target: files[r.seed % files.length]! });
        break;
      case 'char':
      case 'block':
        out.push({ ...base, type: r.kind, rdev: r.rdev });
        break;
      default:
        out.push({ ...base, type: r.kind });
    }
  }
  return out;
}

/** Content of `size` zero bytes streamed from one shared buffer (large files without memory). */
export function zeroContent(size: number): ContentSource {
  const chunk = Buffer.alloc(1024 * 1024);
  return {
    size,
    async *stream() {
      for (let p = 0; p < size; p += chunk.length) yield chunk.subarray(0, Math.min(chunk.length, size - p));
    },
    async read(_offset, length) {
      return Buffer.alloc(length);
    },
  };
}

export async function build(tree: Tree, out: string, options: Ext4BuildOptions = {}): Promise<Ext4Result> {
  return buildExt4(tree, out, { timestamp: 1_700_000_000, ...options });
}

/** Runs `e2fsck -fn`; asserts exit 0 and no messages beyond the pass lines and summary. */
export function assertFsckClean(t: TestContext, image: string): boolean {
  const e2fsck = oracle(t, 'e2fsck');
  if (!e2fsck) return false;
  const r = run(e2fsck, ['-fn', image]);
  const noise = (r.stdout + r.stderr).split('\n').filter((l) => l !== '' && !/^Pass [1-5]/.test(l) && !/^e2fsck \d/.test(l) && !/: \d+\/\d+ files \(.*\), \d+\/\d+ blocks$/.test(l));
  assert.deepEqual(noise, [], `e2fsck -fn ${image}:\n${r.stdout}${r.stderr}`);
  assert.equal(r.status, 0, `e2fsck exit status ${r.status}:\n${r.stdout}`);
  return true;
}

export function debugfs(t: TestContext, image: string, request: string): string {
  const tool = oracle(t, 'debugfs');
  if (!tool) return '';
  const r = run(tool, ['-R', request, image]);
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

export interface StatFacts {
  mode: number;
  type: string;
  uid: number;
  gid: number;
  size: number;
  links: number;
  mtime: string;
  fastLink?: string;
  device?: string;
  xattrs: Map<string, string>;
}

/** Parses `debugfs -R 'stat PATH'`. */
export function parseStat(text: string): StatFacts {
  const get = (re: RegExp): string => {
    const m = re.exec(text);
    assert.ok(m, `no ${re} in\n${text}`);
    return m[1]!;
  };
  const xattrs = new Map<string, string>();
  const ea = /Extended attributes:\n((?: {2}.*\n)*)/.exec(text);
  if (ea) for (const line of ea[1]!.split('\n').filter(Boolean)) {
    const m = /^ {2}(\S+) \((\d+)\)(?: = (.*))?$/.exec(line);
    if (m) xattrs.set(m[1]!, m[3] ?? '');
  }
  const dev = /Device major\/minor number: (\S+):(\S+)/.exec(text);
  const fast = /Fast link dest: "(.*)"/.exec(text);
  return {
    type: get(/Type: (\S+(?: special)?)/),
    mode: parseInt(get(/Mode: +(\d+)/), 8),
    uid: Number(get(/User: +(-?\d+)/)) >>> 0,
    gid: Number(get(/Group: +(-?\d+)/)) >>> 0,
    size: Number(get(/Size: (\d+)/)),
    links: Number(get(/Links: (\d+)/)),
    mtime: get(/ mtime: (0x[0-9a-f]+:[0-9a-f]+)/),
    ...(fast ? { fastLink: fast[1]! } : {}),
    ...(dev ? { device: `${parseInt(dev[1]!, 10)}:${parseInt(dev[2]!, 10)}` } : {}),
    xattrs,
  };
}

/** The debugfs "0xSECONDS:EXTRA" spelling of an mtime in ns (extra = epoch bits | ns << 2). */
export function debugfsTime(ns: bigint): string {
  let sec = ns / 1_000_000_000n;
  let nsec = ns % 1_000_000_000n;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += 1_000_000_000n;
  }
  const base = BigInt.asUintN(32, sec);
  const epoch = ((sec - BigInt.asIntN(32, sec)) >> 32n) & 3n;
  return `0x${base.toString(16).padStart(8, '0')}:${((nsec << 2n) | epoch).toString(16).padStart(8, '0')}`;
}

/** Checks every entry of `tree` against `debugfs stat` (type, mode, owner, mtime, size, links, targets, rdev, xattr names). */
export function assertStatsMatch(t: TestContext, image: string, tree: Tree): void {
  const links = new Map<number, number>();
  for (const e of tree.entries) if (e.linkGroup !== undefined) links.set(e.linkGroup, (links.get(e.linkGroup) ?? 0) + 1);
  const paths = tree.entries.map((e) => '/' + e.path.toString('utf8'));
  const tool = oracle(t, 'debugfs');
  if (!tool) return;
  const script = paths.map((p) => `stat "${p}"`).join('\n') + '\n';
  const r = run(tool, ['-f', '-', image], { input: script });
  const blocks = r.stdout.split(/^debugfs: stat .*$/m).slice(1);
  assert.equal(blocks.length, tree.entries.length);
  tree.entries.forEach((e: TreeEntry, i) => {
    const s = parseStat(blocks[i]!);
    const what = paths[i]!;
    assert.equal(s.mode, e.mode, `${what} mode`);
    assert.equal(s.uid, e.uid, `${what} uid`);
    assert.equal(s.gid, e.gid, `${what} gid`);
    assert.equal(s.mtime, debugfsTime(e.mtimeNs), `${what} mtime`);
    if (e.type === 'file' || e.type === 'hardlink') assert.equal(s.size, e.size, `${what} size`);
    if (e.linkGroup !== undefined) assert.equal(s.links, links.get(e.linkGroup), `${what} links`);
    if (e.type === 'symlink') {
      assert.equal(s.size, e.symlinkTarget!.length);
      if (e.symlinkTarget!.length < 60) assert.equal(s.fastLink, e.symlinkTarget!.toString('latin1'), `${what} target`);
    }
    if (e.type === 'char' || e.type === 'block') assert.equal(s.device, `${e.rdev!.major}:${e.rdev!.minor}`, `${what} rdev`);
    assert.deepEqual([...s.xattrs.keys()].sort(), [...e.xattrs.keys()].sort(), `${what} xattrs`);
  });
  assertXattrValues(tool, image, tree, paths);
}

/**
 * Every xattr value read back with `debugfs ea_get -f` equals the tree's bytes. POSIX ACLs are
 * stored in ext4's own encoding, which debugfs returns as stored, so they are compared by name only.
 */
function assertXattrValues(tool: string, image: string, tree: Tree, paths: string[]): void {
  const wanted: Array<{ file: string; value: Buffer; what: string }> = [];
  const dir = mkdtempSync(join(tmpdir(), 'vmimg-ext4-ea-'));
  try {
    const lines: string[] = [];
    tree.entries.forEach((e: TreeEntry, i) => {
      for (const [name, value] of e.xattrs) {
        if (name.startsWith('system.posix_acl_')) continue;
        const file = join(dir, `v${wanted.length}`);
        wanted.push({ file, value: Buffer.from(value), what: `${paths[i]} ${name}` });
        lines.push(`ea_get -f "${file}" "${paths[i]}" "${name}"`);
      }
    });
    if (lines.length === 0) return;
    run(tool, ['-f', '-', image], { input: lines.join('\n') + '\n' });
    for (const w of wanted) assert.deepEqual(readFileSync(w.file), w.value, `${w.what} value`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `debugfs rdump / dir` and compares regular file content and symlink targets with the tree. */
export async function assertContentMatches(t: TestContext, image: string, tree: Tree, dir: string): Promise<void> {
  const tool = oracle(t, 'debugfs');
  if (!tool) return;
  mkdirSync(dir, { recursive: true });
  const r = run(tool, ['-R', `rdump / ${dir}`, image]);
  assert.equal(r.status, 0, r.stderr);
  const seen = new Set<string>();
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(dir, rel))) {
      const p = rel ? `${rel}/${name}` : name;
      seen.add(p);
      if (lstatSync(join(dir, p)).isDirectory()) walk(p);
    }
  };
  walk('');
  for (const e of tree.entries) {
    if (e.path.length === 0) continue;
    const p = e.path.toString('utf8');
    // rdump skips device nodes, fifos and sockets (debugfs stat covers them).
    if (['file', 'dir', 'symlink', 'hardlink'].includes(e.type)) assert.ok(seen.has(p), `rdump lacks ${p}`);
    if (e.type === 'file' || (e.type === 'hardlink' && e.content)) {
      const want = e.size > 0 ? await e.content!.read(0, e.size) : new Uint8Array(0);
      assert.equal(sha256(readFileSync(join(dir, p))), sha256(want), `${p} content`);
    }
    if (e.type === 'symlink') assert.equal(readlinkSync(join(dir, p), { encoding: 'buffer' }).toString('hex'), e.symlinkTarget!.toString('hex'), `${p} target`);
  }
}
