import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import ort from 'onnxruntime-node';
import { SAMPLE_VIDEO } from '../../common/paths.ts';
import { type LoadedModel, loadModel } from '../../inference/model-dir.ts';
import { decodeModel } from '../../models/onnx/codec.ts';
import { loadQuantizeConfig, quantizeConfig } from '../../models/quant/config.ts';
import { quantizableNodes, quantizeModel } from '../../models/quant/quantize.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

describe('quantization config', () => {
  let dir: string;
  let fp32: LoadedModel;

  before(async () => {
    await ensureCatalogModels();
    dir = await mkdtemp(join(tmpdir(), 'argus-quant-config-'));
    fp32 = await loadModel('nanodet');
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('keeps the output heads in float when asked, and the result runs', async () => {
    const derived = await quantizeModel(fp32, {
      config: quantizeConfig({
        calibrationFrames: '10-370/120',
        activations: { calibration: 'minmax' },
        keepFloat: { outputHeads: true },
      }),
      video: SAMPLE_VIDEO,
    });
    const step = derived.lineage.steps.at(-1);
    assert.equal(step?.kind, 'quantize');
    if (step?.kind !== 'quantize') return;
    const graph = decodeModel(derived.bytes).graph;
    const floatWeights = new Set(
      graph.initializers.filter((t) => t.type === 'float32' && t.dims.length === 4).map((t) => t.name),
    );
    const floatConvs = graph.nodes.filter((n) => n.opType === 'Conv' && floatWeights.has(n.inputs[1]!));
    assert.equal(floatConvs.length, 3, 'one head Conv per stride stays float');
    for (const conv of floatConvs) assert.ok(step.keptFloat.includes(conv.name), conv.name);
    assert.equal(
      step.quantizedNodes,
      quantizableNodes(fp32).length - 3,
      'every other quantizable node is quantized',
    );

    const session = await ort.InferenceSession.create(derived.bytes);
    try {
      const { height, width, name } = fp32.descriptor.input;
      const frame = new ort.Tensor('uint8', new Uint8Array(height * width * 3).fill(90), [
        1,
        height,
        width,
        3,
      ]);
      const out = await session.run({ [name]: frame });
      for (const tensor of Object.values(out)) {
        assert.ok((tensor.data as Float32Array).every(Number.isFinite));
      }
    } finally {
      await session.release();
    }
  });

  it('refuses a keepFloat pattern that matches no node, pointing at --list-nodes', async () => {
    await assert.rejects(
      quantizeModel(fp32, {
        config: quantizeConfig({ keepFloat: { nodes: ['no-such-node*'] } }),
        video: SAMPLE_VIDEO,
      }),
      (err: Error & { hint?: string }) =>
        /"no-such-node\*" matches no node/.test(err.message) && /--list-nodes/.test(err.hint ?? ''),
    );
  });

  it('reports a config file’s mistakes with their line numbers', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(file, 'activations:\n  calibration: entropy\nweights:\n  perChanel: false\n');
    await assert.rejects(loadQuantizeConfig(file), (err: Error) => {
      assert.match(err.message, new RegExp(`${file}:2:16: activations\\.calibration: `));
      assert.match(err.message, new RegExp(`${file}:4:3: weights\\.perChanel: unknown key "perChanel"`));
      return true;
    });
  });
});
