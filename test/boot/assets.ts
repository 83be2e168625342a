/**
 * Boot-test assets: Debian's kernel package and busybox-static, extracted by .ci/run into
 * $VMIMG_BOOT_ASSETS (default .ci/cache/boot): `boot/vmlinuz-*`, `lib/modules/<version>/kernel/…`
 * and `bin/busybox`. Module dependencies come from each .ko's modinfo `depends=` string (the
 * package ships no modules.dep: depmod runs at install time).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BootAssets {
  kernel: string;
  version: string;
  modulesDir: string;
  busybox: string;
}

export function bootAssetsDir(): string {
  return process.env['VMIMG_BOOT_ASSETS'] ?? resolve(fileURLToPath(import.meta.url), '../../../../.ci/cache/boot');
}

export function findBootAssets(dir = bootAssetsDir()): BootAssets | undefined {
  const boot = join(dir, 'boot');
  if (!existsSync(boot)) return undefined;
  const vmlinuz = readdirSync(boot).find((n) => n.startsWith('vmlinuz-'));
  const busybox = join(dir, 'bin', 'busybox');
  if (!vmlinuz || !existsSync(busybox)) return undefined;
  const version = vmlinuz.slice('vmlinuz-'.length);
  const modulesDir = join(dir, 'lib', 'modules', version, 'kernel');
  if (!existsSync(modulesDir)) return undefined;
  return { kernel: join(boot, vmlinuz), version, modulesDir, busybox };
}

/** Every module file under `root`, by module name (dashes as underscores, as the kernel names them). */
function indexModules(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ko')) out.set(e.name.slice(0, -3).replace(/-/g, '_'), p);
    }
  };
  walk(root);
  return out;
}

/** The modinfo `depends=` list of a module file. */
export function moduleDepends(path: string): string[] {
  const bytes = readFileSync(path);
  const at = bytes.indexOf('\0depends=');
  if (at < 0) return [];
  const end = bytes.indexOf(0, at + 1);
  return bytes.subarray(at + '\0depends='.length, end).toString().split(',').filter(Boolean).map((n) => n.replace(/-/g, '_'));
}

/** `wanted` modules with their dependencies, dependencies first (load order). */
export function moduleLoadOrder(modulesDir: string, wanted: string[]): Array<{ name: string; path: string }> {
  const index = indexModules(modulesDir);
  const order: Array<{ name: string; path: string }> = [];
  const seen = new Set<string>();
  const visit = (name: string): void => {
    if (seen.has(name)) return;
    seen.add(name);
    const path = index.get(name);
    if (!path) throw new Error(`module ${name} not found under ${modulesDir} (built into the kernel?)`);
    for (const d of moduleDepends(path)) visit(d);
    order.push({ name, path });
  };
  for (const w of wanted) visit(w);
  return order;
}
