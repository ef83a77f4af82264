import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
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
 * The model swap in the live pipeline host, on two live RTSP cameras (scripts/rtsp-server.py
 * looping vtest.avi) with the real detector: the detector both cameras share is swapped for the
 * factory's int8 model with the cameras running — the longest wait between two detected frames of
 * a camera is measured over the swap and must stay under a second — and a model that does not
 * fit the cameras is refused, the running one kept.
 */

const log = createLogger('pipeline-host-swap');
const CAMPUS = resolve(import.meta.dirname, '../../scenes/vtest-campus.yaml');
const _WIDTH = 768;
const OLD_LINE_X = 0.25;
const _NEW_LINE_X = 0.45;
const _SHADOW: ShadowThresholds = { frames: 8, minAgreement: 0.9, maxLatencyRatio: 10, timeoutS: 180 };

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

describe('pipeline host: model swap on live cameras', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-swap-'));
    candidates = await makeCandidates();
    await writeScene(join(dir, 'campus.yaml'), OLD_LINE_X, false);
    server = await RtspServer.create({ paths: ['cam-a', 'cam-b'] });
    host = new PipelineCameraHost(
      { ...DEFAULT_DETECTOR_SETTINGS, model: 'nanodet', sessions: 1, intraOpThreads: 1, shadowCpuShare: 1 },
      log,
    );
    host.onEvent((e) => events.push(e));
    host.onStatus((s) => statuses.push(s));
    await host.start([camera('cam-a'), camera('cam-b')], dir);
    for (const id of ['cam-a', 'cam-b'])
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

  it('swaps the detector of both cameras with no gap of a second between detected frames at the switch', async () => {
    const ids = ['cam-a', 'cam-b'];
    const detected = new Map(ids.map((id) => [id, [] as number[]]));
    const received = new Map(ids.map((id) => [id, [] as number[]]));
    const counts = new Map(ids.map((id) => [id, host.frameCounts(id)]));
    let switchedAt: number | undefined;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const now = performance.now();
        for (const id of ids) {
          const n = host.frameCounts(id);
          const was = counts.get(id)!;
          if (n.detected !== was.detected) detected.get(id)!.push(now);
          if (n.received !== was.received) received.get(id)!.push(now);
          counts.set(id, n);
        }
        if (switchedAt === undefined && host.stats()[0]?.model?.name === candidates.int8.descriptor.name)
          switchedAt = now;
        await sleep(10);
      }
    })();
    await sleep(1000);
    const swapStarted = performance.now();
    await host.swapModel(candidates.int8.dir);
    const swapMs = performance.now() - swapStarted;
    await sleep(2000);
    sampling = false;
    await sampler;
    assert.ok(switchedAt !== undefined, 'the cameras report the new model');
    const longest = (times: number[]) => Math.max(...times.slice(1).map((t, i) => t - times[i]!));
    for (const id of ids) {
      const times = detected.get(id)!;
      assert.ok(times.length > 10, `${id}: ${times.length} detections over the swap`);
      // the wait for a detected frame across the moment the detector was switched
      const after = times.findIndex((t) => t >= (switchedAt ?? Number.POSITIVE_INFINITY));
      assert.ok(after > 0, `${id} detects after the switch`);
      const atSwitch = times[after]! - times[after - 1]!;
      log.warn(
        {
          camera: id,
          swapMs: Math.round(swapMs),
          gapAtSwitchMs: Math.round(atSwitch),
          longestDetectedGapMs: Math.round(longest(times)),
          longestReceivedGapMs: Math.round(longest(received.get(id)!)),
        },
        'model swap',
      );
      assert.ok(atSwitch < 1000, `${id}: ${Math.round(atSwitch)} ms without a detected frame at the switch`);
    }
    const d = candidates.int8.descriptor;
    assert.deepEqual(
      host.stats().map((c) => c.model),
      [
        { name: d.name, version: d.version },
        { name: d.name, version: d.version },
      ],
    );
    assert.equal(host.detectorStats()?.restarts, 0);
    assert.ok(!statuses.some((s) => s.state === 'offline'), JSON.stringify(statuses));
  });

  it('refuses a model that takes other frames than the cameras deliver, and keeps the running one', async () => {
    const running = host.stats()[0]!.model;
    await assert.rejects(
      host.swapModel(resolveModelDir('centernet')),
      /takes 512×512 RGB frames, the cameras deliver 416×416 BGR/,
    );
    await assert.rejects(host.swapModel(join(dir, 'no-such-model')), /cannot read model descriptor/);
    assert.deepEqual(host.stats()[0]!.model, running);
  });
});
