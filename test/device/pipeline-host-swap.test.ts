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
 * The OTA side of the live pipeline host, on two live RTSP cameras (scripts/rtsp-server.py looping
 * vtest.avi) with the real detector: a candidate model validated in shadow on the cameras' own
 * frames (the factory's int8 model agrees with fp32, its broken quantization does not), the
 * detector swapped with the cameras running (the longest wait between two detected frames of a
 * camera is measured over the swap and must stay under a second), a model that does not fit the
 * cameras refused, and a scene applied to one running camera: its counting line moves, the
 * next line events are at the new line, the open events of the rule it drops end, and the camera
 * never goes offline.
 */

const log = createLogger('pipeline-host-swap');
const CAMPUS = resolve(import.meta.dirname, '../../scenes/vtest-campus.yaml');
const WIDTH = 768;
const OLD_LINE_X = 0.25;
const NEW_LINE_X = 0.45;
const SHADOW: ShadowThresholds = { frames: 16, minAgreement: 0.9, maxLatencyRatio: 10, timeoutS: 180 };

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

/** where an event's subject stands, across the frame (0..1): its box's bottom centre */
const anchorX = (e: HostEvent) => (e.message.box![0]! + e.message.box![2]!) / 2 / WIDTH;

describe('pipeline host: shadow, model swap and scene apply on live cameras', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-swap-'));
    candidates = await makeCandidates();
    await writeScene(join(dir, 'campus.yaml'), OLD_LINE_X, false);
    await writeScene(join(dir, 'moved-line.yaml'), NEW_LINE_X, true);
    server = await RtspServer.create({ paths: ['cam-a', 'cam-b'] });
    host = new PipelineCameraHost(
      { ...DEFAULT_DETECTOR_SETTINGS, model: 'nanodet', sessions: 1, intraOpThreads: 1, shadowCpuShare: 0.5 },
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
      assert.equal(f.latencyRatio, Number((f.candidateLatencyMs / f.currentLatencyMs).toFixed(3)));
    }
    assert.ok(host.frameCounts('cam-a').detected > detected, 'the camera kept detecting');
    // the shadow ran on sessions of its own: the cameras' detector did not change or restart
    assert.equal(host.healthSample().detectorRestarts, before.detectorRestarts);
    assert.deepEqual(
      host.stats().map((c) => c.model?.name),
      ['nanodet', 'nanodet'],
    );
    // a shadow run that cannot gather its frames in time says so
    await assert.rejects(
      host.shadowModel(
        candidates.int8.dir,
        { ...SHADOW, frames: 10_000, timeoutS: 1 },
        new AbortController().signal,
      ),
      /shadow validation ran \d+ of 10000 frames before the time ran out \(1 s\)/,
    );
  });

  it('swaps the detector of both cameras with no gap of a second between detected frames', async () => {
    const ids = ['cam-a', 'cam-b'];
    const changes = new Map(ids.map((id) => [id, [] as number[]]));
    const last = new Map(ids.map((id) => [id, host.frameCounts(id).detected]));
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        for (const id of ids) {
          const n = host.frameCounts(id).detected;
          if (n !== last.get(id)) {
            last.set(id, n);
            changes.get(id)!.push(performance.now());
          }
        }
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
    for (const id of ids) {
      const times = changes.get(id)!;
      assert.ok(times.length > 10, `${id}: ${times.length} detections over the swap`);
      const gaps = times.slice(1).map((t, i) => t - times[i]!);
      const longest = Math.max(...gaps);
      log.warn({ camera: id, swapMs: Math.round(swapMs), longestGapMs: Math.round(longest) }, 'model swap');
      assert.ok(longest < 1000, `${id}: ${Math.round(longest)} ms without a detected frame`);
      assert.ok(times.at(-1)! > swapStarted + swapMs, `${id} detects after the swap`);
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
    await assert.rejects(
      host.shadowModel(resolveModelDir('centernet'), SHADOW, new AbortController().signal),
      /takes 512×512 RGB uint8 frames but/,
    );
    await assert.rejects(host.swapModel(join(dir, 'no-such-model')), /cannot read model descriptor/);
    assert.deepEqual(host.stats()[0]!.model, running);
  });

  it('moves a counting line on a running camera: its next line events are at the new line, the dropped rule ends its events', async () => {
    const online = statuses.length;
    // a person on the left stretch of road: an event of the rule the new scene drops is open
    const open = await eventually(
      async () => {
        const ended = new Set(events.filter((e) => e.message.phase === 'end').map((e) => e.message.id));
        return events.find(
          (e) =>
            e.camera === 'cam-a' &&
            e.message.rule === 'left-road' &&
            e.message.phase === 'new' &&
            !ended.has(e.message.id),
        );
      },
      90_000,
      'an open left-road event on cam-a',
    );
    const received = host.frameCounts('cam-a').received;
    const applied = events.length;
    await host.applyScene(['cam-a'], join(dir, 'moved-line.yaml'), 7);
    assert.deepEqual(
      host.stats().map((c) => [c.id, c.scene]),
      [
        ['cam-a', { name: 'campus-road', version: 7 }],
        ['cam-b', { name: 'campus-road', version: 0 }],
      ],
    );
    const end = events
      .slice(applied)
      .find((e) => e.message.id === open.message.id && e.message.phase === 'end');
    assert.ok(end, 'the open event of the dropped rule ended');
    assert.deepEqual(end.message.after, { reason: 'scene changed: rule left-road removed' });

    const crossing = (e: HostEvent) => e.message.rule === 'road-crossing' && e.message.phase === 'new';
    const lineEvents = await eventually(
      async () => {
        const found = events.slice(applied).filter((e) => e.camera === 'cam-a' && crossing(e));
        return found.length >= 2 ? found : undefined;
      },
      120_000,
      'two line crossings on cam-a after the scene was applied',
    );
    for (const e of lineEvents) {
      const x = anchorX(e);
      assert.ok(
        Math.abs(x - NEW_LINE_X) < Math.abs(x - OLD_LINE_X),
        `a crossing at x ${x.toFixed(3)} is nearer the old line (${OLD_LINE_X}) than the new (${NEW_LINE_X})`,
      );
    }
    assert.ok(
      !events
        .slice(applied)
        .some((e) => e.camera === 'cam-a' && e.message.rule === 'left-road' && e.message.phase !== 'end'),
      'the dropped rule raised nothing more',
    );
    // the camera kept its video: no status change, frames kept arriving
    assert.equal(statuses.length, online, JSON.stringify(statuses.slice(online)));
    assert.ok(host.frameCounts('cam-a').received > received);
    // cam-b still counts at the old line
    const other = events.slice(applied).filter((e) => e.camera === 'cam-b' && crossing(e));
    for (const e of other) assert.ok(Math.abs(anchorX(e) - OLD_LINE_X) < Math.abs(anchorX(e) - NEW_LINE_X));
  });

  it('refuses a scene naming a class the running model does not have, changing nothing', async () => {
    const file = join(dir, 'unknown-class.yaml');
    const scene = parse(await readFile(join(dir, 'moved-line.yaml'), 'utf8'));
    scene.rules[0].classes = ['unicorn'];
    await writeFile(file, stringify(scene));
    await assert.rejects(host.applyScene([], file, 8), /the model has no class "unicorn"/);
    await assert.rejects(host.applyScene(['cam-z'], file, 8), /no running camera "cam-z"/);
    assert.deepEqual(
      host.stats().map((c) => c.scene?.version),
      [7, 0],
    );
  });
});
