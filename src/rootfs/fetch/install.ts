/**
 * Installing fetched files: every file lands by temp-file-then-rename in its destination
 * directory, so a reader sees either the old file or the complete new one, never a partial one.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, readFile, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fromSystemError } from '../../util/errors.js';

/** A hidden temporary path beside `target`. */
export function stagingPath(target: string): string {
  return join(dirname(target), `.vmimg-${randomBytes(6).toString('hex')}.tmp`);
}

/** Writes `source` to a staging file with `mode` and returns its path (caller renames or removes). */
export async function stage(target: string, source: Readable, mode: number): Promise<string> {
  await mkdir(dirname(target), { recursive: true });
  const tmp = stagingPath(target);
  try {
    await pipeline(source, createWriteStream(tmp, { flags: 'wx', mode }));
    await chmod(tmp, mode);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw fromSystemError(e, target, 'write');
  }
  return tmp;
}

/** Renames staged files into place; on failure removes the staged files not yet renamed. */
export async function commitStaged(pairs: Array<[tmp: string, target: string]>): Promise<void> {
  for (let i = 0; i < pairs.length; i++) {
    const [tmp, target] = pairs[i]!;
    try {
      await rename(tmp, target);
    } catch (e) {
      for (const [t] of pairs.slice(i)) await unlink(t).catch(() => undefined);
      throw fromSystemError(e, target, 'rename');
    }
  }
}

/** Copies `from` to `target` atomically with `mode`. */
export async function installCopy(from: string, target: string, mode: number): Promise<void> {
  const tmp = await stage(target, createReadStream(from), mode);
  await commitStaged([[tmp, target]]);
}

/** Writes a small text file atomically. */
export async function installText(target: string, text: string): Promise<void> {
  const { Readable } = await import('node:stream');
  const tmp = await stage(target, Readable.from([Buffer.from(text)]), 0o644);
  await commitStaged([[tmp, target]]);
}

/** Reads a JSON file, or undefined when missing or unparsable. */
export async function readJsonIfAny(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8'));
  } catch {
    return undefined;
  }
}
