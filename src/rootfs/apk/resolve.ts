/**
 * Dependency resolution for a rootless install (docs/apk.md "Resolver"). Input: the world
 * constraints, the packages already installed in the base (kept as they are: never upgraded or
 * removed), and the repositories' packages. Output: the packages to install, dependencies first.
 *
 * Rules (apk-package(5) "depends", "provides", "provider-priority", "install-if"; checked against
 * the cases of apk-tools' test/*.test where they apply):
 * - An atom NAME[OP VER] is satisfied by a package named NAME whose version matches, or by a
 *   package that provides NAME with a matching version. An unversioned provide satisfies only an
 *   unversioned atom, and is chosen automatically only with a provider priority, like apk ("please
 *   select one of the 'provided by' packages explicitly").
 * - A name is held by at most one package: its own name and each versioned provide. A second
 *   package holding the same name, or a package providing a name twice or its own name, conflicts.
 * - Among candidates (apk's compare_providers): a package of that exact name if any; then the
 *   highest version by the requested name (a versioned provide over an unversioned one), the
 *   highest package version, the highest provider priority, the earlier repository, the name.
 * - Pinned versions (the lock file) restrict each named package to exactly that version and
 *   checksum. `!NAME[OP VER]` conflicts with whatever satisfies NAME[OP VER].
 * - install_if: once the world is resolved, a package whose `i:` atoms are all satisfied (by the
 *   base or the new packages) is added with its dependencies, until nothing changes.
 * - Search: greedy, with two kinds of restart. (1) An atom that the package already chosen for a
 *   name does not satisfy (world `zlib<1.3` after `app` pulled the newest zlib), or a conflict
 *   hitting a newly chosen package, is learnt as a constraint on that name. (2) A package whose
 *   dependencies cannot be met is banned (constraints it caused are forgotten), so another
 *   version of whoever required it is tried — but a name nothing provides fails at once (apk
 *   reports it rather than picking an older requirer). Constraints and bans only grow per ban, so this
 *   ends (MAX_ATTEMPTS); when nothing works, the first failure is reported, naming the atom, the
 *   chain of packages that required it and the constraints it clashed with.
 */
import { VmimgError } from '../../util/errors.js';
import type { IndexPackage, Provide } from './apkindex.js';
import { versionSatisfies, type Dep } from './deps.js';
import { compareVersions } from './version.js';

export interface InstalledPackage {
  name: string;
  version: string;
  provides: Provide[];
}

export interface ResolveInput {
  world: Dep[];
  installed: InstalledPackage[];
  available: IndexPackage[];
  pins?: ReadonlyMap<string, { version: string; checksum: string }>;
}

/** Bound on resolution attempts (each one adds a constraint or a ban). */
const MAX_ATTEMPTS = 512;

function satisfiedBy(dep: Dep, pkg: { name: string; version: string; provides: Provide[] }): boolean {
  if (pkg.name === dep.name && versionSatisfies(dep, pkg.version)) return true;
  return pkg.provides.some((p) => p.name === dep.name && versionSatisfies(dep, p.version));
}

/** Does `pkg` meet atom `dep`, where a conflict atom `!X` means "does not satisfy X"? */
function meets(dep: Dep, pkg: { name: string; version: string; provides: Provide[] }): boolean {
  return dep.conflict ? !satisfiedBy({ ...dep, conflict: false }, pkg) : satisfiedBy(dep, pkg);
}

/** Names a package holds exclusively: its own and its versioned provides. */
function heldNames(pkg: { name: string; provides: Provide[] }): string[] {
  return [pkg.name, ...pkg.provides.filter((p) => p.version !== undefined).map((p) => p.name)];
}

function via(chain: readonly IndexPackage[]): string {
  return chain.length > 0 ? ` (required by ${chain.map(label).join(' → ')})` : '';
}

function label(p: { name: string; version: string }): string {
  return `${p.name}-${p.version}`;
}

function cmpText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** An atom learnt to constrain every candidate of package `name`, and the chain that asked for it. */
interface Learnt {
  name: string;
  dep: Dep;
  chain: IndexPackage[];
}

/** Internal: start again with one more constraint. */
class Restart {
  constructor(readonly learnt: Learnt) {}
}

/**
 * Internal: this attempt failed. `culprit` is the package whose requirement failed (undefined:
 * the world itself) and `context` the packages whose choice led to it; `related` are learnt
 * constraints that narrowed the failing name, whose requirer is banned first (undoing the later
 * decision).
 */
class Failure {
  constructor(
    readonly error: VmimgError,
    readonly culprit: IndexPackage | undefined,
    readonly context: readonly IndexPackage[],
    readonly related: readonly Learnt[] = [],
  ) {}
}

/**
 * A ban holds only while the packages of its context are still allowed: banning one of them lifts
 * the bans (and forgets the constraints) that depended on it.
 */
export function resolvePackages(input: ResolveInput): IndexPackage[] {
  let learnt: Learnt[] = [];
  const banned = new Map<IndexPackage, readonly IndexPackage[]>();
  let first: VmimgError | undefined;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    try {
      return attemptOnce(input, learnt, banned);
    } catch (e) {
      if (e instanceof Restart) {
        learnt.push(e.learnt);
        continue;
      }
      if (!(e instanceof Failure)) throw e;
      first ??= e.error;
      const fromLearnt = e.related.find((l) => l.chain.length > 0 && !banned.has(l.chain[l.chain.length - 1]!));
      const [culprit, context] = fromLearnt ? [fromLearnt.chain[fromLearnt.chain.length - 1]!, fromLearnt.chain.slice(0, -1)] : [e.culprit, e.context];
      if (culprit === undefined || banned.has(culprit)) throw first;
      learnt = learnt.filter((l) => !l.chain.includes(culprit));
      for (const [p, ctx] of [...banned]) if (ctx.includes(culprit)) banned.delete(p);
      banned.set(culprit, context);
    }
  }
  throw first ?? new VmimgError('APK_UNSATISFIABLE', `no consistent set of packages found in ${MAX_ATTEMPTS} attempts`, {});
}

function attemptOnce(input: ResolveInput, learnt: readonly Learnt[], banned: ReadonlyMap<IndexPackage, unknown>): IndexPackage[] {
  const byName = new Map<string, IndexPackage[]>();
  const byProvide = new Map<string, IndexPackage[]>();
  const repoOrder = new Map<string, number>();
  for (const p of input.available) {
    if (!repoOrder.has(p.repository)) repoOrder.set(p.repository, repoOrder.size);
    const pin = input.pins?.get(p.name);
    if (pin && (p.version !== pin.version || (pin.checksum !== '' && p.checksum !== pin.checksum))) continue;
    if (banned.has(p) || learnt.some((l) => l.name === p.name && !meets(l.dep, p))) continue;
    (byName.get(p.name) ?? byName.set(p.name, []).get(p.name)!).push(p);
    for (const pr of p.provides) (byProvide.get(pr.name) ?? byProvide.set(pr.name, []).get(pr.name)!).push(p);
  }
  const baseNames = new Set(input.installed.map((p) => p.name));
  const selected = new Map<string, IndexPackage>(); // by package name
  const holders = new Map<string, { name: string; version: string }>(); // held name → holder
  for (const p of input.installed) for (const n of heldNames(p)) if (!holders.has(n)) holders.set(n, p);
  const order: IndexPackage[] = [];
  const conflicts: Array<{ dep: Dep; chain: IndexPackage[] }> = [];
  const relatedLearnt = (name: string): Learnt[] => {
    const names = new Set(input.available.filter((p) => p.name === name || p.provides.some((pr) => pr.name === name)).map((p) => p.name));
    return learnt.filter((l) => names.has(l.name) || l.dep.name === name);
  };
  const learntText = (name: string): string => {
    const ls = relatedLearnt(name);
    return ls.length ? `; also required: ${ls.map((l) => `'${l.dep.text}'${via(l.chain)}`).join(', ')}` : '';
  };
  /** A failure of `dep` required along `chain`; by default its last package is to blame, in the context of the rest. */
  const fail = (code: 'APK_UNSATISFIABLE' | 'APK_UNKNOWN_PACKAGE', message: string, dep: Dep, chain: IndexPackage[], culprit?: IndexPackage): Failure =>
    new Failure(new VmimgError(code, message, { dependency: dep.text, chain: chain.map(label) }), culprit ?? chain[chain.length - 1], culprit ? chain : chain.slice(0, -1), relatedLearnt(dep.name));

  const present = (dep: Dep): boolean => input.installed.some((p) => satisfiedBy(dep, p)) || [...selected.values()].some((p) => satisfiedBy(dep, p));

  const providedVersion = (p: IndexPackage, name: string): string | undefined => p.provides.find((pr) => pr.name === name)?.version;
  /** apk's compare_providers, minus pinning and upgrade flags: version by the requested name, version, priority, repository. */
  const rank = (dep: Dep, a: IndexPackage, b: IndexPackage): number => {
    const va = a.name === dep.name ? a.version : providedVersion(a, dep.name);
    const vb = b.name === dep.name ? b.version : providedVersion(b, dep.name);
    return (
      (va !== undefined && vb !== undefined ? compareVersions(vb, va) : Number(vb !== undefined) - Number(va !== undefined)) ||
      (a.name === b.name ? compareVersions(b.version, a.version) : 0) ||
      b.providerPriority - a.providerPriority ||
      repoOrder.get(a.repository)! - repoOrder.get(b.repository)! ||
      cmpText(a.name, b.name)
    );
  };

  const choose = (dep: Dep, chain: IndexPackage[]): IndexPackage => {
    const named = (byName.get(dep.name) ?? []).filter((p) => versionSatisfies(dep, p.version));
    const providers = (byProvide.get(dep.name) ?? []).filter((p) => p.name !== dep.name && p.provides.some((pr) => pr.name === dep.name && versionSatisfies(dep, pr.version)));
    let candidates = [...named];
    if (named.length === 0) {
      // Unversioned provides are chosen automatically only with a provider priority.
      candidates = providers.filter((p) => providedVersion(p, dep.name) !== undefined || p.providerPriority > 0);
      if (candidates.length === 0 && providers.length > 0) {
        throw fail('APK_UNSATISFIABLE', `'${dep.text}'${via(chain)} is a virtual provided by ${[...new Set(providers.map((p) => p.name))].sort().join(', ')} without a provider priority: list one of them explicitly`, dep, chain);
      }
    }
    // A base package is never upgraded here (its old files would stay behind in the base tree
    // and the database would list the name twice): another version of it is refused by name.
    const upgrades = candidates.filter((p) => baseNames.has(p.name));
    candidates = candidates.filter((p) => !baseNames.has(p.name));
    if (candidates.length === 0 && upgrades.length > 0) {
      const old = input.installed.find((p) => p.name === upgrades[0]!.name)!;
      throw fail(
        'APK_UNSATISFIABLE',
        `'${dep.text}'${via(chain)} needs ${label(upgrades[0]!)}, but the base has ${label(old)} installed and vmimg does not upgrade base packages; use a newer base (minirootfs) or relax the constraint`,
        dep,
        chain,
      );
    }
    // One version per name: when only another version of a chosen name would do, learn the atom.
    const reusable = candidates.filter((p) => !selected.has(p.name) || selected.get(p.name) === p);
    if (reusable.length === 0 && candidates.length > 0) {
      const name = [...candidates].sort((a, b) => rank(dep, a, b))[0]!.name;
      if (!learnt.some((l) => l.name === name && l.dep.text === dep.text)) throw new Restart({ name, dep, chain });
    }
    if (reusable.length === 0) {
      const known = byName.has(dep.name) || byProvide.has(dep.name) || input.available.some((p) => p.name === dep.name || p.provides.some((pr) => pr.name === dep.name));
      // A name nothing provides is an error, never a reason to try older requirers (apk does the same).
      if (!known) throw new Failure(new VmimgError('APK_UNKNOWN_PACKAGE', `no package provides '${dep.name}'${via(chain)}`, { dependency: dep.text, chain: chain.map(label) }), undefined, []);
      const have = [...new Set(input.available.filter((p) => p.name === dep.name).map((p) => p.version))];
      const pin = input.pins?.get(dep.name);
      throw fail(
        'APK_UNSATISFIABLE',
        `'${dep.text}'${via(chain)} cannot be satisfied${have.length ? ` (available: ${have.join(', ')})` : ''}${pin && have.length ? `; the lock pins ${dep.name} ${pin.version}` : ''}${learntText(dep.name)}`,
        dep,
        chain,
      );
    }
    return reusable.sort((a, b) => rank(dep, a, b))[0]!;
  };

  const hold = (pkg: IndexPackage, dep: Dep, chain: IndexPackage[]): void => {
    const names = heldNames(pkg);
    const twice = names.find((n, i) => names.indexOf(n) !== i) ?? pkg.provides.find((p) => p.name === pkg.name)?.name;
    if (twice !== undefined) throw fail('APK_UNSATISFIABLE', `${label(pkg)}${via(chain)} provides '${twice}' more than once (or its own name), which apk treats as a conflict`, dep, chain, pkg);
    for (const n of names) {
      const other = holders.get(n);
      if (other && other !== pkg) throw fail('APK_UNSATISFIABLE', `${label(pkg)}${via(chain)} and ${label(other)} both provide '${n}'; only one package may hold a name`, dep, chain, pkg);
    }
    for (const n of names) holders.set(n, pkg);
  };

  const visiting = new Set<IndexPackage>();
  const need = (dep: Dep, chain: IndexPackage[]): void => {
    if (dep.conflict) {
      conflicts.push({ dep, chain });
      return;
    }
    if (present(dep)) return;
    const pkg = choose(dep, chain);
    if (visiting.has(pkg)) return; // a dependency cycle: already being installed
    hold(pkg, dep, chain);
    selected.set(pkg.name, pkg);
    visiting.add(pkg);
    const next = [...chain, pkg];
    for (const d of pkg.depends) need(d, next);
    visiting.delete(pkg);
    order.push(pkg); // post-order: dependencies first
  };

  // Concrete package names first, then virtuals, so a provider the user listed satisfies its virtual.
  const virtual = (d: Dep): number => Number(!byName.has(d.name) && !baseNames.has(d.name));
  const world = [...input.world].sort((a, b) => virtual(a) - virtual(b) || cmpText(a.name, b.name));
  for (const dep of world) need(dep, []);

  // install_if, to a fixed point (each round adds at least one package or stops).
  for (let changed = true; changed; ) {
    changed = false;
    for (const name of [...byName.keys()].sort(cmpText)) {
      if (selected.has(name) || baseNames.has(name)) continue;
      const triggered = byName.get(name)!.filter((p) => p.installIf.length > 0 && p.installIf.every((d) => (d.conflict ? !present({ ...d, conflict: false }) : present(d))));
      if (triggered.length === 0) continue;
      const pkg = triggered.sort((a, b) => compareVersions(b.version, a.version) || repoOrder.get(a.repository)! - repoOrder.get(b.repository)!)[0]!;
      const dep: Dep = { name: pkg.name, mask: 2, version: pkg.version, conflict: false, text: `${pkg.name}=${pkg.version}` };
      try {
        need(dep, []);
      } catch (e) {
        // An install_if package that cannot be installed is left out (banned), as apk would skip it.
        if (e instanceof Failure) throw new Failure(e.error, pkg, []);
        throw e;
      }
      changed = true;
    }
  }

  for (const { dep, chain } of conflicts) {
    const atom = { ...dep, conflict: false };
    const base = input.installed.find((p) => satisfiedBy(atom, p));
    const hit = base ?? [...selected.values()].find((p) => satisfiedBy(atom, p));
    if (!hit) continue;
    if (!base) {
      const pkg = hit as IndexPackage;
      if (!chain.includes(pkg) && !learnt.some((l) => l.name === pkg.name && l.dep.text === dep.text)) throw new Restart({ name: pkg.name, dep, chain });
    }
    throw fail('APK_UNSATISFIABLE', `${chain.length ? label(chain[chain.length - 1]!) : 'world'} conflicts with '${atom.text.replace(/^!/, '')}', which ${label(hit)} satisfies${via(chain.slice(0, -1))}`, dep, chain);
  }
  return order;
}
