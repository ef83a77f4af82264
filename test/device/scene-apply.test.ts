import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import { createLogger } from '../../common/logger.ts';
import type { HostEvent, HostStatus } from '../../device/camera-host.ts';
import { PipelineCameraHost } from '../../device/pipeline-host.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../inference/settings.ts';
import type { CameraSettings } from '../../pipelines/camera-settings.ts';
import { RtspServer } from '../../video/rtsp-test-server.ts';
import { eventually } from '../helpers/eventually.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

/**
 * The scene side of OTA in the live pipeline host, on two live RTSP cameras
 * (scripts/rtsp-server.py looping vtest.avi) with the real detector: a scene applied to one
 * running camera moves its counting line — the next line events are at the new line, the open
 * events of the rule it drops end, and the camera never goes offline — while the other camera
 * keeps its scene; a scene naming a class the model lacks is refused.
 */

const log = createLogger('pipeline-host-swap');
const CAMPUS = resolve(import.meta.dirname, '../../scenes/vtest-campus.yaml');
const WIDTH = 768;
const OLD_LINE_X = 0.25;
const NEW_LINE_X = 0.45;

let dir: string;
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

describe('pipeline host: a scene applied to a running camera', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-swap-'));
    await ensureCatalogModels();
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
    // what the camera emits from here on comes from frames observed under the new scene
    const tookOver = events.length;
    assert.deepEqual(
      host.stats().map((c) => [c.id, c.scene]),
      [
        ['cam-a', { name: 'campus-road', version: 7 }],
        ['cam-b', { name: 'campus-road', version: 0 }],
      ],
    );
    // every event of the dropped rule has ended: by itself on a frame observed before the scene
    // took over, or with the scene change as its reason (SceneEngine.reconfigure's property test
    // checks the reasons exactly)
    const ends = events.filter(
      (e) => e.camera === 'cam-a' && e.message.rule === 'left-road' && e.message.phase === 'end',
    );
    const ended = new Set(ends.map((e) => e.message.id));
    assert.ok(ended.has(open.message.id), 'the open event of the dropped rule ended');
    for (const e of events)
      if (e.camera === 'cam-a' && e.message.rule === 'left-road' && e.message.phase === 'new')
        assert.ok(ended.has(e.message.id), `event ${e.message.id} of the dropped rule is still open`);
    for (const e of ends.filter((x) => String(x.message.after.reason).startsWith('scene changed')))
      assert.equal(e.message.after.reason, 'scene changed: rule left-road removed');
    const crossing = (e: HostEvent) => e.message.rule === 'road-crossing' && e.message.phase === 'new';
    const lineEvents = await eventually(
      async () => {
        const found = events.slice(tookOver).filter((e) => e.camera === 'cam-a' && crossing(e));
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
        .slice(tookOver)
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
