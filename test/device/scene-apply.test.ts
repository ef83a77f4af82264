import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import type { HostEvent } from '../../device/camera-host.ts';
import { eventually } from '../helpers/eventually.ts';
import {
  CAMPUS_LINE_X,
  type LiveCameraHost,
  startLiveCameraHost,
  writeCampusScene,
} from '../helpers/live-camera.ts';

/**
 * The scene side of OTA in the live pipeline host, on two live RTSP cameras
 * (scripts/rtsp-server.py looping vtest.avi) with the real detector: a scene applied to one
 * running camera moves its counting line — the next line events are at the new line, the open
 * events of the rule it drops end, and the camera never goes offline — while the other camera
 * keeps its scene; a scene naming a class the model lacks is refused.
 */

const WIDTH = 768;
const OLD_LINE_X = CAMPUS_LINE_X;
const NEW_LINE_X = 0.45;

let live: LiveCameraHost;

/** where an event's subject stands, across the frame (0..1): its box's bottom centre */
const anchorX = (e: HostEvent) => (e.message.box![0]! + e.message.box![2]!) / 2 / WIDTH;

describe('pipeline host: a scene applied to a running camera', () => {
  before(async () => {
    live = await startLiveCameraHost({ cameras: ['cam-a', 'cam-b'], shadowCpuShare: 0.5 });
    await writeCampusScene(join(live.dir, 'moved-line.yaml'), NEW_LINE_X, true);
  });

  after(async () => {
    await live?.close();
  });

  it('moves a counting line on a running camera: its next line events are at the new line, the dropped rule ends its events', async () => {
    const online = live.statuses.length;
    // a person on the left stretch of road: an event of the rule the new scene drops is open
    const open = await eventually(
      async () => {
        const ended = new Set(live.events.filter((e) => e.message.phase === 'end').map((e) => e.message.id));
        return live.events.find(
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
    const received = live.host.frameCounts('cam-a').received;
    const applied = live.events.length;
    await live.host.applyScene(['cam-a'], join(live.dir, 'moved-line.yaml'), 7);
    // what the camera emits from here on comes from frames observed under the new scene
    const tookOver = live.events.length;
    assert.deepEqual(
      live.host.stats().map((c) => [c.id, c.scene]),
      [
        ['cam-a', { name: 'campus-road', version: 7 }],
        ['cam-b', { name: 'campus-road', version: 0 }],
      ],
    );
    // every event of the dropped rule has ended: by itself on a frame observed before the scene
    // took over, or with the scene change as its reason (SceneEngine.reconfigure's property test
    // checks the reasons exactly)
    const ends = live.events.filter(
      (e) => e.camera === 'cam-a' && e.message.rule === 'left-road' && e.message.phase === 'end',
    );
    const ended = new Set(ends.map((e) => e.message.id));
    assert.ok(ended.has(open.message.id), 'the open event of the dropped rule ended');
    for (const e of live.events)
      if (e.camera === 'cam-a' && e.message.rule === 'left-road' && e.message.phase === 'new')
        assert.ok(ended.has(e.message.id), `event ${e.message.id} of the dropped rule is still open`);
    for (const e of ends.filter((x) => String(x.message.after.reason).startsWith('scene changed')))
      assert.equal(e.message.after.reason, 'scene changed: rule left-road removed');
    const crossing = (e: HostEvent) => e.message.rule === 'road-crossing' && e.message.phase === 'new';
    const lineEvents = await eventually(
      async () => {
        const found = live.events.slice(tookOver).filter((e) => e.camera === 'cam-a' && crossing(e));
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
      !live.events
        .slice(tookOver)
        .some((e) => e.camera === 'cam-a' && e.message.rule === 'left-road' && e.message.phase !== 'end'),
      'the dropped rule raised nothing more',
    );
    // the camera kept its video: no status change, frames kept arriving
    assert.equal(live.statuses.length, online, JSON.stringify(live.statuses.slice(online)));
    assert.ok(live.host.frameCounts('cam-a').received > received);
    // cam-b still counts at the old line
    const other = live.events.slice(applied).filter((e) => e.camera === 'cam-b' && crossing(e));
    for (const e of other) assert.ok(Math.abs(anchorX(e) - OLD_LINE_X) < Math.abs(anchorX(e) - NEW_LINE_X));
  });

  it('refuses a scene naming a class the running model does not have, changing nothing', async () => {
    const file = join(live.dir, 'unknown-class.yaml');
    const scene = parse(await readFile(join(live.dir, 'moved-line.yaml'), 'utf8'));
    scene.rules[0].classes = ['unicorn'];
    await writeFile(file, stringify(scene));
    await assert.rejects(live.host.applyScene([], file, 8), /the model has no class "unicorn"/);
    await assert.rejects(live.host.applyScene(['cam-z'], file, 8), /no running camera "cam-z"/);
    assert.deepEqual(
      live.host.stats().map((c) => c.scene?.version),
      [7, 0],
    );
  });
});
