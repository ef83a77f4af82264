import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTimestamp } from '../../common/timestamp.ts';
import { validators } from '../../contract/index.ts';

describe('isTimestamp (the date-time format of every schema)', () => {
  it('accepts RFC 3339 date-times with a zone, each of which Date reads', () => {
    for (const t of [
      '2026-11-29T10:00:00Z',
      '2026-11-29t10:00:00.123456z',
      '2026-11-29T10:00:00.5+01:00',
      '2026-11-29T23:59:59-09:30',
      '2024-02-29T00:00:00Z',
      '2000-02-29T12:00:00Z',
    ]) {
      assert.equal(isTimestamp(t), true, t);
      assert.ok(!Number.isNaN(Date.parse(t)), t);
    }
  });

  it('refuses impossible dates and times, missing zones, leap seconds and zone suffixes', () => {
    for (const t of [
      '2026-02-29T00:00:00Z',
      '2100-02-29T00:00:00Z',
      '2026-04-31T00:00:00Z',
      '2026-13-01T00:00:00Z',
      '2026-00-10T00:00:00Z',
      '2026-11-00T00:00:00Z',
      '2026-11-29T24:00:00Z',
      '2026-11-29T10:60:00Z',
      '2026-06-30T23:59:60Z',
      '2026-11-29T10:00:00',
      '2026-11-29T10:00:00+24:00',
      '2026-11-29T10:00:00Z[Europe/Paris]',
      '2026-11-29 10:00:00Z',
      '20261129T100000Z',
    ])
      assert.equal(isTimestamp(t), false, t);
  });

  it('is what the wire contract checks timestamps with', () => {
    const status = (at: string) => ({
      v: 1,
      id: 'st-00000001',
      device: 'box-1',
      camera: 'cam-1',
      cameraSeq: 1,
      state: 'online',
      at,
    });
    assert.equal(validators.status.check(status('2026-11-29T10:00:00Z')), true);
    assert.equal(validators.status.check(status('2026-02-30T10:00:00Z')), false);
  });
});
