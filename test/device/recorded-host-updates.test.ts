import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../../common/logger.ts';
import type { HostEvent } from '../../device/camera-host.ts';
import { RecordedEventsHost } from '../../device/recorded-host.ts';
import { resolveModelDir } from '../../inference/model-dir.ts';
import { recordedCamera as camera, RECORDING } from '../helpers/device-setup.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

/**
 * The recorded-events host (no video, no detector) under the updater's calls: shadow validation is
 * refused with a reason the updater can report, a model swap checks the model directory and changes
 * the model its telemetry reports, a scene apply validates the scene and changes the scene its
 * cameras report; health figures count the replayed event messages and no detector work.
 */

const log = createLogger('recorded-host-updates');
const CAMPUS = resolve(import.meta.dirname, '../../scenes/vtest-campus.yaml');
const ONE_WAY = resolve(import.meta.dirname, '../../scenes/vtest-one-way.yaml');

describe('recorded-events host: what the updater asks of it', () => {
  let dir: string;
  let host: RecordedEventsHost;
  const events: HostEvent[] = [];
  before(async () => {
    await ensureCatalogModels();
    dir = await mkdtemp(join(tmpdir(), 'argus-recorded-updates-'));
    await copyFile(CAMPUS, join(dir, 'scene.yaml'));
    host = new RecordedEventsHost({ events: RECORDING, eventsPerSecond: 50, loop: true }, log);
    host.onEvent((e) => events.push(e));
    await host.start([camera('a'), camera('b')], dir);
  });
  after(async () => {
    await host?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('reports the scene of its config and no model, and counts the event messages it replays', async () => {
    assert.deepEqual(
      host.stats().map((c) => [c.id, c.model, c.scene]),
      [
        ['a', undefined, { name: 'campus-road', version: 0 }],
        ['b', undefined, { name: 'campus-road', version: 0 }],
      ],
    );
    await sleep(300);
    const sample = host.healthSample();
    assert.equal(sample.events, events.length);
    assert.ok(sample.events > 0);
    assert.deepEqual(
      { ...sample, events: 0 },
      { detectFps: 0, detectLatencyMs: 0, detectorRestarts: 0, events: 0 },
    );
  });

  it('refuses shadow validation, saying there is no detector on live frames', async () => {
    await assert.rejects(
      host.shadowModel(
        resolveModelDir('nanodet'),
        { frames: 10, minAgreement: 0.9, maxLatencyRatio: 2, timeoutS: 60 },
        new AbortController().signal,
      ),
      /replays recorded events and runs no detector on live frames: a model cannot be validated in shadow here/,
    );
  });

  it('swaps to a model directory it can load and reports it; refuses one it cannot', async () => {
    await host.swapModel(resolveModelDir('centernet'));
    assert.deepEqual(
      host.stats().map((c) => c.model?.name),
      ['centernet', 'centernet'],
    );
    await assert.rejects(host.swapModel(join(dir, 'no-model-here')), /is not installed/);
    assert.equal(host.stats()[0]!.model?.name, 'centernet');
  });

  it('applies a scene to the cameras named, validated first, and reports its version', async () => {
    await host.applyScene(['b'], ONE_WAY, 3);
    assert.deepEqual(
      host.stats().map((c) => c.scene),
      [
        { name: 'campus-road', version: 0 },
        { name: 'campus-one-way', version: 3 },
      ],
    );
    await assert.rejects(host.applyScene(['nope'], ONE_WAY, 4), /no camera "nope" on this device/);
    const bad = join(dir, 'bad-scene.yaml');
    await writeFile(bad, 'name: x\nrules: []\n');
    await assert.rejects(host.applyScene([], bad, 4), /scene .*bad-scene\.yaml is invalid/);
    await host.applyScene([], ONE_WAY, 5);
    assert.deepEqual(
      host.stats().map((c) => c.scene?.version),
      [5, 5],
    );
  });
});
