import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { pino } from 'pino';
import { DeviceRate } from '../../control-plane/ingest/device-rate.ts';
import { RateLimitedLog } from '../../control-plane/ingest/rate-limited-log.ts';
import { eventually } from '../helpers/eventually.ts';

const SEED = 14_140_007;

/** a real logger whose lines land in `lines` */
function capture(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
      done();
    },
  });
  return { log: pino({ level: 'warn' }, sink), lines };
}

describe('rejection log', () => {
  it('logs each key at most once per interval, with what it did not log', () => {
    const { log, lines } = capture();
    const rl = new RateLimitedLog(log, 60_000, 100);
    for (let i = 0; i < 50; i++) rl.warn('schema/box-1', { i }, 'rejected');
    assert.equal(lines.length, 1);
  });

  it('bounds the lines of all keys together, and sums up the rest in one line', async () => {
    const { log, lines } = capture();
    const rl = new RateLimitedLog(log, 200, 100);
    // keys an attacker makes up: a new device id per message
    for (let i = 0; i < 10_000; i++) rl.warn(`schema/evil-${i}`, { i }, 'rejected');
    assert.equal(lines.length, 100, 'the budget of the interval');
    const summary = await eventually(
      async () => lines.find((l) => typeof l.suppressed === 'number'),
      5000,
      'the summary line',
    );
    assert.equal(summary.suppressed, 9900);
    assert.equal(summary.keys, 9900);
    assert.equal(lines.length, 101);
    rl.warn('schema/box-2', {}, 'rejected');
    assert.equal(lines.length, 102, 'a new interval logs again');
  });
});

describe('device rate', () => {
  it('lets a burst through, then paces to the rate: a message waits for its token', () => {
    let now = 0;
    const rate = new DeviceRate(10, 5, () => now);
    const waits = Array.from({ length: 8 }, () => rate.delayMs('box-1'));
    assert.deepEqual(waits, [0, 0, 0, 0, 0, 100, 200, 300]);
    assert.equal(rate.delayMs('box-2'), 0, 'another device has its own bucket');
    now = 1000;
    assert.equal(rate.delayMs('box-1'), 0, 'a second refilled ten tokens (three owed)');
  });

  it('never lets a device through faster than its rate after its burst (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1000 }),
        fc.integer({ min: 1, max: 100 }),
        fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 1, maxLength: 300 }),
        (perSecond, burst, gaps) => {
          let now = 0;
          const rate = new DeviceRate(perSecond, burst, () => now);
          for (const [i, gap] of gaps.entries()) {
            now += gap;
            const due = now + rate.delayMs('d');
            // message i is acknowledged no sooner than its token exists
            assert.ok(due + 1e-6 >= ((i + 1 - burst) * 1000) / perSecond);
          }
        },
      ),
      { seed: SEED, numRuns: 500 },
    );
  });
});
