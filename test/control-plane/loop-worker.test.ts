import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { createLogger } from '../../common/logger.ts';
import { SAMPLE_VIDEO } from '../../common/paths.ts';
import { ArtifactRegistry } from '../../control-plane/artifacts/registry.ts';
import { HarvestedFrames } from '../../control-plane/harvest/frames.ts';
import { openRepository } from '../../control-plane/index.ts';
import { LoopRunStore } from '../../control-plane/loop/store.ts';
import { type LoopRunner, LoopWorker } from '../../control-plane/loop/worker.ts';
import type { Repository } from '../../control-plane/storage/repository.ts';
import { generateSigningKey, trustPublicKey } from '../../models/bundle/keys.ts';
import { runLoop } from '../../models/loop/loop.ts';
import { readVideoImages } from '../../models/teacher/annotated.ts';
import { vtestAnnotatedPersons } from '../helpers/annotated.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

/**
 * The loop as a control-plane job on a small site (10 frames of vtest.avi harvested by a box of
 * site `campus`), with the real loop and a one-member teacher to keep it short: the worker is
 * interrupted in the teacher step, the run goes back to the queue with nothing in the registry;
 * the next worker takes it on, the loop resumes from the run's work directory, and the run ends
 * with a registered candidate (or, refused by the gate, with none), never a partial one.
 */

const INDICES = [0, 60, 120, 180, 240, 300, 520, 600, 660, 720];
const BASE = Date.parse('2026-12-01T08:00:00Z');

describe('the loop worker', () => {
  let dir: string;
  let repo: Repository;
  let registry: ArtifactRegistry;
  let harvest: HarvestedFrames;
  let keyPath: string;

  before(async () => {
    await ensureCatalogModels();
    dir = await mkdtemp(join(tmpdir(), 'argus-loop-worker-'));
    repo = await openRepository({
      kind: 'sqlite',
      sqlite: { path: join(dir, 'argus.db'), synchronous: 'normal' },
    });
    const key = await generateSigningKey('loop-worker-test', join(dir, 'keys'));
    await trustPublicKey(key.publicKeyPath, join(dir, 'keys', 'trusted'));
    keyPath = key.privateKeyPath;
    registry = new ArtifactRegistry({
      sql: repo.sql,
      settings: {
        dir: join(dir, 'artifacts'),
        keyring: join(dir, 'keys', 'trusted'),
        maxUploadBytes: 64 << 20,
        uploadsAtOnce: 2,
        downloadsPerDevice: 2,
        downloads: 10,
      },
      references: { assignedTo: async () => false, referenced: async () => new Set() },
    });
    harvest = new HarvestedFrames(repo.sql, registry.blobs);
    await repo.sql.write([
      { sql: "INSERT INTO device_labels (device, name, value) VALUES ('box-1', 'site', 'campus')" },
    ]);
    const images = await readVideoImages(SAMPLE_VIDEO, INDICES, { width: 768, height: 576 });
    for (const i of INDICES) {
      const img = images.get(i)!;
      const jpeg = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
        .jpeg({ quality: 85 })
        .toBuffer();
      const { outcome } = await harvest.accept(
        'box-1',
        `frame-${String(i).padStart(4, '0')}`,
        {
          camera: 'cam-1',
          capturedAt: new Date(BASE + i * 100).toISOString(),
          reasons: 'uncertain',
          model: 'nanodet',
          modelVersion: 1,
        },
        jpeg,
      );
      assert.equal(outcome, 'created');
    }
  });

  after(async () => {
    await repo?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('an interrupted run is queued again with nothing in the registry, resumes, and registers only a whole candidate', async () => {
    const annotated = await vtestAnnotatedPersons([0, 300, 600]);
    // the loop's own progress as it happens: the worker's reports come later (at most one per
    // 500 ms, each after the database recorded it), too late to interrupt a step that runs fast
    let watch: ((step: string, fraction: number) => void) | undefined;
    const runner: LoopRunner = (o) =>
      runLoop({
        ...o,
        onProgress: (step, fraction, message) => {
          watch?.(step, fraction);
          o.onProgress?.(step, fraction, message);
        },
        teacher: {
          members: [{ model: 'nanodet', input: { width: 768, height: 576 }, flip: false }],
          scoreThreshold: 0.4,
        },
        annotated,
        adapt: { epochs: 2 },
        calibrationFrames: 4,
        threads: 2,
      });
    const runs = new LoopRunStore(repo.sql);
    const worker = (holder: string, onProgress?: (step: string, fraction: number) => void) =>
      new LoopWorker({
        runs,
        harvest,
        registry,
        runner,
        dir: join(dir, 'loop'),
        holder,
        signingKey: keyPath,
        checkMs: 200,
        log: createLogger('test-loop-worker'),
        ...(onProgress ? { onProgress: (_run, step, fraction) => onProgress(step, fraction) } : {}),
      });
    const run = await runs.create('campus', 'tests');
    const interrupt = new AbortController();
    watch = (step, fraction) => {
      if (step === 'teacher' && fraction > 0.2) interrupt.abort();
    };
    const first = await worker('worker-a').runNext(() => true, interrupt.signal);
    watch = undefined;
    assert.equal(first?.state, 'queued', `interrupted: ${JSON.stringify(first)}`);
    assert.equal(first?.step, 'teacher');
    assert.deepEqual((await registry.list({ limit: 10 })).artifacts, [], 'nothing registered');
    assert.deepEqual((await readdir(join(dir, 'loop', run.id))).sort(), ['collect', 'state.json']);

    const steps: string[] = [];
    const ended = await worker('worker-b', (step, fraction) => {
      if (fraction === 0 && steps.at(-1) !== step) steps.push(step);
    }).runNext(() => true);
    assert.deepEqual(steps, ['teacher', 'adapt', 'quantize', 'gate', 'sign']);
    const artifacts = (await registry.list({ limit: 10 })).artifacts;
    if (ended?.state === 'succeeded') {
      assert.equal(ended.passed, true);
      assert.deepEqual(
        artifacts.map((a) => a.id),
        [ended.artifact],
      );
    } else {
      assert.deepEqual(
        { state: ended?.state, passed: ended?.passed, artifacts },
        { state: 'failed', passed: false, artifacts: [] },
        `the run ended ${JSON.stringify(ended?.reason)}`,
      );
    }
    assert.deepEqual(
      (await readdir(join(dir, 'artifacts', 'staging')).catch(() => [])).filter((f) =>
        f.endsWith('.partial'),
      ),
      [],
      'no staged upload left',
    );
  });
});
