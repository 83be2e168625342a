/**
 * ChainReader fills every byte of the caller's buffer exactly once (data, decoded units or
 * zeros): a dirty, recycled buffer must come back holding only guest bytes. Random layer maps
 * (data / zero / unallocated runs, backing layers shorter than the top) against a model.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ChainReader } from '../../src/chain/read.js';
import type { Extent, Image } from '../../src/formats/image.js';
import { MemoryStorage } from '../../src/storage/memory.js';

type Kind = 'data' | 'zero' | 'unallocated';

/** A layer of `size` bytes cut into 512-byte runs of the given kinds; data bytes are `fill + i`. */
function layer(size: number, kinds: Kind[], fill: number): { image: Image; model: (number | undefined)[] } {
  const bytes = new Uint8Array(size).map((_, i) => (fill + i) & 0xff);
  const storage = new MemoryStorage(bytes);
  const model: (number | undefined)[] = [];
  for (let i = 0; i < size; i++) {
    const k = kinds[Math.floor(i / 512) % kinds.length]!;
    model.push(k === 'data' ? bytes[i] : k === 'zero' ? 0 : undefined);
  }
  const image = {
    format: 'raw',
    filename: `layer-${fill}`,
    storage,
    virtualSize: size,
    references: () => [],
    info: () => ({}),
    close: async () => undefined,
    async map(start: number, length: number): Promise<Extent[]> {
      const out: Extent[] = [];
      for (let pos = start; pos < start + length; ) {
        const end = Math.min(start + length, (Math.floor(pos / 512) + 1) * 512);
        const k = kinds[Math.floor(pos / 512) % kinds.length]!;
        out.push(k === 'data' ? { kind: 'data', start: pos, length: end - pos, storage, offset: pos } : { kind: k, start: pos, length: end - pos });
        pos = end;
      }
      return out;
    },
  } as unknown as Image;
  return { image, model };
}

test('ChainReader writes every byte of a dirty buffer: data, zeros, fall-through and short backing layers', () =>
  fc.assert(
    fc.asyncProperty(
      fc.array(fc.record({ size: fc.integer({ min: 1, max: 8 }), kinds: fc.array(fc.constantFrom<Kind>('data', 'zero', 'unallocated'), { minLength: 1, maxLength: 5 }) }), { minLength: 1, maxLength: 3 }),
      fc.integer({ min: 0, max: 4095 }),
      fc.integer({ min: 0, max: 4096 }),
      async (specs, start, len) => {
        const topSize = specs[0]!.size * 512;
        const layers = specs.map((s, i) => layer(i === 0 ? topSize : s.size * 512, s.kinds, 17 * (i + 1)));
        const offset = Math.min(start, topSize);
        const length = Math.min(len, topSize - offset);
        const expected = new Uint8Array(length);
        for (let i = 0; i < length; i++) {
          let v: number | undefined;
          for (const l of layers) {
            const g = offset + i;
            if (g >= l.model.length) {
              v = 0;
              break;
            }
            v = l.model[g];
            if (v !== undefined) break;
          }
          expected[i] = v ?? 0;
        }
        const target = new Uint8Array(length).fill(0xaa);
        await new ChainReader(layers.map((l) => l.image)).readInto(offset, target);
        assert.deepEqual(target, expected);
      },
    ),
    { numRuns: 300, seed: 11 },
  ));
