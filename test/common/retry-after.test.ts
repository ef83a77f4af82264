import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { retryAfterMs } from '../../common/retry-after.ts';

const NOW = Date.parse('2026-12-03T10:00:00Z');

describe('retryAfterMs (a Retry-After header, as a client obeys it)', () => {
  it('reads delay-seconds and HTTP-dates; a date passed is 0; the wait never passes the cap', () => {
    assert.equal(retryAfterMs('7', NOW, 60_000), 7_000);
    assert.equal(retryAfterMs(' 7 ', NOW, 60_000), 7_000);
    assert.equal(retryAfterMs(['2', '9'], NOW, 60_000), 2_000);
    assert.equal(retryAfterMs('3600', NOW, 60_000), 60_000);
    assert.equal(retryAfterMs('Thu, 03 Dec 2026 10:00:30 GMT', NOW, 60_000), 30_000);
    assert.equal(retryAfterMs('Thu, 03 Dec 2026 09:00:00 GMT', NOW, 60_000), 0);
    assert.equal(retryAfterMs('Fri, 03 Dec 2027 10:00:00 GMT', NOW, 60_000), 60_000);
    for (const bad of [undefined, '', '-5', '1.5', '1e3', 'soon', '0x10', 'Infinity', 'NaN', 12, {}])
      assert.equal(retryAfterMs(bad, NOW, 60_000), undefined, String(bad));
  });

  it('for any header value and cap, answers undefined or a whole wait within [0, cap]', () => {
    const header = fc.oneof(
      fc.string({ maxLength: 80 }),
      fc.bigInt({ min: 0n, max: 10n ** 70n }).map(String),
      fc
        .date({ min: new Date('1900-01-01'), max: new Date('2300-01-01'), noInvalidDate: true })
        .map((d) => d.toUTCString()),
      fc.array(fc.string({ maxLength: 20 }), { maxLength: 3 }),
      fc.anything(),
    );
    fc.assert(
      fc.property(header, fc.integer({ min: 0, max: 3_600_000 }), (value, cap) => {
        const ms = retryAfterMs(value, NOW, cap);
        if (ms === undefined) return;
        assert.ok(Number.isFinite(ms) && ms >= 0 && ms <= cap, `${JSON.stringify(value)} → ${ms}`);
      }),
      { numRuns: 2000 },
    );
  });
});
