import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../common/logger.ts';
import type { ShadowThresholds } from '../../contract/ota.ts';
import { resolveModelDir } from '../../inference/model-dir.ts';
import { type Candidates, makeCandidates } from '../helpers/candidates.ts';
import { type LiveCameraHost, startLiveCameraHost } from '../helpers/live-camera.ts';

/**
 * Shadow validation in the live pipeline host, on live RTSP cameras (scripts/rtsp-server.py
 * looping vtest.avi) with the real detector: a candidate model runs beside the current one on the
 * cameras' own frames; the factory's int8 model agrees with fp32, its broken quantization does
 * not, and the cameras keep detecting on their own detector meanwhile. (The swap is in
 * model-swap.test.ts: each file stays within the runner's time limit on a loaded machine.)
 */

const log = createLogger('pipeline-host-shadow');
const SHADOW: ShadowThresholds = { frames: 6, minAgreement: 0.9, maxLatencyRatio: 10, timeoutS: 180 };

let candidates: Candidates;
let live: LiveCameraHost;

describe('pipeline host: shadow validation on live cameras', () => {
  before(async () => {
    candidates = await makeCandidates();
    live = await startLiveCameraHost({ cameras: ['cam-a'], shadowCpuShare: 1 });
  });

  after(async () => {
    await live?.close();
  });

  it('measures a good int8 candidate as agreeing and the broken quantization as not, the cameras detecting all along', async () => {
    const before = live.host.healthSample();
    const detected = live.host.frameCounts('cam-a').detected;
    const good = await live.host.shadowModel(candidates.int8.dir, SHADOW, new AbortController().signal);
    const broken = await live.host.shadowModel(candidates.broken.dir, SHADOW, new AbortController().signal);
    log.warn({ good, broken }, 'shadow figures');
    assert.equal(good.frames, SHADOW.frames);
    assert.equal(broken.frames, SHADOW.frames);
    assert.ok(good.agreement >= 0.9, `int8 agreement ${good.agreement}`);
    assert.ok(broken.agreement < 0.5, `broken agreement ${broken.agreement}`);
    for (const f of [good, broken]) {
      assert.ok(f.currentLatencyMs > 0 && f.candidateLatencyMs > 0);
      // the ratio is of the unrounded medians: it agrees with the rounded figures to within their rounding
      const fromRounded = f.candidateLatencyMs / f.currentLatencyMs;
      const slack = 0.0005 + (0.005 * (1 + fromRounded)) / f.currentLatencyMs;
      assert.ok(
        Math.abs(f.latencyRatio - fromRounded) <= slack,
        `latency ratio ${f.latencyRatio} against ${f.candidateLatencyMs} / ${f.currentLatencyMs} ms`,
      );
    }
    assert.ok(live.host.frameCounts('cam-a').detected > detected, 'the camera kept detecting');
    // the shadow ran on sessions of its own: the cameras' detector did not change or restart
    assert.equal(live.host.healthSample().detectorRestarts, before.detectorRestarts);
    assert.deepEqual(
      live.host.stats().map((c) => c.model?.name),
      ['nanodet'],
    );
    // a candidate that does not take the cameras' frames is refused before anything loads
    await assert.rejects(
      live.host.shadowModel(resolveModelDir('centernet'), SHADOW, new AbortController().signal),
      /takes 512×512 RGB uint8 frames but/,
    );
  });
});
