import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type FrameMatch, meanAveragePrecision } from '../../inference/map.ts';
import {
  ARGUS_IR_VERSION,
  ARGUS_OPSET,
  attr,
  createNode,
  emptyGraph,
  type Model,
} from '../../models/onnx/ir.ts';
import { calibrateRanges } from '../../models/quant/calibrate.ts';
import {
  activationParams,
  biasFittingScales,
  quantizeBias,
  quantizeWeightsPerChannel,
} from '../../models/quant/qparams.ts';

describe('quantization parameters', () => {
  it('uint8 activations: asymmetric range that represents 0 exactly', () => {
    const p = activationParams({ min: -1, max: 3 }, 'uint8');
    assert.equal(p.scale, 4 / 255);
    assert.equal(p.zeroPoint, Math.round(1 / p.scale));
    const relu = activationParams({ min: 0.5, max: 6 }, 'uint8');
    assert.deepEqual([relu.zeroPoint, relu.scale], [0, 6 / 255]);
  });

  it('int8 activations: symmetric around 0', () => {
    assert.deepEqual(activationParams({ min: -2, max: 1 }, 'int8'), {
      type: 'int8',
      scale: 2 / 127,
      zeroPoint: 0,
    });
  });

  it('per-channel weights: one scale per output channel, error within half a step', () => {
    const weights = Float32Array.of(0.5, -1, 0.25, 0.001, -0.002, 0.0005);
    const q = quantizeWeightsPerChannel(weights, 2);
    assert.deepEqual([...q.scales], [Math.fround(1 / 127), Math.fround(0.002 / 127)]);
    weights.forEach((w, i) => {
      const scale = q.scales[Math.floor(i / 3)]!;
      assert.ok(Math.abs(q.values[i]! * scale - w) <= scale / 2 + 1e-9, `weight ${i}`);
    });
  });

  it('raises a channel’s weight scale so that a large bias still fits int32', () => {
    const weights = Float32Array.of(1e-9, -1e-9, 1, -1);
    const bias = Float32Array.of(100, 0.5);
    const inputScale = 1e-3;
    const naive = quantizeWeightsPerChannel(weights, 2);
    assert.ok(Math.abs(bias[0]! / (inputScale * naive.scales[0]!)) > 2 ** 31, 'the naive scale overflows');
    const q = quantizeWeightsPerChannel(weights, 2, biasFittingScales(bias, inputScale, 2));
    const qb = quantizeBias(bias, inputScale, q.scales);
    bias.forEach((b, c) => {
      assert.ok(Math.abs(qb.values[c]!) <= 2 ** 31 - 1, `bias ${c} fits`);
      assert.ok(
        Math.abs(qb.values[c]! * qb.scales[c]! - b) < 1e-6 * Math.abs(b) + qb.scales[c]!,
        `bias ${c}`,
      );
    });
    assert.equal(q.scales[1], naive.scales[1], 'channels whose bias fits keep their scale');
  });
});

describe('mAP@0.5', () => {
  const truth = (x: number) => ({ label: 'person', box: [x, 0, x + 10, 20] as const });
  const found = (x: number, score: number, label = 'person') => ({
    label,
    score,
    box: [x, 0, x + 10, 20] as const,
  });

  it('is 1 when every truth is found and nothing else ranks above', () => {
    const frames: FrameMatch[] = [{ truth: [truth(0), truth(50)], found: [found(0, 0.9), found(50, 0.8)] }];
    assert.equal(meanAveragePrecision(frames, ['person']).map, 1);
  });

  it('counts a missed truth as lost recall and a top-ranked false positive as lost precision', () => {
    const missed: FrameMatch[] = [{ truth: [truth(0), truth(50)], found: [found(0, 0.9)] }];
    assert.equal(meanAveragePrecision(missed, ['person']).map, 0.5);
    const falseFirst: FrameMatch[] = [{ truth: [truth(0)], found: [found(200, 0.9), found(0, 0.5)] }];
    assert.equal(meanAveragePrecision(falseFirst, ['person']).map, 0.5);
  });

  it('matches each truth once, needs IoU ≥ 0.5 and the same class', () => {
    const frames: FrameMatch[] = [
      { truth: [truth(0)], found: [found(0, 0.9), found(0, 0.8), found(6, 0.7), found(0, 0.95, 'car')] },
    ];
    const result = meanAveragePrecision(frames, ['person', 'car']);
    const person = result.perClass.find((c) => c.label === 'person')!;
    assert.deepEqual([person.ap, person.truePositives, person.detections], [1, 1, 3]);
    assert.equal(result.perClass.find((c) => c.label === 'car')!.ap, undefined);
    assert.equal(result.map, 1);
  });

  it('leaves classes with fewer truths than minTruths out of the mean', () => {
    const frames: FrameMatch[] = [
      { truth: [truth(0), { label: 'car', box: [100, 0, 110, 20] }], found: [found(0, 0.9)] },
    ];
    assert.equal(
      meanAveragePrecision(frames, ['person', 'car'], { iouThreshold: 0.5, minTruths: 1 }).map,
      0.5,
    );
    const big = meanAveragePrecision(frames, ['person', 'car'], { iouThreshold: 0.5, minTruths: 2 });
    assert.ok(Number.isNaN(big.map));
  });
});

describe('calibration', () => {
  /** frame (uint8 NHWC) → Cast → "pixels" (float): a graph whose activation is the frame itself */
  const model: Model = {
    irVersion: ARGUS_IR_VERSION,
    opsetImports: [{ domain: '', version: ARGUS_OPSET }],
    producerName: 'test',
    producerVersion: '1',
    metadata: {},
    graph: {
      ...emptyGraph('cast'),
      inputs: [{ name: 'frame', type: 'uint8', shape: [1, 10, 10, 3] }],
      outputs: [{ name: 'pixels', type: 'float32', shape: [1, 10, 10, 3] }],
      nodes: [createNode('Cast', ['frame'], ['pixels'], 'cast', { to: attr.int(1) })],
    },
  };
  const input = { name: 'frame', dims: [1, 10, 10, 3] };
  // 300 values: 299 spread over 10..109, one outlier at 250
  const frame = Uint8Array.from({ length: 300 }, (_, i) => (i === 7 ? 250 : 10 + (i % 100)));
  const frames = [frame, frame.map((v) => (v === 250 ? 100 : v))];

  it('minmax keeps the extremes of all frames', async () => {
    const ranges = await calibrateRanges(model, ['pixels'], frames, {
      method: 'minmax',
      percentile: 100,
      input,
    });
    assert.deepEqual(ranges.get('pixels'), { min: 10, max: 250 });
  });

  it('percentile clips a rare outlier and reports progress over both passes', async () => {
    const progress: number[] = [];
    const ranges = await calibrateRanges(model, ['pixels'], frames, {
      method: 'percentile',
      percentile: 99.5,
      input,
      onProgress: (done, total) => progress.push(done / total),
    });
    const r = ranges.get('pixels')!;
    assert.ok(r.min >= 10 && r.min < 11, `min ${r.min}`);
    assert.ok(r.max > 108 && r.max < 111, `max ${r.max}`);
    assert.deepEqual(progress, [0.25, 0.5, 0.75, 1]);
  });

  it('stops when interrupted', async () => {
    const controller = new AbortController();
    controller.abort(new Error('interrupted'));
    await assert.rejects(
      calibrateRanges(model, ['pixels'], frames, {
        method: 'minmax',
        percentile: 100,
        input,
        signal: controller.signal,
      }),
      /interrupted/,
    );
  });
});
