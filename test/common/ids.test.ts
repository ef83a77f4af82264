import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { timeOrderedId } from '../../common/ids.ts';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('timeOrderedId', () => {
  it('is a UUID version 7 whose first 48 bits are the time in ms', () => {
    const at = Date.parse('2026-11-29T10:00:00.123Z');
    const id = timeOrderedId(at);
    assert.match(id, UUID_V7);
    assert.equal(Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16), at);
  });

  it('sorts by the time it was made, and 100,000 ids made in the same ms are distinct', () => {
    const t = Date.now();
    const ids = [t - 86_400_000, t - 1, t, t + 1].map((ms) => timeOrderedId(ms));
    assert.deepEqual([...ids].sort(), ids);
    const same = new Set(Array.from({ length: 100_000 }, () => timeOrderedId(t)));
    assert.equal(same.size, 100_000);
  });
});
