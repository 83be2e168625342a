/**
 * The built-in recipes `go`, `node` and `python` (docs/rootfs.md "Built-in recipes"): Alpine 3.20
 * minirootfs + the runtime's Alpine package + /work + the agent as /usr/local/bin/agent with a
 * generated /sbin/init. Trusted apk keys come from the base tarball's /etc/apk/keys, whose bytes
 * are pinned by the tarball's SHA256 below.
 */
import { VmimgError } from '../../util/errors.js';

/** Alpine minirootfs 3.20.3 (dl-cdn.alpinelinux.org/alpine/v3.20/releases/ARCH/), SHA256 per arch. */
export const ALPINE_MINIROOTFS: Readonly<Record<'x86_64' | 'aarch64', { url: string; sha256: string }>> = {
  x86_64: {
    url: 'https://dl-cdn.alpinelinux.org/alpine/v3.20/releases/x86_64/alpine-minirootfs-3.20.3-x86_64.tar.gz',
    sha256: 'd4e6fd67dcf75e40c451560ac7265166c2b72a0f38ddc9aae756a7de3d1efa0c',
  },
  aarch64: {
    url: 'https://dl-cdn.alpinelinux.org/alpine/v3.20/releases/aarch64/alpine-minirootfs-3.20.3-aarch64.tar.gz',
    sha256: '041fa34a81788242df9e78fa69b97ab45b8ec47ddbf88864755610414a7bf3de',
  },
};

const RUNTIMES: Readonly<Record<string, { packages: string[]; runtime: string }>> = {
  go: { packages: ['go'], runtime: '/usr/bin/go' },
  node: { packages: ['nodejs'], runtime: '/usr/bin/node' },
  python: { packages: ['python3'], runtime: '/usr/bin/python3' },
};

export const BUILTIN_RECIPES: readonly string[] = Object.keys(RUNTIMES);

export interface BuiltinOptions {
  arch: 'x86_64' | 'aarch64';
  /** Replaces the Alpine mirror (folder holding v3.20/...), e.g. a local mirror or a test server. */
  mirror?: string;
  /** Host path of the agent binary. */
  agent?: string;
}

/** The recipe document of built-in `name` (validated later like any recipe file). */
export function builtinRecipe(name: string, options: BuiltinOptions): Record<string, unknown> {
  const runtime = RUNTIMES[name];
  if (!runtime) throw new VmimgError('RECIPE_NOT_FOUND', `no built-in recipe '${name}' (built-in: ${BUILTIN_RECIPES.join(', ')}); give a recipe file path instead`, { name });
  const mirror = (options.mirror ?? 'https://dl-cdn.alpinelinux.org/alpine').replace(/\/+$/, '');
  const base = ALPINE_MINIROOTFS[options.arch];
  return {
    name,
    arch: options.arch,
    base: { url: base.url.replace('https://dl-cdn.alpinelinux.org/alpine', mirror), sha256: base.sha256 },
    apk: { mirror, branch: 'v3.20', repositories: ['main', 'community'] },
    packages: runtime.packages,
    directories: ['/work', '/tmp', '/run'],
    agent: { ...(options.agent !== undefined ? { source: options.agent } : {}), name: 'agent' },
    init: 'generated',
    hostname: `${name}-vm`,
    resolv: ['nameserver 1.1.1.1'],
    runtime: runtime.runtime,
    free: 20,
    output: { format: 'raw' },
  };
}
