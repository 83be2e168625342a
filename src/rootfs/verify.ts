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
import { Ext4Reader, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type Ext4Inode } from '../fs/ext4/read/reader.js';
import { openImageSource } from '../fs/packagefs/source.js';
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

export async function verifyRootfs(req: VerifyRequest): Promise<VerifyCheck[]> {
  const { source, chain } = await openImageSource(req.image, { policy: req.policy, ...(req.format !== undefined ? { format: req.format } : {}) });
  try {
    const fs = await Ext4Reader.open(source);
    const checks: VerifyCheck[] = [];
    const agentPath = `/usr/local/bin/${req.agent}`;
    const agent = await fs.lookup(agentPath, false);
    if (!agent) checks.push({ name: 'agent', ok: false, detail: `${agentPath} is missing` });
    else if ((agent.inode.mode & S_IFMT) !== S_IFREG) checks.push({ name: 'agent', ok: false, detail: `${agentPath} is not a regular file (mode 0${agent.inode.mode.toString(8)})` });
    else if (!isExecFile(agent.inode)) checks.push({ name: 'agent', ok: false, detail: `${agentPath} is not executable (mode 0${(agent.inode.mode & 0o7777).toString(8)})` });
    else checks.push({ name: 'agent', ok: true, detail: `${agentPath}, ${agent.inode.size} bytes, mode 0${(agent.inode.mode & 0o7777).toString(8)}` });

    for (const rt of req.runtimes ?? []) {
      const candidates = rt.startsWith('/') ? [rt] : GUEST_PATH.map((d) => `${d}/${rt}`);
      let found: string | undefined;
      for (const c of candidates) {
        const hit = await fs.lookup(c, true);
        if (hit && isExecFile(hit.inode)) {
          found = c === hit.path ? c : `${c} → ${hit.path}`;
          break;
        }
      }
      checks.push({ name: `runtime ${rt}`, ok: found !== undefined, detail: found ?? `no executable ${rt} in ${rt.startsWith('/') ? 'the image' : GUEST_PATH.join(':')}` });
    }

    const work = await fs.lookup('/work', true);
    checks.push(work && (work.inode.mode & S_IFMT) === S_IFDIR ? { name: 'work', ok: true, detail: '/work is a directory' } : { name: 'work', ok: false, detail: work ? '/work is not a directory' : '/work is missing' });

    const init = await fs.lookup('/sbin/init', false);
    if (!init) checks.push({ name: 'init', ok: false, detail: '/sbin/init is missing' });
    else if ((init.inode.mode & S_IFMT) === S_IFLNK) {
      const target = (await fs.readLink(init.inode)).toString();
      const end = await fs.lookup('/sbin/init', true);
      const ok = end !== undefined && agent !== undefined && end.inode.ino === agent.inode.ino;
      checks.push({ name: 'init', ok, detail: ok ? `/sbin/init → ${target} (the agent)` : `/sbin/init → ${target}, which is not the agent` });
    } else if (!isExecFile(init.inode)) {
      checks.push({ name: 'init', ok: false, detail: `/sbin/init is not an executable file (mode 0${(init.inode.mode & 0o7777).toString(8)})` });
    } else if (agent && init.inode.ino === agent.inode.ino) {
      checks.push({ name: 'init', ok: true, detail: '/sbin/init is a hard link to the agent' });
    } else {
      const head = await fs.readAll(init.inode, 1024 * 1024).catch(() => Buffer.alloc(0));
      const text = head.subarray(0, 2).toString() === '#!' ? head.toString('utf8') : '';
      const execs = new RegExp(`(^|\\n)\\s*exec\\s+${agentPath.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}(\\s|$)`).test(text);
      checks.push({ name: 'init', ok: execs, detail: execs ? `/sbin/init is a script that execs ${agentPath}` : text ? `/sbin/init is a script that does not exec ${agentPath}` : '/sbin/init is a binary other than the agent' });
    }
    return checks;
  } finally {
    await chain.close();
  }
}
