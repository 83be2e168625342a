/**
 * Pieces every in-place write path shares (src/formats/{vpc,vhdx,vmdk}/write*.ts): the range
 * check of a guest write, a queue that runs calls one after another (block/grain allocation
 * reads and moves the file's free offset), and the all-zero test that lets a zero write to an
 * unallocated unit allocate nothing.
 */
import { VmimgError } from '../util/errors.js';

/** OUT_OF_BOUNDS unless [offset, offset+length) lies within the virtual size. */
export function checkWriteRange(format: string, filename: string, virtualSize: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > virtualSize) {
    throw new VmimgError('OUT_OF_BOUNDS', `Write of ${length} bytes at ${offset} is outside ${format} image '${filename}' (virtual size ${virtualSize})`, { offset, length });
  }
}

/** Runs the functions it is given one after another, in call order; a failure does not stop the queue. */
export function serialQueue(): <T>(fn: () => Promise<T>) => Promise<T> {
  let queue: Promise<unknown> = Promise.resolve();
  return <T>(fn: () => Promise<T>): Promise<T> => {
    const next = queue.then(fn);
    queue = next.catch(() => undefined);
    return next;
  };
}

/** True when every byte of `data` is zero. */
export function allZero(data: Uint8Array): boolean {
  for (let i = 0; i < data.length; i++) if (data[i] !== 0) return false;
  return true;
}
