import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { adaptGate, agreementRise } from '../../models/adapt/gate.ts';

const share = fc.double({ min: 0, max: 1, noNaN: true });
const gates = fc.record({
  minAgreementGain: fc.double({ min: 0, max: 0.2, noNaN: true }),
  minGapClosedShare: fc.double({ min: 0, max: 1, noNaN: true }),
});

describe('the adaptation gate’s agreement rise', () => {
  it('passes exactly when the rise meets its floor and closes the share of the gap the gate asks', () => {
    fc.assert(
      fc.property(share, share, gates, (before, after, gate) => {
        const rise = agreementRise(before, after, gate);
        const gain = after - before;
        const expected =
          before < 1 && gain >= gate.minAgreementGain && gain / (1 - before) >= gate.minGapClosedShare;
        assert.equal(rise.failure === undefined, expected, JSON.stringify({ before, after, gate, rise }));
        assert.equal(rise.gain, gain);
      }),
    );
  });

  it('never passes a candidate that does not agree better than the baseline, whatever the gate', () => {
    fc.assert(
      fc.property(share, share, gates, (a, b, gate) => {
        const [before, after] = a >= b ? [b, a] : [a, b];
        assert.ok(
          agreementRise(after, before, { ...gate, minAgreementGain: Math.max(gate.minAgreementGain, 1e-9) })
            .failure,
        );
      }),
    );
  });

  it('is monotone: a candidate agreeing more never fails where one agreeing less passed', () => {
    fc.assert(
      fc.property(share, share, share, gates, (before, a, b, gate) => {
        const [low, high] = a <= b ? [a, b] : [b, a];
        if (!agreementRise(before, low, gate).failure) {
          assert.equal(agreementRise(before, high, gate).failure, undefined);
        }
      }),
    );
  });

  it('names in its sentence each criterion the rise missed, with the figures', () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 0.99, noNaN: true }), share, gates, (before, after, gate) => {
        const rise = agreementRise(before, after, gate);
        if (!rise.failure) return;
        assert.match(rise.failure, new RegExp(`^went from ${before.toFixed(3)} to ${after.toFixed(3)} `));
        assert.equal(
          rise.failure.includes("short of the gate's minimum rise"),
          rise.gain < gate.minAgreementGain,
        );
        assert.equal(
          rise.failure.includes('of the gap to 1.0'),
          rise.gapClosedShare < gate.minGapClosedShare,
        );
      }),
    );
  });

  it('says a baseline that already agrees fully cannot be bettered', () => {
    const rise = agreementRise(1, 1, adaptGate());
    assert.match(rise.failure ?? '', /already agrees fully/);
    assert.equal(rise.gapClosedShare, 0);
  });

  it('asks by default a rise of at least 0.005 closing a quarter of the gap', () => {
    const gate = adaptGate();
    assert.equal(gate.minAgreementGain, 0.005);
    assert.equal(gate.minGapClosedShare, 0.25);
    const bench = agreementRise(0.9635, 0.9829, gate);
    assert.equal(bench.failure, undefined);
    assert.ok(Math.abs(bench.gapClosedShare - 0.0194 / 0.0365) < 1e-9);
    assert.match(
      agreementRise(0.9635, 0.97, gate).failure ?? '',
      /closing 17\.8 % of the gap to 1\.0 against the 25\.0 %/,
    );
    assert.match(
      agreementRise(0.996, 0.999, gate).failure ?? '',
      /short of the gate's minimum rise of 0\.005$/,
    );
  });
});
