import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ArgusError } from '../../common/errors.ts';
import { SAMPLE_VIDEO } from '../../common/paths.ts';
import { Detector } from '../../inference/detector.ts';
import { type LoadedModel, loadModel } from '../../inference/model-dir.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../inference/settings.ts';
import { buildBundle } from '../../models/bundle/build.ts';
import { readLineage, writeDerivedModel } from '../../models/bundle/lineage.ts';
import { evaluateCandidate, measureAgreement, reportLatency } from '../../models/evaluate/evaluate.ts';
import { checkGate, DEFAULT_GATE } from '../../models/evaluate/gate.ts';
import type { EvaluationReport } from '../../models/evaluate/report.ts';
import { decodeModel } from '../../models/onnx/codec.ts';
import { quantizeConfig } from '../../models/quant/config.ts';
import { parseFrameRange } from '../../models/quant/frames.ts';
import { quantizeModel } from '../../models/quant/quantize.ts';
import { withWrongActivationScales } from '../helpers/candidates.ts';
import { GROUND_TRUTH_FRAMES } from '../helpers/frames.ts';
import { assertFindsEveryPerson } from '../helpers/ground-truth.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

/** few calibration frames and a small held-out set keep the file fast; both are disjoint */
const CALIBRATION_FRAMES = '10-370/40';
const EVALUATION_FRAMES = '405-765/30';

function evaluate(reference: LoadedModel, candidate: LoadedModel): Promise<EvaluationReport> {
  return evaluateCandidate(reference, candidate, {
    frames: parseFrameRange(EVALUATION_FRAMES),
    threads: 1,
    latencyRuns: 3,
    candidateScoreThreshold: 0.05,
    minTruths: 10,
  });
}

describe('static int8 quantization of NanoDet-g', () => {
  let dir: string;
  let fp32: LoadedModel;
  let int8: LoadedModel;
  let detector: Detector;

  before(async () => {
    await ensureCatalogModels();
    dir = await mkdtemp(join(tmpdir(), 'argus-quant-'));
    fp32 = await loadModel('nanodet');
    const derived = await quantizeModel(fp32, {
      config: quantizeConfig({ calibrationFrames: CALIBRATION_FRAMES }),
      video: SAMPLE_VIDEO,
    });
    await writeDerivedModel(join(dir, 'nanodet-int8'), derived);
    int8 = await loadModel(join(dir, 'nanodet-int8'));
    detector = await Detector.fromModel(int8, { ...DEFAULT_DETECTOR_SETTINGS, intraOpThreads: 1 });
  });

  after(async () => {
    await detector?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('stores Conv weights as per-channel int8 and records its lineage', async () => {
    const graph = decodeModel(int8.bytes).graph;
    const convs = graph.nodes.filter((n) => n.opType === 'Conv');
    const producers = new Map(graph.nodes.flatMap((n) => n.outputs.map((o) => [o, n] as const)));
    const initializers = new Map(graph.initializers.map((t) => [t.name, t]));
    for (const conv of convs) {
      const dq = producers.get(conv.inputs[1]!);
      assert.equal(dq?.opType, 'DequantizeLinear', `weights of ${conv.name} are dequantized`);
      const weights = initializers.get(dq.inputs[0]!)!;
      const scales = initializers.get(dq.inputs[1]!)!;
      assert.equal(weights.type, 'int8');
      assert.equal(scales.data.length, weights.dims[0], `${conv.name}: one scale per output channel`);
    }
    assert.ok(int8.bytes.length < fp32.bytes.length * 0.35, `${int8.bytes.length} bytes`);
    const lineage = await readLineage(int8.dir);
    assert.deepEqual(lineage.derivedFrom, {
      name: 'nanodet',
      version: fp32.descriptor.version,
      sha256: fp32.descriptor.sha256,
    });
    const step = lineage.steps[0];
    assert.equal(step?.kind, 'quantize');
    assert.equal(
      step.kind === 'quantize' && 'step' in step.calibrationFrames && step.calibrationFrames.step,
      40,
    );
  });

  for (const index of GROUND_TRUTH_FRAMES) {
    it(`finds every person of frame ${index} at IoU ≥ 0.5`, () => assertFindsEveryPerson(detector, index));
  }

  it('runs on inputs smaller than its own size, like the model it was made from', async () => {
    assert.equal(int8.descriptor.input.sizeStep, 32);
    await assertFindsEveryPerson(detector, 300, { top: 96, height: 256 });
  });

  it('agrees with fp32 on held-out frames (mAP@0.5 ≥ 0.97)', async () => {
    const report = await evaluate(fp32, int8);
    const person = report.perClass.find((c) => c.label === 'person')!;
    assert.ok(person.counted && person.truths >= 50, `${person.truths} reference persons`);
    assert.ok(report.map50 >= 0.97, `mAP@0.5 ${report.map50.toFixed(3)}`);
    assert.deepEqual(
      checkGate(report, { ...DEFAULT_GATE, maxLatencyRatio: Number.POSITIVE_INFINITY }).failures,
      [],
    );
  });

  it('reports latency at several thread counts from one agreement', async () => {
    const agreement = await measureAgreement(fp32, int8, {
      frames: parseFrameRange(EVALUATION_FRAMES),
      threads: 2,
      candidateScoreThreshold: 0.05,
      minTruths: 10,
    });
    const reports: EvaluationReport[] = [];
    for (const threads of [1, 2]) reports.push(await reportLatency(agreement, { threads, latencyRuns: 3 }));
    assert.deepEqual(
      reports.map((r) => [r.latency.threads, r.map50, r.frameCount]),
      [
        [1, agreement.result.map, agreement.frames.length],
        [2, agreement.result.map, agreement.frames.length],
      ],
    );
  });

  it('refuses to evaluate on frames the model was calibrated on', async () => {
    await assert.rejects(
      evaluateCandidate(fp32, int8, {
        frames: parseFrameRange('50-90/40'),
        threads: 1,
        latencyRuns: 1,
        candidateScoreThreshold: 0.05,
        minTruths: 10,
      }),
      /include 2 frame\(s\) nanodet-int8 was calibrated on \(10-370\/40\), e\.g\. frame 50/,
    );
  });

  it('gate rejects a quantization with wrong activation scales, saying by how much', async () => {
    await writeDerivedModel(join(dir, 'broken'), await withWrongActivationScales(int8));
    const broken = await loadModel(join(dir, 'broken'));
    const report = await evaluate(fp32, broken);
    assert.ok(report.map50 < 0.5, `broken model still agrees: mAP@0.5 ${report.map50.toFixed(3)}`);
    const verdict = checkGate(report, DEFAULT_GATE);
    assert.equal(verdict.passed, false);
    const deficit = (DEFAULT_GATE.minMap50 - report.map50).toFixed(3);
    assert.ok(
      verdict.failures.includes(
        `mAP@0.5 ${report.map50.toFixed(3)} is ${deficit} below the gate's ${DEFAULT_GATE.minMap50.toFixed(3)}`,
      ),
      verdict.failures.join('; '),
    );
    await assert.rejects(
      buildBundle({
        modelDir: broken.dir,
        out: join(dir, 'broken.argus-model'),
        version: 1,
        evaluations: [report],
        gate: DEFAULT_GATE,
        expiresInDays: 30,
      }),
      (err: unknown) =>
        err instanceof ArgusError &&
        err.message.includes('does not pass the gate') &&
        err.message.includes(`is ${deficit} below`),
    );
  });
});
