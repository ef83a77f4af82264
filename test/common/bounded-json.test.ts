import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { JsonBoundsError, jsonDepth, parseBoundedJson } from '../../common/bounded-json.ts';

/** the nesting depth of a parsed value, by walking it */
function depthOf(value: unknown): number {
  if (Array.isArray(value)) return 1 + Math.max(0, ...value.map(depthOf));
  if (value !== null && typeof value === 'object')
    return 1 + Math.max(0, ...Object.values(value).map(depthOf));
  return 0;
}

const SEED = 20261201;

describe('bounded JSON', () => {
  it('measures the depth of any JSON value as walking it does, brackets in strings not counted', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 12 }), (value) => {
        const text = JSON.stringify(value);
        assert.equal(jsonDepth(text, 64), depthOf(value));
      }),
      { seed: SEED, numRuns: 2000 },
    );
  });

  it('refuses text past either limit and parses text within both', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 10 }), fc.integer({ min: 0, max: 12 }), (value, maxDepth) => {
        const text = JSON.stringify(value);
        const bytes = Buffer.byteLength(text);
        const within = depthOf(value) <= maxDepth;
        if (within) assert.deepEqual(parseBoundedJson(text, { maxBytes: bytes, maxDepth }), JSON.parse(text));
        else
          assert.throws(
            () => parseBoundedJson(text, { maxBytes: bytes, maxDepth }),
            (e: unknown) => e instanceof JsonBoundsError && e.reason === 'too_deep',
          );
        if (bytes > 0)
          assert.throws(
            () => parseBoundedJson(text, { maxBytes: bytes - 1, maxDepth: 64 }),
            (e: unknown) => e instanceof JsonBoundsError && e.reason === 'oversized',
          );
      }),
      { seed: SEED, numRuns: 2000 },
    );
  });

  it('answers any string with a value or a JsonBoundsError, never another error', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: fc.constantFrom('[', ']', '{', '}', '"', '\\', ':', ',', '1', 'a', ' ') }),
        (text) => {
          try {
            parseBoundedJson(text, { maxBytes: 1 << 16, maxDepth: 8 });
          } catch (err) {
            assert.ok(err instanceof JsonBoundsError, String(err));
          }
        },
      ),
      { seed: SEED, numRuns: 5000 },
    );
  });

  it('refuses a million levels of nesting in one pass, without touching the stack', () => {
    const text = `${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}`;
    assert.throws(
      () => parseBoundedJson(text, { maxBytes: 4_000_000, maxDepth: 32 }),
      /nested deeper than 32/,
    );
  });
});
