/**
 * `vmimg rootfs verify`: checks a built root filesystem by reading the ext4 image itself (any
 * image format, through its chain), with no mount (docs/rootfs.md "Verify"). Checks, each with
 * a verdict and a detail:
 *   agent    /usr/local/bin/NAME is a regular file with the owner's execute bit
 *   runtime  each --runtime (an absolute path or a name searched along the guest PATH) resolves,
 *            symlinks followed inside the image, to an executable regular file
 *   work     /work is a directory
 *   init     /sbin/init is a symlink resolving to the agent, a hard link to it or a copy of it,
 *            a `#!` script with an uncommented `exec … AGENT` line, or a binary whose bytes name
 *            the agent's path (NUL-terminated, as a C string an init would exec)
 */
import { createHash } from 'node:crypto';
import type { ChainPolicy } from '../chain/policy.js';
import { type Ext4Reader, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type Ext4Inode } from '../fs/ext4/read/reader.js';
import { isVmimgError, VmimgError } from '../util/errors.js';
import { openExt4Image } from '../fs/ext4/read/open.js';
import { GUEST_PATH } from './recipe/runtime.js';

export interface VerifyCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface VerifyRequest {
  image: string;
  format?: string;
  policy: ChainPolicy;
  agent: string;
  runtimes?: string[];
}

const isExecFile = (i: Ext4Inode): boolean => (i.mode & S_IFMT) === S_IFREG && (i.mode & 0o100) !== 0;

/**
 * Runs the checks on the image. An image that is not a readable ext4 filesystem fails as a
 * whole (CORRUPT_IMAGE / UNSUPPORTED_IMAGE); damage met while one check runs (a symlink loop,
 * a bad directory block) fails that check with the error as its detail.
 */
export async function verifyRootfs(req: VerifyRequest): Promise<VerifyCheck[]> {
  if (req.agent === '' || req.agent === '.' || req.agent === '..' || /[/\0]/.test(req.agent)) {
    throw new VmimgError('INVALID_OPTION', `--agent '${req.agent}' must be a file name (it names /usr/local/bin/NAME)`, { agent: req.agent });
  }
  const { fs, close } = await openExt4Image(req.image, { policy: req.policy, ...(req.format !== undefined ? { format: req.format } : {}) });
  try {
    return await runChecks(fs, req);
  } finally {
    await close();
  }
}

async function guarded(name: string, f: () => Promise<VerifyCheck>): Promise<VerifyCheck> {
  try {
    return await f();
  } catch (e) {
    if (!isVmimgError(e)) throw e;
    return { name, ok: false, detail: `${e.message} [${e.code}]` };
  }
}

const modeText = (i: Ext4Inode): string => `mode 0${(i.mode & 0o7777).toString(8)}`;

async function checkAgent(fs: Ext4Reader, agentPath: string): Promise<VerifyCheck> {
  const agent = await fs.lookup(agentPath, false);
  if (!agent) return { name: 'agent', ok: false, detail: `${agentPath} is missing` };
  if ((agent.inode.mode & S_IFMT) !== S_IFREG) return { name: 'agent', ok: false, detail: `${agentPath} is not a regular file (mode 0${agent.inode.mode.toString(8)})` };
  if (!isExecFile(agent.inode)) return { name: 'agent', ok: false, detail: `${agentPath} is not executable (${modeText(agent.inode)})` };
  return { name: 'agent', ok: true, detail: `${agentPath}, ${agent.inode.size} bytes, ${modeText(agent.inode)}` };
}

async function checkRuntime(fs: Ext4Reader, rt: string): Promise<VerifyCheck> {
  const candidates = rt.startsWith('/') ? [rt] : GUEST_PATH.map((d) => `${d}/${rt}`);
  for (const c of candidates) {
    const hit = await fs.lookup(c, true);
    if (hit && isExecFile(hit.inode)) return { name: `runtime ${rt}`, ok: true, detail: c === hit.path ? c : `${c} → ${hit.path}` };
  }
  return { name: `runtime ${rt}`, ok: false, detail: `no executable ${rt} in ${rt.startsWith('/') ? 'the image' : GUEST_PATH.join(':')}` };
}

async function checkWork(fs: Ext4Reader): Promise<VerifyCheck> {
  const work = await fs.lookup('/work', true);
  if (work && (work.inode.mode & S_IFMT) === S_IFDIR) return { name: 'work', ok: true, detail: '/work is a directory' };
  return { name: 'work', ok: false, detail: work ? '/work is not a directory' : '/work is missing' };
}

/** Bytes of /sbin/init read to look for the exec line (a generated init is a few hundred). */
const INIT_SCRIPT_MAX = 64 * 1024;

async function checkInit(fs: Ext4Reader, agentPath: string): Promise<VerifyCheck> {
  const init = await fs.lookup('/sbin/init', false);
  if (!init) return { name: 'init', ok: false, detail: '/sbin/init is missing' };
  const agent = await fs.lookup(agentPath, false);
  if ((init.inode.mode & S_IFMT) === S_IFLNK) {
    const target = (await fs.readLink(init.inode)).toString();
    const end = await fs.lookup('/sbin/init', true);
    const ok = end !== undefined && agent !== undefined && end.inode.ino === agent.inode.ino;
    return { name: 'init', ok, detail: ok ? `/sbin/init → ${target} (the agent)` : `/sbin/init → ${target}, which is not the agent` };
  }
  if (!isExecFile(init.inode)) return { name: 'init', ok: false, detail: `/sbin/init is not an executable file (${modeText(init.inode)})` };
  if (agent && init.inode.ino === agent.inode.ino) return { name: 'init', ok: true, detail: '/sbin/init is a hard link to the agent' };
  if (init.inode.size > INIT_BINARY_MAX) return { name: 'init', ok: false, detail: `/sbin/init is a ${init.inode.size}-byte file, too large to inspect` };
  if (agent && agent.inode.size === init.inode.size && (await digest(fs, agent.inode)) === (await digest(fs, init.inode))) {
    return { name: 'init', ok: true, detail: '/sbin/init is a copy of the agent' };
  }
  const head = await fs.readRange(init.inode, 0, INIT_SCRIPT_MAX);
  if (head.subarray(0, 2).toString() === '#!') {
    const ok = scriptExecs(head.toString('utf8'), agentPath);
    return { name: 'init', ok, detail: ok ? `/sbin/init is a script that execs ${agentPath}` : `/sbin/init is a script that does not exec ${agentPath}` };
  }
  if (await contains(fs, init.inode, Buffer.from(`${agentPath}\0`))) return { name: 'init', ok: true, detail: `/sbin/init is a binary naming ${agentPath}` };
  return { name: 'init', ok: false, detail: '/sbin/init is a binary other than the agent that does not name it' };
}

/** Largest binary /sbin/init compared with the agent or searched for its path. */
const INIT_BINARY_MAX = 64 * 1024 * 1024;

/** A script execs the agent: an uncommented line with an `exec` word and the agent path as a word (quotes allowed). */
export function scriptExecs(text: string, agentPath: string): boolean {
  const esc = agentPath.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const word = new RegExp(`(^|[\\s"'=])${esc}["']?(\\s|;|&|$)`);
  return text.split('\n').some((raw) => {
    const line = raw.trim();
    return !line.startsWith('#') && /(^|[\s;&|(])exec\s/.test(line) && word.test(line);
  });
}

async function digest(fs: Ext4Reader, inode: Ext4Inode): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of fs.read(inode, INIT_BINARY_MAX)) h.update(chunk);
  return h.digest('hex');
}

async function contains(fs: Ext4Reader, inode: Ext4Inode, needle: Buffer): Promise<boolean> {
  let carry = Buffer.alloc(0);
  for await (const chunk of fs.read(inode, INIT_BINARY_MAX)) {
    const window = Buffer.concat([carry, chunk]);
    if (window.includes(needle)) return true;
    carry = window.subarray(Math.max(0, window.length - needle.length + 1));
  }
  return false;
}

async function runChecks(fs: Ext4Reader, req: VerifyRequest): Promise<VerifyCheck[]> {
  const agentPath = `/usr/local/bin/${req.agent}`;
  const checks = [await guarded('agent', () => checkAgent(fs, agentPath))];
  for (const rt of req.runtimes ?? []) checks.push(await guarded(`runtime ${rt}`, () => checkRuntime(fs, rt)));
  checks.push(await guarded('work', () => checkWork(fs)));
  checks.push(await guarded('init', () => checkInit(fs, agentPath)));
  return checks;
}
