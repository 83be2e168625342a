/**
 * ImageChain.closeChecked (src/chain/open.ts): every layer is closed even when one fails, and the
 * first failure reaches the caller (convert -n relies on it: a qcow2 target stores its bitmaps at
 * close); close() keeps ignoring failures.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ImageChain } from '../../src/chain/open.js';
import type { Image } from '../../src/formats/image.js';
import { VmimgError } from '../../src/util/errors.js';

function layer(name: string, closed: string[], fail?: string): Image {
  return {
    close: async () => {
      closed.push(name);
      if (fail) throw new VmimgError('WRITE_FAILED', fail, {});
    },
  } as unknown as Image;
}

test('closeChecked closes every layer and rethrows the first failure', async () => {
  const closed: string[] = [];
  const chain = new ImageChain([layer('top', closed, 'bitmaps not stored'), layer('mid', closed), layer('base', closed, 'second')]);
  await assert.rejects(chain.closeChecked(), { code: 'WRITE_FAILED', message: /bitmaps not stored/ });
  assert.deepEqual(closed, ['top', 'mid', 'base']);
});

test('close ignores failures; closeChecked resolves when nothing fails', async () => {
  const closed: string[] = [];
  await new ImageChain([layer('top', closed, 'x'), layer('base', closed)]).close();
  await new ImageChain([layer('a', closed), layer('b', closed)]).closeChecked();
  assert.deepEqual(closed, ['top', 'base', 'a', 'b']);
});
