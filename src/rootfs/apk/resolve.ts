/**
 * Dependency resolution for a rootless install (docs/apk.md "Resolver"). Input: the world
 * constraints, the packages already installed in the base (kept as they are: never upgraded or
 * removed), and the repositories' packages. Output: the packages to install, dependencies first.
 *
 * Rules (apk-package(5) "depends", "provides", "provider-priority"):
 * - An atom NAME[OP VER] is satisfied by a package named NAME whose version matches, or by a
 *   package that provides NAME with a matching version. An unversioned provide satisfies only an
 *   unversioned atom, and is chosen automatically only with a provider priority (or when it is the
 *   only provider), like apk.
 * - Among candidates: a package of that exact name first, then the highest version, then the
 *   highest provider priority, then the earlier repository, then the name — deterministic.
 * - Pinned versions (the lock file) restrict each named package to exactly that version and
 *   checksum.
 * - `!NAME` conflicts: a conflicting package installed or selected is APK_UNSATISFIABLE.
 * - The resolver is greedy with restarts: when a later atom is not satisfied by the package
 *   already chosen for a name (e.g. world `zlib<1.3` after `app` pulled the newest zlib), the
 *   atom becomes a constraint on that name and resolution starts again; the constraints only
 *   grow, so this ends (at most MAX_RESTARTS). An atom no candidate satisfies under the
 *   constraints is APK_UNSATISFIABLE naming the chain that asked for it and the constraints.
 * - install_if is not evaluated (documented): packages it would add must be listed.
 */
import { VmimgError } from '../../util/errors.js';
import type { IndexPackage } from './apkindex.js';
import { versionSatisfies, type Dep } from './deps.js';
import { compareVersions } from './version.js';

export interface InstalledPackage {
  name: string;
  version: string;
  provides: { name: string; version?: string }[];
}

export interface ResolveInput {
  world: Dep[];
  installed: InstalledPackage[];
  available: IndexPackage[];
  pins?: ReadonlyMap<string, { version: string; checksum: string }>;
}

type Candidate = { kind: 'installed'; pkg: InstalledPackage } | { kind: 'new'; pkg: IndexPackage };

function satisfiedBy(dep: Dep, name: string, version: string, provides: { name: string; version?: string }[]): boolean {
  if (name === dep.name && versionSatisfies(dep, version)) return true;
  return provides.some((p) => p.name === dep.name && versionSatisfies(dep, p.version));
}

/** Bound on restarts; every restart adds one distinct (name, atom) constraint. */
const MAX_RESTARTS = 256;

/** An atom learnt to constrain every candidate of package `name` (and who asked for it). */
interface Learnt {
  name: string;
  dep: Dep;
  chain: string[];
}

class Restart {
  constructor(readonly learnt: Learnt) {}
}

function via(chain: string[]): string {
  return chain.length > 0 ? ` (required by ${chain.join(' → ')})` : '';
}

export function resolvePackages(input: ResolveInput): IndexPackage[] {
  const learnt: Learnt[] = [];
  for (;;) {
    try {
      return resolveOnce(input, learnt);
    } catch (e) {
      if (!(e instanceof Restart)) throw e;
      if (learnt.length >= MAX_RESTARTS) {
        throw new VmimgError('APK_UNSATISFIABLE', `no consistent choice found after ${MAX_RESTARTS} restarts; last: '${e.learnt.dep.text}'${via(e.learnt.chain)}`, { dependency: e.learnt.dep.text, chain: e.learnt.chain });
      }
      learnt.push(e.learnt);
    }
  }
}

function resolveOnce(input: ResolveInput, learnt: readonly Learnt[]): IndexPackage[] {
  const byName = new Map<string, IndexPackage[]>();
  const byProvide = new Map<string, IndexPackage[]>();
  const repoOrder = new Map<string, number>();
  for (const p of input.available) {
    if (!repoOrder.has(p.repository)) repoOrder.set(p.repository, repoOrder.size);
    const pin = input.pins?.get(p.name);
    if (pin && (p.version !== pin.version || (pin.checksum !== '' && p.checksum !== pin.checksum))) continue;
    if (learnt.some((l) => l.name === p.name && !satisfiedBy(l.dep, p.name, p.version, p.provides))) continue;
    (byName.get(p.name) ?? byName.set(p.name, []).get(p.name)!).push(p);
    for (const pr of p.provides) (byProvide.get(pr.name) ?? byProvide.set(pr.name, []).get(pr.name)!).push(p);
  }
  const selected = new Map<string, IndexPackage>(); // by package name
  const order: IndexPackage[] = [];
  const conflicts: Array<{ dep: Dep; chain: string[] }> = [];

  const present = (dep: Dep): Candidate | undefined => {
    for (const pkg of input.installed) if (satisfiedBy(dep, pkg.name, pkg.version, pkg.provides)) return { kind: 'installed', pkg };
    for (const pkg of selected.values()) if (satisfiedBy(dep, pkg.name, pkg.version, pkg.provides)) return { kind: 'new', pkg };
    return undefined;
  };

  const rank = (dep: Dep, a: IndexPackage, b: IndexPackage): number =>
    Number(b.name === dep.name) - Number(a.name === dep.name) ||
    compareVersions(b.version, a.version) ||
    b.providerPriority - a.providerPriority ||
    repoOrder.get(a.repository)! - repoOrder.get(b.repository)! ||
    (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

  const choose = (dep: Dep, chain: string[]): IndexPackage => {
    const named = (byName.get(dep.name) ?? []).filter((p) => versionSatisfies(dep, p.version));
    const providers = (byProvide.get(dep.name) ?? []).filter((p) => p.provides.some((pr) => pr.name === dep.name && versionSatisfies(dep, pr.version)));
    let candidates = [...named, ...providers.filter((p) => !named.includes(p))];
    // Unversioned provides are auto-selected only with a provider priority or as the only provider.
    const providersOnly = named.length === 0;
    if (providersOnly) {
      const versioned = candidates.filter((p) => p.provides.some((pr) => pr.name === dep.name && pr.version !== undefined));
      const prioritised = candidates.filter((p) => p.providerPriority > 0);
      const distinctNames = new Set(candidates.map((p) => p.name));
      candidates = versioned.length > 0 ? versioned : prioritised.length > 0 ? prioritised : distinctNames.size === 1 ? candidates : [];
    }
    // A name already selected must be reused (one version per name); when only another version
    // of it would do, learn the atom as a constraint on that name and start again.
    const reusable = candidates.filter((p) => !selected.has(p.name) || selected.get(p.name) === p);
    if (reusable.length === 0 && candidates.length > 0) {
      const name = [...candidates].sort((a, b) => rank(dep, a, b))[0]!.name;
      if (!learnt.some((l) => l.name === name && l.dep.text === dep.text)) throw new Restart({ name, dep, chain });
    }
    candidates = reusable;
    if (candidates.length === 0) {
      const constraints = learnt.filter((l) => l.name === dep.name || (byName.get(l.name) ?? []).length === 0 || l.dep.name === dep.name);
      const also = constraints.length ? `; also required: ${constraints.map((l) => `'${l.dep.text}'${via(l.chain)}`).join(', ')}` : '';
      const anyAvailable = input.available.some((p) => p.name === dep.name);
      const anyName = byName.has(dep.name) || byProvide.has(dep.name) || input.available.some((p) => p.name === dep.name);
      const lockedOut = input.pins?.has(dep.name) && anyAvailable;
      if (!anyName && !anyAvailable) throw new VmimgError('APK_UNKNOWN_PACKAGE', `no package provides '${dep.name}'${via(chain)}`, { dependency: dep.text, chain });
      const have = input.available.filter((p) => p.name === dep.name).map((p) => p.version);
      throw new VmimgError(
        'APK_UNSATISFIABLE',
        `'${dep.text}'${via(chain)} cannot be satisfied${have.length ? ` (available: ${[...new Set(have)].join(', ')})` : ''}${lockedOut ? `; the lock pins ${dep.name} ${input.pins!.get(dep.name)!.version}` : ''}${also}`,
        { dependency: dep.text, chain, constraints: constraints.map((l) => l.dep.text) },
      );
    }
    return candidates.sort((a, b) => rank(dep, a, b))[0]!;
  };

  const visiting = new Set<IndexPackage>();
  const need = (dep: Dep, chain: string[]): void => {
    if (dep.conflict) {
      conflicts.push({ dep, chain });
      return;
    }
    if (present(dep)) return;
    const pkg = choose(dep, chain);
    const sameName = selected.get(pkg.name);
    if (sameName && sameName !== pkg) {
      if (!learnt.some((l) => l.name === pkg.name && l.dep.text === dep.text)) throw new Restart({ name: pkg.name, dep, chain });
      throw new VmimgError('APK_UNSATISFIABLE', `'${dep.text}' (required by ${chain.join(' → ') || 'world'}) conflicts with ${pkg.name}-${sameName.version} already chosen`, { dependency: dep.text, chain });
    }
    if (visiting.has(pkg)) return; // a dependency cycle: already being installed
    selected.set(pkg.name, pkg);
    visiting.add(pkg);
    const next = [...chain, `${pkg.name}-${pkg.version}`];
    for (const d of pkg.depends) need(d, next);
    visiting.delete(pkg);
    order.push(pkg); // post-order: dependencies first
  };

  // Concrete package names first, then virtuals, so a provider the user listed satisfies its virtual.
  const virtual = (d: Dep): number => Number(!byName.has(d.name));
  const world = [...input.world].sort((a, b) => virtual(a) - virtual(b) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const dep of world) need(dep, []);

  for (const { dep, chain } of conflicts) {
    const hit = [...input.installed.map((p) => ({ name: p.name, version: p.version, provides: p.provides })), ...selected.values()].find((p) => satisfiedBy({ ...dep, conflict: false }, p.name, p.version, p.provides));
    if (hit) {
      throw new VmimgError('APK_UNSATISFIABLE', `${chain.length ? chain[chain.length - 1] : 'world'} conflicts with '${dep.text.slice(1)}', which ${hit.name}-${hit.version} satisfies`, { dependency: dep.text, chain });
    }
  }
  return order;
}
