/**
 * `vmimg fs ls|cat|stat IMAGE PATH`: look inside the ext2/3/4 filesystem of an image (any format,
 * through its chain) with the read-only reader — no mount, no root (docs/ext4-read.md).
 *   ls IMAGE [PATH] [--output json]   entries of a directory (symlinks in PATH followed)
 *   cat IMAGE PATH                    a regular file's bytes to stdout
 *   stat IMAGE PATH [--no-follow] [--output json]   mode, owner, size, links, times, xattrs
 */
import type { Command } from 'commander';
import type { Ext4Inode, Ext4Reader } from '../fs/ext4/read/reader.js';
import { VmimgError } from '../util/errors.js';
import { addPolicyFlags, policyFrom, type PolicyFlags } from './policy-flags.js';
import { parseOutputFormat, processIO, runCommand, type CliIO } from './run.js';

interface FsFlags extends PolicyFlags {
  format?: string;
  output?: string;
  follow?: boolean;
}

const TYPE_CHAR: Record<number, string> = { 0o140000: 's', 0o120000: 'l', 0o100000: '-', 0o060000: 'b', 0o040000: 'd', 0o020000: 'c', 0o010000: 'p' };

function modeString(mode: number): string {
  const rwx = (bits: number): string => `${bits & 4 ? 'r' : '-'}${bits & 2 ? 'w' : '-'}${bits & 1 ? 'x' : '-'}`;
  return (TYPE_CHAR[mode & 0o170000] ?? '?') + rwx(mode >> 6) + rwx(mode >> 3) + rwx(mode);
}

function statJson(inode: Ext4Inode, path: string): Record<string, unknown> {
  const t = (x: { sec: number; nsec: number }): string => `${x.sec}.${String(x.nsec).padStart(9, '0')}`;
  return {
    path,
    inode: inode.ino,
    mode: `0${inode.mode.toString(8)}`,
    uid: inode.uid,
    gid: inode.gid,
    size: inode.size,
    links: inode.links,
    atime: t(inode.atimeFull),
    mtime: t(inode.mtimeFull),
    ctime: t(inode.ctimeFull),
    ...(inode.crtime ? { crtime: t(inode.crtime) } : {}),
    flags: `0x${inode.flags.toString(16)}`,
  };
}

async function withFs(image: string, flags: FsFlags, body: (fs: Ext4Reader) => Promise<number>): Promise<number> {
  const { openExt4Image } = await import('../fs/ext4/read/open.js');
  const { fs, close } = await openExt4Image(image, { policy: policyFrom(flags, image), ...(flags.format !== undefined ? { format: flags.format } : {}) });
  try {
    return await body(fs);
  } finally {
    await close();
  }
}

const common = (cmd: Command): Command => addPolicyFlags(cmd.option('-f, --format <fmt>', 'image format (default: probe)'));

export function registerFs(program: Command, io: CliIO, setStatus: (s: number) => void): void {
  const fsCmd = program.command('fs').description('read files inside an image\'s ext2/3/4 filesystem (read-only; no mount)');

  common(fsCmd.command('ls').description('list a directory').argument('<image>').argument('[path]', 'directory in the filesystem', '/').option('--output <fmt>', "'human' (default) or 'json'")).action(
    async (image: string, path: string, flags: FsFlags) => {
      setStatus(
        await runCommand(io, () =>
          withFs(image, flags, async (fs) => {
            const output = parseOutputFormat(flags.output);
            const dir = await fs.stat(path, true);
            const rows: Array<{ name: string; inode: Ext4Inode; target?: string }> = [];
            for (const e of await fs.readDir(dir.inode)) {
              const name = e.name.toString('utf8');
              if (name === '.' || name === '..') continue;
              const inode = await fs.inode(e.ino);
              rows.push({ name, inode, ...((inode.mode & 0o170000) === 0o120000 ? { target: (await fs.readLink(inode)).toString('utf8') } : {}) });
            }
            rows.sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
            if (output === 'json') io.out(JSON.stringify(rows.map((r) => ({ name: r.name, ...statJson(r.inode, `${dir.path.replace(/\/$/, '')}/${r.name}`), ...(r.target !== undefined ? { target: r.target } : {}) })), null, 4) + '\n');
            else for (const r of rows) io.out(`${modeString(r.inode.mode)} ${String(r.inode.links).padStart(3)} ${r.inode.uid} ${r.inode.gid} ${String(r.inode.size).padStart(10)} ${r.name}${r.target !== undefined ? ` -> ${r.target}` : ''}\n`);
            return 0;
          }),
        ),
      );
    },
  );

  common(fsCmd.command('cat').description("write a regular file's content to stdout").argument('<image>').argument('<path>', 'file in the filesystem (symlinks followed)')).action(
    async (image: string, path: string, flags: FsFlags) => {
      setStatus(
        await runCommand(io, () =>
          withFs(image, flags, async (fs) => {
            const { inode } = await fs.stat(path, true);
            if ((inode.mode & 0o170000) !== 0o100000) throw new VmimgError('FS_WRONG_TYPE', `'${path}' is not a regular file`, { path });
            const write = io.outBytes ?? processIO.outBytes!;
            for await (const chunk of fs.read(inode)) await write(chunk);
            return 0;
          }),
        ),
      );
    },
  );

  common(
    fsCmd
      .command('stat')
      .description("an entry's inode: mode, owner, size, links, times, xattrs")
      .argument('<image>')
      .argument('<path>')
      .option('--no-follow', 'do not follow a symlink in the last component')
      .option('--output <fmt>', "'human' (default) or 'json'"),
  ).action(async (image: string, path: string, flags: FsFlags) => {
    setStatus(
      await runCommand(io, () =>
        withFs(image, flags, async (fs) => {
          const output = parseOutputFormat(flags.output);
          const hit = await fs.stat(path, flags.follow !== false);
          const xattrs = Object.fromEntries([...(await fs.xattrs(hit.inode))].map(([k, v]) => [k, v.toString('base64')]));
          const target = (hit.inode.mode & 0o170000) === 0o120000 ? (await fs.readLink(hit.inode)).toString('utf8') : undefined;
          const j = { ...statJson(hit.inode, hit.path), ...(target !== undefined ? { target } : {}), xattrs };
          if (output === 'json') io.out(JSON.stringify(j, null, 4) + '\n');
          else io.out(Object.entries(j).map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join('\n') + '\n');
          return 0;
        }),
      ),
    );
  });
}
