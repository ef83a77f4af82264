import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { before, describe, it } from 'node:test';
import { pino } from 'pino';
import { Detector } from '../../inference/detector.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../inference/settings.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

function capturingLogger() {
  const stream = new PassThrough();
  const lines: Record<string, unknown>[] = [];
  stream.on('data', (chunk: Buffer) => {
    for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l));
  });
  return { log: pino({ level: 'info' }, stream), lines };
}

describe('execution provider selection', () => {
  before(ensureCatalogModels);

  it('falls back from a provider this build lacks to CPU and says so in the log', async () => {
    const { log, lines } = capturingLogger();
    const detector = await Detector.load(
      { ...DEFAULT_DETECTOR_SETTINGS, executionProviders: ['cuda', 'cpu'] },
      log,
    );
    await new Promise((r) => setImmediate(r));
    try {
      assert.equal(detector.provider, 'cpu');
      const skipped = lines.find((l) => l.provider === 'cuda');
      assert.ok(skipped, 'a log line names the skipped provider');
      assert.match(String(skipped.reason), /.+/);
      const fallback = lines.find((l) => String(l.msg).includes('fallback: using cpu'));
      assert.ok(fallback, `log says which provider is used: ${JSON.stringify(lines)}`);
    } finally {
      await detector.close();
    }
  });

  it('uses CPU without a warning when CPU is what the config asks for', async () => {
    const { log, lines } = capturingLogger();
    const detector = await Detector.load({ ...DEFAULT_DETECTOR_SETTINGS, executionProviders: ['cpu'] }, log);
    await new Promise((r) => setImmediate(r));
    try {
      assert.equal(detector.provider, 'cpu');
      assert.equal(lines.filter((l) => (l.level as number) >= 40).length, 0);
    } finally {
      await detector.close();
    }
  });
});
