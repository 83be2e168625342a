/**
 * Atomic creation of an image and a second file it names (a qcow2 external data file): both
 * are written to temporary files beside their targets (createAtomically), then the second is
 * renamed into place, then the image. A failure before the renames leaves neither; a failure
 * between them (the image's final flush or rename) removes the second file again when it did
 * not exist before. An existing second file is replaced, as qemu-img truncates and reuses it
 * (qemu-img 7.2 deletes it on a failed create; vmimg keeps it until the new one is complete).
 */
import { realpath, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { VmimgError } from '../util/errors.js';
import { createAtomically, finalTarget } from './atomic.js';
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
  try {
    return await createAtomically(
      target,
      async (image) => {
        const result = await createAtomically(second, (other) => fill(image, other), options);
        secondPlaced = true;
        return result;
      },
      options,
    );
  } catch (e) {
    if (secondPlaced && !existed) await unlink(second).catch(() => undefined);
    throw e;
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
