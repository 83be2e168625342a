/**
 * createPairAtomically (an image and its qcow2 data file): when the image cannot be put in place
 * after the data file was, an existing data file comes back with its old content and a new one
 * is removed; no temporary file is left either way.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { createPairAtomically } from '../../src/storage/atomic-pair.js';
import { tempDir } from '../helpers/oracle.js';

/** A fill that writes both files, then makes the image's rename fail (a non-empty directory at its path). */
function failingFill(target: string) {
  return async (image: { write(o: number, d: Uint8Array): Promise<void> }, data: { write(o: number, d: Uint8Array): Promise<void> }): Promise<void> => {
    await image.write(0, new TextEncoder().encode('new image'));
    await data.write(0, new TextEncoder().encode('new data'));
    mkdirSync(target);
    writeFileSync(join(target, 'occupied'), '');
  };
}

test('a failure between the two renames puts an existing data file back and removes a new one', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'old.data'), 'old data content');
  await assert.rejects(createPairAtomically(join(dir, 'a.qcow2'), join(dir, 'old.data'), failingFill(join(dir, 'a.qcow2'))));
  assert.equal(readFileSync(join(dir, 'old.data'), 'utf8'), 'old data content');
  await assert.rejects(createPairAtomically(join(dir, 'b.qcow2'), join(dir, 'new.data'), failingFill(join(dir, 'b.qcow2'))));
  assert.deepEqual(readdirSync(dir).sort(), ['a.qcow2', 'b.qcow2', 'old.data']);
  // Success still replaces the old data file and leaves nothing else behind.
  await createPairAtomically(join(dir, 'c.qcow2'), join(dir, 'old.data'), async (image, data) => {
    await image.write(0, new TextEncoder().encode('img'));
    await data.write(0, new TextEncoder().encode('fresh'));
  });
  assert.equal(readFileSync(join(dir, 'old.data'), 'utf8'), 'fresh');
  assert.deepEqual(readdirSync(dir).sort(), ['a.qcow2', 'b.qcow2', 'c.qcow2', 'old.data']);
});
