import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import ort from 'onnxruntime-node';
import { modelsQuantize } from '../../cli/commands/model-factory.ts';
import { sha256Hex } from '../../common/hash.ts';
import { SAMPLE_VIDEO } from '../../common/paths.ts';
import type { ModelDescriptor } from '../../inference/descriptor.ts';
import { type LoadedModel, loadModel } from '../../inference/model-dir.ts';
import { writeDerivedModel } from '../../models/bundle/lineage.ts';
import { encodeModel } from '../../models/onnx/codec.ts';
import {
  ARGUS_IR_VERSION,
  ARGUS_OPSET,
  attr,
  createNode,
  createTensor,
  float32Tensor,
  type Graph,
  int64Tensor,
} from '../../models/onnx/ir.ts';
import { quantizeConfig } from '../../models/quant/config.ts';
import { quantizableNodes, quantizeModel } from '../../models/quant/quantize.ts';

const SIZE = 8;

/** deterministic small weights in [-0.5, 0.5) */
function weights(count: number, seed: number): number[] {
  return Array.from({ length: count }, (_, i) => (((i * 37 + seed * 11) % 64) - 32) / 64);
}

/**
 * uint8 NHWC frame → Transpose → Cast → Conv "conv_dq" (weights from a DequantizeLinear of int8)
 * → Relu → Conv "conv_const" (weights from a Constant → Reshape chain) → Conv "conv_init" (weights
 * and bias initializers) → output
 */
function computedWeightsGraph(): Graph {
  return {
    name: 'computed-weights',
    inputs: [{ name: 'frames', type: 'uint8', shape: [1, SIZE, SIZE, 3] }],
    outputs: [{ name: 'scores', type: 'float32', shape: [1, 2, SIZE, SIZE] }],
    valueInfo: [],
    initializers: [
      createTensor(
        'w1_int8',
        'int8',
        [4, 3, 3, 3],
        Int8Array.from(weights(108, 1), (v) => v * 64),
      ),
      float32Tensor('w1_scale', [], [1 / 2048]),
      createTensor('w1_zero_point', 'int8', [], Int8Array.of(0)),
      int64Tensor('w2_shape', [4], [4, 4, 1, 1]),
      float32Tensor('w3', [2, 4, 1, 1], weights(8, 3)),
      float32Tensor('b3', [2], [0.1, -0.1]),
    ],
    nodes: [
      createNode('Transpose', ['frames'], ['frames_nchw'], 'to_nchw', { perm: attr.ints([0, 3, 1, 2]) }),
      createNode('Cast', ['frames_nchw'], ['x'], 'to_float', { to: attr.int(1) }),
      createNode('DequantizeLinear', ['w1_int8', 'w1_scale', 'w1_zero_point'], ['w1'], 'w1_dequantize'),
      createNode('Conv', ['x', 'w1'], ['c1'], 'conv_dq', { pads: attr.ints([1, 1, 1, 1]) }),
      createNode('Relu', ['c1'], ['r1'], 'relu'),
      createNode('Constant', [], ['w2_flat'], 'w2_constant', {
        value: attr.tensor(float32Tensor('w2_value', [16], weights(16, 2))),
      }),
      createNode('Reshape', ['w2_flat', 'w2_shape'], ['w2'], 'w2_reshape'),
      createNode('Conv', ['r1', 'w2'], ['c2'], 'conv_const'),
      createNode('Conv', ['c2', 'w3', 'b3'], ['scores'], 'conv_init'),
    ],
  };
}

function descriptorFor(bytes: Uint8Array): ModelDescriptor {
  return {
    schemaVersion: 1,
    name: 'computed-weights',
    version: 1,
    task: 'detection',
    file: 'model.onnx',
    sha256: sha256Hex(bytes),
    input: {
      name: 'frames',
      layout: 'NHWC',
      dtype: 'uint8',
      width: SIZE,
      height: SIZE,
      colorOrder: 'RGB',
      resize: 'stretch',
      normalization: { mean: [0, 0, 0], std: [1, 1, 1], appliedIn: 'graph' },
      batch: 1,
    },
    decoder: { kind: 'in-graph', output: 'scores', coordinates: 'input-pixels' },
    labels: ['thing'],
    thresholds: { score: 0.5, iou: 0.5, maxDetections: 10 },
    source: { origin: 'test', upstream: 'test', license: 'none' },
  };
}

describe('quantizing a model whose Conv weights are computed', () => {
  let dir: string;
  let model: LoadedModel;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-computed-weights-'));
    const bytes = encodeModel({
      irVersion: ARGUS_IR_VERSION,
      opsetImports: [{ domain: '', version: ARGUS_OPSET }],
      producerName: 'argus-test',
      producerVersion: '0',
      graph: computedWeightsGraph(),
      metadata: {},
    });
    await writeDerivedModel(join(dir, 'computed-weights'), {
      bytes,
      descriptor: descriptorFor(bytes),
      lineage: { steps: [] },
    });
    model = await loadModel(join(dir, 'computed-weights'));
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('lists every quantizable node, marking the Convs with computed weights', () => {
    assert.deepEqual(quantizableNodes(model), [
      { name: 'conv_dq', opType: 'Conv', computedWeights: true },
      { name: 'relu', opType: 'Relu', computedWeights: false },
      { name: 'conv_const', opType: 'Conv', computedWeights: true },
      { name: 'conv_init', opType: 'Conv', computedWeights: false },
    ]);
  });

  it('argus models quantize --list-nodes prints them', async () => {
    let out = '';
    const stdout = new Writable({
      write(chunk, _encoding, done) {
        out += String(chunk);
        done();
      },
    });
    const code = await modelsQuantize.run([model.dir, '--list-nodes'], {
      signal: new AbortController().signal,
      stdout,
    });
    assert.equal(code, 0);
    assert.deepEqual(out.trimEnd().split('\n'), [
      'Conv               conv_dq  (computed weights: cannot be int8; keep it in float)',
      'Relu               relu',
      'Conv               conv_const  (computed weights: cannot be int8; keep it in float)',
      'Conv               conv_init',
    ]);
  });

  it('refuses to quantize them, naming each, and quantizes the rest when they are kept in float', async () => {
    const calibration = { calibrationFrames: '10-30/10', activations: { calibration: 'minmax' } };
    await assert.rejects(
      quantizeModel(model, { config: quantizeConfig(calibration), video: SAMPLE_VIDEO }),
      (err: Error & { hint?: string }) =>
        /Conv "conv_dq", "conv_const" have computed weights/.test(err.message) &&
        /keepFloat\.nodes/.test(err.hint ?? ''),
    );
    const derived = await quantizeModel(model, {
      config: quantizeConfig({ ...calibration, keepFloat: { nodes: ['conv_dq', 'conv_const'] } }),
      video: SAMPLE_VIDEO,
    });
    const step = derived.lineage.steps.at(-1);
    assert.equal(step?.kind === 'quantize' && step.quantizedNodes, 2, 'relu and conv_init');

    const session = await ort.InferenceSession.create(derived.bytes);
    try {
      const frame = new ort.Tensor('uint8', new Uint8Array(SIZE * SIZE * 3).fill(90), [1, SIZE, SIZE, 3]);
      const { scores } = await session.run({ frames: frame });
      assert.ok((scores!.data as Float32Array).every(Number.isFinite));
    } finally {
      await session.release();
    }
  });
});
