/**
 * Atomic creation of an image and a second file it names (a qcow2 external data file): both
 * are written to temporary files beside their targets (createAtomically), then the second is
 * renamed into place, then the image. A failure before the renames leaves neither; a failure
 * between them (the image's final flush or rename) removes the second file again when it did
 * not exist before, and puts an existing one back (kept as a hard link until the image is in
 * place). An existing second file is replaced, as qemu-img truncates and reuses it (qemu-img 7.2
 * deletes it on a failed create; vmimg keeps it unless the create succeeds).
 */
import { link, realpath, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { VmimgError } from '../util/errors.js';
import { createAtomically, finalTarget, temporaryPathFor, trackTemporary } from './atomic.js';
import type { FileStorage } from './file.js';

export async function createPairAtomically<T>(
  target: string,
  second: string,
  fill: (image: FileStorage, second: FileStorage) => Promise<T>,
  options: { sync?: boolean } = {},
): Promise<T> {
  await refuseSameFile(target, second);
  const existed = await stat(second).then(
    () => true,
    () => false,
  );
  let secondPlaced = false;
  // The existing second file, kept under a hidden name (a hard link) until the image is in
  // place, so a failure between the two renames puts it back instead of losing it.
  let kept: { path: string; final: string } | undefined;
  try {
    const result = await createAtomically(
      target,
      async (image) => {
        const result = await createAtomically(
          second,
          async (other) => {
            const out = await fill(image, other);
            if (existed) {
              const final = (await finalTarget(second)).path;
              const path = temporaryPathFor(final);
              if (await link(final, path).then(() => true, () => false)) {
                kept = { path, final };
                trackTemporary(path, true);
              }
            }
            return out;
          },
          options,
        );
        secondPlaced = true;
        return result;
      },
      options,
    );
    if (kept) await unlink(kept.path).catch(() => undefined);
    return result;
  } catch (e) {
    if (secondPlaced && kept) await rename(kept.path, kept.final).catch(() => undefined);
    else if (kept) await unlink(kept.path).catch(() => undefined);
    if (secondPlaced && !existed) await unlink(second).catch(() => undefined);
    throw e;
  } finally {
    if (kept) trackTemporary(kept.path, false);
  }
}

/**
 * Where a create of `path` puts its file: symlinks at the end followed (as createAtomically
 * does), the directory's symlinks resolved. Two names that do not exist yet can still land on
 * one file (a dangling link to the other, a directory link).
 */
async function landingPath(path: string): Promise<string> {
  const final = (await finalTarget(path).catch(() => ({ path }))).path;
  const dir = await realpath(dirname(final)).catch(() => resolve(dirname(final)));
  return join(dir, basename(final));
}

/** The image and its data file must be two files. */
async function refuseSameFile(target: string, second: string): Promise<void> {
  const [a, b] = await Promise.all([stat(target).catch(() => undefined), stat(second).catch(() => undefined)]);
  const [la, lb] = await Promise.all([landingPath(target), landingPath(second)]);
  if (resolve(target) === resolve(second) || la === lb || (a && b && a.dev === b.dev && a.ino === b.ino)) {
    throw new VmimgError('INVALID_OPTION', `The data file '${second}' is the image file '${target}' itself`, { key: 'data_file', value: second });
  }
}
