/**
 * `vmimg rootfs verify`: checks a built root filesystem by reading the ext4 image itself (any
 * image format, through its chain), with no mount (docs/rootfs.md "Verify"). Checks, each with
 * a verdict and a detail:
 *   agent    /usr/local/bin/NAME is a regular file with the owner's execute bit
 *   runtime  each --runtime (an absolute path or a name searched along the guest PATH) resolves,
 *            symlinks followed inside the image, to an executable regular file
 *   work     /work is a directory
 *   init     /sbin/init is a symlink resolving to the agent, or a file that execs the agent (a
 *            script naming its path), or the agent's own bytes
 */
import type { ChainPolicy } from '../chain/policy.js';
import { type Ext4Reader, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type Ext4Inode} from '../fs/ext4/read/reader.js';
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
  const head = await fs.readRange(init.inode, 0, INIT_SCRIPT_MAX);
  const text = head.subarray(0, 2).toString() === '#!' ? head.toString('utf8') : '';
  const execs = new RegExp(`(^|\\n)\\s*exec\\s+${agentPath.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}(\\s|$)`).test(text);
  if (execs) return { name: 'init', ok: true, detail: `/sbin/init is a script that execs ${agentPath}` };
  return { name: 'init', ok: false, detail: text ? `/sbin/init is a script that does not exec ${agentPath}` : '/sbin/init is a binary other than the agent' };
}

async function runChecks(fs: Ext4Reader, req: VerifyRequest): Promise<VerifyCheck[]> {
  const agentPath = `/usr/local/bin/${req.agent}`;
  const checks = [await guarded('agent', () => checkAgent(fs, agentPath))];
  for (const rt of req.runtimes ?? []) checks.push(await guarded(`runtime ${rt}`, () => checkRuntime(fs, rt)));
  checks.push(await guarded('work', () => checkWork(fs)));
  checks.push(await guarded('init', () => checkInit(fs, agentPath)));
  return checks;
}
