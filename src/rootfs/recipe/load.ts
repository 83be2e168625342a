/**
 * Finding a recipe: a path to a YAML/JSON file, or the name of a built-in recipe (go, node,
 * python) when no file of that name exists. Command-line overrides (--agent, --arch, --format,
 * --mirror) apply on top of the document before validation, so they are checked like the file.
 */
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, extname, resolve } from 'node:path';
import { fromSystemError, VmimgError } from '../../util/errors.js';
import { builtinRecipe, BUILTIN_RECIPES } from './builtin.js';
import { parseRecipeText, validateRecipe, type Recipe } from './schema.js';

export interface RecipeOverrides {
  /** The default arch (the host's), or the forced one with forceArch (--arch). */
  arch: 'x86_64' | 'aarch64';
  forceArch?: boolean;
  agent?: string;
  format?: string;
  /** Alpine mirror for built-in recipes. */
  mirror?: string;
  /** Replaces the recipe's base with a local tarball or directory (--base). */
  base?: string;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

export async function loadRecipe(nameOrPath: string, overrides: RecipeOverrides): Promise<Recipe> {
  let doc: Record<string, unknown>;
  let baseDir = process.cwd();
  let defaultName: string;
  if (await isFile(nameOrPath)) {
    let text: string;
    try {
      text = await readFile(nameOrPath, 'utf8');
    } catch (e) {
      throw fromSystemError(e, nameOrPath, 'read');
    }
    const parsed = parseRecipeText(text, nameOrPath);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new VmimgError('INVALID_RECIPE', `recipe '${nameOrPath}' must be a map of fields`, { path: nameOrPath });
    }
    doc = { ...(parsed as Record<string, unknown>) };
    baseDir = dirname(resolve(nameOrPath));
    defaultName = basename(nameOrPath, extname(nameOrPath));
  } else if (BUILTIN_RECIPES.includes(nameOrPath)) {
    doc = builtinRecipe(nameOrPath, { arch: overrides.arch, ...(overrides.mirror ? { mirror: overrides.mirror } : {}) });
    defaultName = nameOrPath;
  } else {
    throw new VmimgError('RECIPE_NOT_FOUND', `no recipe file '${nameOrPath}' and no built-in recipe of that name (built-in: ${BUILTIN_RECIPES.join(', ')})`, { recipe: nameOrPath });
  }
  if (overrides.agent !== undefined) {
    const current = doc['agent'];
    const name = typeof current === 'object' && current !== null && !Array.isArray(current) ? (current as Record<string, unknown>)['name'] : undefined;
    doc['agent'] = { source: resolve(overrides.agent), ...(name !== undefined ? { name } : {}) };
  }
  if (overrides.forceArch) doc['arch'] = overrides.arch;
  if (overrides.base !== undefined) doc['base'] = { path: resolve(overrides.base) };
  if (overrides.format !== undefined) {
    const out = typeof doc['output'] === 'object' && doc['output'] !== null ? (doc['output'] as Record<string, unknown>) : {};
    doc['output'] = { ...out, format: overrides.format };
  }
  return validateRecipe(doc, { baseDir, defaultName, hostArch: overrides.arch });
}

/** The default image path of a recipe: its output.path, else DIR/<name>.ext4 (.qcow2 etc. for other formats). */
export function defaultOutput(recipe: Recipe, dir: string): string {
  if (recipe.output.path !== undefined) return recipe.output.path;
  return resolve(dir, `${recipe.name}.${recipe.output.format === 'raw' ? 'ext4' : recipe.output.format}`);
}
