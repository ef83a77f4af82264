import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import { createLogger } from '../../common/logger.ts';
import type { ShadowThresholds } from '../../contract/ota.ts';
import type { HostEvent, HostStatus } from '../../device/camera-host.ts';
import { PipelineCameraHost } from '../../device/pipeline-host.ts';
import { resolveModelDir } from '../../inference/model-dir.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../inference/settings.ts';
import type { CameraSettings } from '../../pipelines/camera-settings.ts';
import { RtspServer } from '../../video/rtsp-test-server.ts';
import { type Candidates, makeCandidates } from '../helpers/candidates.ts';
import { eventually } from '../helpers/eventually.ts';

/**
 * Shadow validation in the live pipeline host, on live RTSP cameras (scripts/rtsp-server.py
 * looping vtest.avi) with the real detector: a candidate model runs beside the current one on the
 * cameras' own frames; the factory's int8 model agrees with fp32, its broken quantization does
 * not, and the cameras keep detecting on their own detector meanwhile. (The swap is in
 * model-swap.test.ts: each file stays within the runner's time limit on a loaded machine.)
 */

const log = createLogger('pipeline-host-swap');
const CAMPUS = resolve(import.meta.dirname, '../../scenes/vtest-campus.yaml');
const _WIDTH = 768;
const OLD_LINE_X = 0.25;
const _NEW_LINE_X = 0.45;
const SHADOW: ShadowThresholds = { frames: 6, minAgreement: 0.9, maxLatencyRatio: 10, timeoutS: 180 };

let dir: string;
let candidates: Candidates;
let server: RtspServer;
let host: PipelineCameraHost;
const events: HostEvent[] = [];
const statuses: HostStatus[] = [];

function camera(id: string): CameraSettings {
  return {
    id,
    url: server.url(id),
    scene: 'campus.yaml',
    detectFps: 5,
    loop: false,
    stallTimeoutS: 5,
    rtspTransport: 'tcp',
    decoder: 'software',
    enabled: true,
  };
}

/** the campus scene, every frame detected (no motion gate), its counting line at `x` */
async function writeScene(file: string, x: number, dropZone: boolean): Promise<void> {
  const scene = parse(await readFile(CAMPUS, 'utf8'));
  scene.motion = { enabled: false };
  scene.rules = scene.rules
    .filter((r: { id: string }) => !(dropZone && r.id === 'left-road'))
    .map((r: { id: string }) =>
      r.id === 'road-crossing'
        ? {
            ...r,
            line: [
              [x, 0.28],
              [x, 0.56],
            ],
          }
        : r,
    );
  await writeFile(file, stringify(scene));
}

describe('pipeline host: shadow validation on live cameras', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-swap-'));
    candidates = await makeCandidates();
    await writeScene(join(dir, 'campus.yaml'), OLD_LINE_X, false);
    server = await RtspServer.create({ paths: ['cam-a'] });
    host = new PipelineCameraHost(
      { ...DEFAULT_DETECTOR_SETTINGS, model: 'nanodet', sessions: 1, intraOpThreads: 1, shadowCpuShare: 1 },
      log,
    );
    host.onEvent((e) => events.push(e));
    host.onStatus((s) => statuses.push(s));
    await host.start([camera('cam-a')], dir);
    for (const id of ['cam-a'])
      await eventually(
        async () => (host.frameCounts(id).detected > 5 ? true : undefined),
        60_000,
        `frames of ${id} detected`,
      );
  });

  after(async () => {
    await host?.stop();
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('measures a good int8 candidate as agreeing and the broken quantization as not, the cameras detecting all along', async () => {
    const before = host.healthSample();
    const detected = host.frameCounts('cam-a').detected;
    const good = await host.shadowModel(candidates.int8.dir, SHADOW, new AbortController().signal);
    const broken = await host.shadowModel(candidates.broken.dir, SHADOW, new AbortController().signal);
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
    assert.ok(host.frameCounts('cam-a').detected > detected, 'the camera kept detecting');
    // the shadow ran on sessions of its own: the cameras' detector did not change or restart
    assert.equal(host.healthSample().detectorRestarts, before.detectorRestarts);
    assert.deepEqual(
      host.stats().map((c) => c.model?.name),
      ['nanodet'],
    );
    // a candidate that does not take the cameras' frames is refused before anything loads
    await assert.rejects(
      host.shadowModel(resolveModelDir('centernet'), SHADOW, new AbortController().signal),
      /takes 512×512 RGB uint8 frames but/,
    );
  });
});
