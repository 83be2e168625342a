/**
 * Which tree `flist pack-modules` and `flist pack-firmware` pack, and under what name
 * (docs/flist.md "Kernel modules and firmware"). The version of a modules pack comes from the
 * modules tree itself (its lib/modules/<VERSION> folder) or --kernel-version — never from the
 * running kernel.
 *
 * Priority, first that exists wins:
 *   modules:  --modules-dir DIR, $VMIMG_MODULES_DIR, ROOT/lib/modules (--root), /lib/modules
 *   firmware: --firmware-dir DIR, $VMIMG_FIRMWARE_DIR, ROOT/lib/firmware (--root), /lib/firmware
 * A modules folder is either lib/modules (holding version folders: with several, --kernel-version
 * picks one) or one version folder itself (it holds modules.dep, modules.builtin, modules.order
 * or kernel/).
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { VmimgError } from '../util/errors.js';
import type { Tree, TreeEntry } from '../tree/types.js';

export interface SourceChoice {
  dir: string;
  /** Which rule chose it (for messages and tests). */
  rule: string;
}

async function isDir(p: string): Promise<boolean> {
  return stat(p).then((s) => s.isDirectory(), () => false);
}

async function firstDir(candidates: Array<[string | undefined, string]>, what: string): Promise<SourceChoice> {
  const tried: string[] = [];
  for (const [dir, rule] of candidates) {
    if (dir === undefined || dir === '') continue;
    if (await isDir(dir)) return { dir, rule };
    tried.push(`${rule} (${dir})`);
  }
  throw new VmimgError('FILE_NOT_FOUND', `no ${what} folder found; tried ${tried.join(', ') || 'nothing'}`, { tried });
}

export interface ModulesOptions {
  modulesDir?: string;
  root?: string;
  kernelVersion?: string;
  env?: NodeJS.ProcessEnv;
  /** The host's /lib (tests replace it). */
  hostLib?: string;
}

const VERSION = /^[0-9A-Za-z._+~-]{1,128}$/;

/** The modules folder to pack and the full kernel version it is for. */
export async function chooseModules(o: ModulesOptions): Promise<{ dir: string; version: string; rule: string }> {
  const env = o.env ?? process.env;
  const hostLib = o.hostLib ?? '/lib';
  const choice = await firstDir(
    [
      [o.modulesDir, '--modules-dir'],
      [env['VMIMG_MODULES_DIR'], '$VMIMG_MODULES_DIR'],
      [o.root !== undefined ? join(o.root, 'lib', 'modules') : undefined, '--root'],
      [join(hostLib, 'modules'), join(hostLib, 'modules')],
    ],
    'kernel modules',
  );
  if (o.kernelVersion !== undefined && !VERSION.test(o.kernelVersion)) throw new VmimgError('INVALID_OPTION', `--kernel-version '${o.kernelVersion}' is not a kernel version`, { value: o.kernelVersion });
  // A version folder holds depmod's files (modules.dep, modules.builtin, modules.order) or kernel/.
  let isVersionDir = await isDir(join(choice.dir, 'kernel'));
  for (const f of ['modules.dep', 'modules.builtin', 'modules.order']) isVersionDir ||= await stat(join(choice.dir, f)).then((st) => st.isFile(), () => false);
  if (isVersionDir) {
    const version = o.kernelVersion ?? basename(choice.dir);
    if (!VERSION.test(version)) throw new VmimgError('INVALID_OPTION', `cannot tell the kernel version of '${choice.dir}'; give --kernel-version`, { dir: choice.dir });
    return { dir: choice.dir, version, rule: choice.rule };
  }
  const versions: string[] = [];
  for (const name of (await readdir(choice.dir)).sort()) if (VERSION.test(name) && (await isDir(join(choice.dir, name)))) versions.push(name);
  if (o.kernelVersion !== undefined) {
    if (!versions.includes(o.kernelVersion)) throw new VmimgError('FILE_NOT_FOUND', `'${choice.dir}' has no modules for kernel ${o.kernelVersion} (it has ${versions.join(', ') || 'none'})`, { dir: choice.dir });
    return { dir: join(choice.dir, o.kernelVersion), version: o.kernelVersion, rule: choice.rule };
  }
  if (versions.length !== 1) {
    throw new VmimgError('USAGE', `'${choice.dir}' holds ${versions.length === 0 ? 'no kernel versions' : `modules for ${versions.join(', ')}`}; choose one with --kernel-version`, { dir: choice.dir, versions });
  }
  return { dir: join(choice.dir, versions[0]!), version: versions[0]!, rule: choice.rule };
}

export interface FirmwareOptions {
  firmwareDir?: string;
  root?: string;
  env?: NodeJS.ProcessEnv;
  hostLib?: string;
}

export async function chooseFirmware(o: FirmwareOptions): Promise<SourceChoice> {
  const env = o.env ?? process.env;
  const hostLib = o.hostLib ?? '/lib';
  return firstDir(
    [
      [o.firmwareDir, '--firmware-dir'],
      [env['VMIMG_FIRMWARE_DIR'], '$VMIMG_FIRMWARE_DIR'],
      [o.root !== undefined ? join(o.root, 'lib', 'firmware') : undefined, '--root'],
      [join(hostLib, 'firmware'), join(hostLib, 'firmware')],
    ],
    'firmware',
  );
}

/** `tree` with every path moved below `prefix` ("lib/modules/6.1.0"), parents synthesised. */
export function prefixTree(tree: Tree, prefix: string): Tree {
  const parts = prefix.split('/').filter(Boolean);
  const root = tree.entries.find((e) => e.path.length === 0)!;
  const under = (p: Buffer): Buffer => (p.length === 0 ? Buffer.from(parts.join('/')) : Buffer.concat([Buffer.from(parts.join('/') + '/'), p]));
  const parents: TreeEntry[] = [{ ...root, path: Buffer.alloc(0), mode: 0o755, uid: 0, gid: 0, xattrs: new Map() }];
  for (let i = 1; i < parts.length; i++) parents.push({ ...root, path: Buffer.from(parts.slice(0, i).join('/')), mode: 0o755, uid: 0, gid: 0, xattrs: new Map() });
  const moved = tree.entries.map((e) => ({ ...e, path: under(e.path), ...(e.linkTarget ? { linkTarget: under(e.linkTarget) } : {}) }));
  return { entries: [...parents, ...moved], close: () => tree.close() };
}
