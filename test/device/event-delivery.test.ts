/**
 * Frame → event stored, end to end on one clock: an agent in this process runs a live camera (the
 * sample video through GStreamer and the detector) against a real control plane (embedded broker,
 * SQLite), and times every event message from its frame reaching the pipeline to the control
 * plane's PUBACK, which comes once the event is committed to its database. The pipeline's stages
 * add up to its part, and the pipeline, spool write, publish and commit to the whole; /healthz
 * carries the recent figures.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SAMPLE_VIDEO } from '../../common/paths.ts';
import type { ControlPlane } from '../../control-plane/index.ts';
import { DeviceAgent, type EventDelivery } from '../../device/agent.ts';
import { startTestControlPlane } from '../control-plane/setup.ts';
import { writeAgentConfig } from '../helpers/device-setup.ts';
import { eventually } from '../helpers/eventually.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

const SCENE = resolve(import.meta.dirname, '../../scenes/vtest-campus.yaml');
const close = (a: number, b: number) => Math.abs(a - b) < 1e-6;

describe('event delivery timing', () => {
  let dir: string;
  let cp: ControlPlane;
  before(async () => {
    await ensureCatalogModels();
    dir = await mkdtemp(join(tmpdir(), 'argus-event-delivery-'));
    cp = await startTestControlPlane({ dir });
  });
  after(async () => {
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('adds up from the frame to the control plane commit for every event', async () => {
    await mkdir(join(dir, 'scenes'));
    await copyFile(SCENE, join(dir, 'scenes', 'cam-1.yaml'));
    const configFile = await writeAgentConfig(dir, {
      device: 'box-1',
      brokerUrl: cp.mqttUrl,
      controlPlaneUrl: cp.httpUrl,
      cameras: ['cam-1'],
      cameraUrls: { 'cam-1': SAMPLE_VIDEO },
      spool: { sync: 'full' },
      live: {
        detector: { model: 'nanodet', sessions: 1, intraOpThreads: 1, maxBatch: 1 },
        camera: { detectFps: 5 },
      },
    });
    const deliveries: EventDelivery[] = [];
    const agent = await DeviceAgent.start({ configFile, onEventDelivered: (d) => deliveries.push(d) });
    try {
      await eventually(
        async () => deliveries.filter((d) => d.pipeline.stages).length >= 3 || undefined,
        30_000,
        'three events of detected frames delivered',
      );
      for (const d of deliveries) {
        const where = `event ${d.id}/${d.seq}: ${JSON.stringify(d)}`;
        const parts = [d.pipeline.ms, d.spoolMs, d.publishMs, d.commitMs];
        for (const ms of parts) assert.ok(ms >= 0, where);
        assert.ok(d.commitMs > 0, `no time to the control plane and back: ${where}`);
        assert.ok(
          close(
            parts.reduce((s, ms) => s + ms, 0),
            d.latencyMs,
          ),
          where,
        );
        if (d.pipeline.stages) {
          const stages = Object.values(d.pipeline.stages);
          for (const ms of stages) assert.ok(ms >= 0, where);
          assert.ok(
            close(
              stages.reduce((s, ms) => s + ms, 0),
              d.pipeline.ms,
            ),
            where,
          );
          assert.ok(d.pipeline.stages.inference > 0, where);
        }
      }
      // acknowledged only once stored: every delivered event is in the control plane's database
      const stored = await cp.repository.sql.read<{ id: string; seq: number }>(
        'SELECT id, seq FROM events WHERE device = ?',
        ['box-1'],
      );
      const keys = new Set(stored.map((r) => `${r.id}/${r.seq}`));
      for (const d of deliveries)
        assert.ok(keys.has(`${d.id}/${d.seq}`), `event ${d.id}/${d.seq} not stored`);
      const health = agent.healthReport().eventDelivery;
      assert.ok(health && health.count >= deliveries.length, JSON.stringify(health));
      assert.ok(health.p99Ms.commit > 0 && health.latencyMs.p99 >= health.latencyMs.p50);
    } finally {
      await agent.stop();
    }
  });
});
