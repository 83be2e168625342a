/**
 * Boot-test assets: Debian's kernel package and busybox-static, unpacked by .ci/run (dpkg-deb -x)
 * into $VMIMG_BOOT_ASSETS (default .ci/cache/boot of the checkout): `boot/vmlinuz-<version>`,
 * `lib/modules/<version>/kernel/…` (+ modules.builtin) and `bin/busybox`.
 *
 * Modules: the package ships no modules.dep (depmod runs at install time), so dependencies come
 * from each module's modinfo `depends=` string. Modules listed in modules.builtin are part of the
 * kernel image and are skipped. Bookworm's modules are plain `.ko` (CONFIG_MODULE_COMPRESS_NONE);
 * later Debian kernels ship `.ko.xz` (or .zst/.gz), which are decompressed here with the matching
 * tool so busybox insmod gets a plain ELF object.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BootAssets {
  kernel: string;
  version: string;
  /** lib/modules/<version> */
  modulesRoot: string;
  busybox: string;
}

export interface KernelModule {
  name: string;
  path: string;
  /** The plain ELF object (decompressed when the file is compressed). */
  bytes: Buffer;
}

export function bootAssetsDir(): string {
  return process.env['VMIMG_BOOT_ASSETS'] || resolve(fileURLToPath(import.meta.url), '../../../../.ci/cache/boot');
}

/** The assets, or a sentence saying what is missing. */
export function findBootAssets(dir = bootAssetsDir()): BootAssets | string {
  const boot = join(dir, 'boot');
  const vmlinuz = existsSync(boot) ? readdirSync(boot).find((n) => n.startsWith('vmlinuz-')) : undefined;
  if (!vmlinuz) return `no boot/vmlinuz-* under ${dir}`;
  const version = vmlinuz.slice('vmlinuz-'.length);
  const modulesRoot = join(dir, 'lib', 'modules', version);
  if (!existsSync(join(modulesRoot, 'kernel'))) return `no lib/modules/${version}/kernel under ${dir}`;
  const busybox = join(dir, 'bin', 'busybox');
  if (!existsSync(busybox)) return `no bin/busybox under ${dir} (busybox-static)`;
  return { kernel: join(boot, vmlinuz), version, modulesRoot, busybox };
}

const SUFFIXES: ReadonlyArray<[string, string[] | undefined]> = [
  ['.ko', undefined],
  ['.ko.xz', ['xz', '-dc']],
  ['.ko.zst', ['zstd', '-dcq']],
  ['.ko.gz', ['gzip', '-dc']],
];

/** Kernel module name of a file name: without suffix, '-' as '_' (as the kernel names modules). */
function moduleName(file: string): string | undefined {
  const s = SUFFIXES.find(([suffix]) => file.endsWith(suffix));
  return s ? file.slice(0, -s[0].length).replace(/-/g, '_') : undefined;
}

function indexModules(dir: string, out = new Map<string, string>()): Map<string, string> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) indexModules(p, out);
    else {
      const name = moduleName(e.name);
      if (name) out.set(name, p);
    }
  }
  return out;
}

function loadModule(name: string, path: string): KernelModule {
  const tool = SUFFIXES.find(([suffix]) => path.endsWith(suffix))![1];
  const bytes = tool ? execFileSync(tool[0]!, [...tool.slice(1), path], { maxBuffer: 64 * 1024 * 1024 }) : readFileSync(path);
  if (bytes.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${path} is not an ELF object after decompression`);
  return { name, path, bytes };
}

/** The modinfo `depends=` list of a module object (.modinfo holds NUL-separated key=value strings). */
export function moduleDepends(object: Buffer): string[] {
  const at = object.indexOf('\0depends=');
  if (at < 0) return [];
  const start = at + '\0depends='.length;
  return object.subarray(start, object.indexOf(0, start)).toString('latin1').split(',').filter(Boolean).map((n) => n.replace(/-/g, '_'));
}

/** Names in modules.builtin (built into the image: nothing to load). */
function builtins(modulesRoot: string): Set<string> {
  const file = join(modulesRoot, 'modules.builtin');
  if (!existsSync(file)) return new Set();
  return new Set(readFileSync(file, 'utf8').split('\n').map((l) => moduleName(l.slice(l.lastIndexOf('/') + 1))).filter((n): n is string => n !== undefined));
}

/** `wanted` modules and their dependencies, dependencies first (insmod order); built-ins left out. */
export function moduleLoadOrder(assets: BootAssets, wanted: readonly string[]): { modules: KernelModule[]; builtin: string[] } {
  const index = indexModules(join(assets.modulesRoot, 'kernel'));
  const inImage = builtins(assets.modulesRoot);
  const modules: KernelModule[] = [];
  const builtin: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string): void => {
    if (seen.has(name)) return;
    seen.add(name);
    if (inImage.has(name)) {
      builtin.push(name);
      return;
    }
    const path = index.get(name);
    if (!path) throw new Error(`kernel module ${name} is neither under ${assets.modulesRoot}/kernel nor in modules.builtin`);
    const m = loadModule(name, path);
    for (const d of moduleDepends(m.bytes)) visit(d);
    modules.push(m);
  };
  for (const w of wanted) visit(w);
  return { modules, builtin };
}
