import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import ort from 'onnxruntime-node';
import { loadModel } from '../../inference/model-dir.ts';
import { type CatalogEntry, catalogEntry } from '../../models/catalog.ts';
import { encodeModel } from '../../models/onnx/codec.ts';
import { sourceFilePath } from '../../models/store.ts';
import { convertTfjsGraph } from '../../models/tfjs/converter.ts';
import { loadTfjsGraphModel } from '../../models/tfjs/graph-model.ts';
import { GROUND_TRUTH_FRAMES, readFrames } from '../helpers/frames.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

/**
 * The converted ONNX models against TensorFlow.js (wasm backend) on the same real frames: the
 * model that ships (uint8 input, normalisation folded into the graph) and the plain conversion.
 */

async function tfjsModel(entry: CatalogEntry): Promise<tf.GraphModel> {
  const jsonPath = sourceFilePath(entry.package, entry.files.modelJson);
  const json = JSON.parse(await readFile(jsonPath, 'utf8'));
  const weights = await Promise.all(
    entry.files.weights.map((w) => readFile(sourceFilePath(entry.package, w))),
  );
  const data = Buffer.concat(weights);
  return tf.loadGraphModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology,
      weightSpecs: json.weightsManifest.flatMap((g: { weights: unknown[] }) => g.weights),
      weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength),
      format: json.format,
    } as tf.io.ModelArtifacts),
  );
}

/** the float input the original graph expects, computed from the uint8 frame in JS */
function normalisedInput(entry: CatalogEntry, pixels: Uint8Array): { data: Float32Array; shape: number[] } {
  const { width: w, height: h, normalization: n } = entry.descriptor.input;
  const data = new Float32Array(w * h * 3);
  const nchw = entry.convert.graphLayout === 'NCHW';
  for (let i = 0; i < w * h; i++) {
    for (let c = 0; c < 3; c++) {
      data[nchw ? c * w * h + i : i * 3 + c] = (pixels[i * 3 + c]! - n.mean[c]!) / n.std[c]!;
    }
  }
  return { data, shape: nchw ? [1, 3, h, w] : [1, h, w, 3] };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

/** outputs holding class scores (probabilities): the parity bound of the issue applies to these */
const SCORE_OUTPUTS: Record<string, string[]> = {
  nanodet: ['Identity', 'Identity_1', 'Identity_2'],
  centernet: ['tower_0/keypoints'],
};

for (const name of ['nanodet', 'centernet']) {
  describe(`${name}: converted ONNX against tfjs-wasm on vtest.avi frames`, () => {
    const entry = catalogEntry(name)!;
    let reference: tf.GraphModel;
    let shipped: ort.InferenceSession;
    let plain: ort.InferenceSession;
    before(async () => {
      await ensureCatalogModels();
      await tf.setBackend('wasm');
      reference = await tfjsModel(entry);
      shipped = await ort.InferenceSession.create((await loadModel(name)).bytes);
      const graph = await loadTfjsGraphModel(sourceFilePath(entry.package, entry.files.modelJson));
      plain = await ort.InferenceSession.create(
        encodeModel(convertTfjsGraph(graph, { graphName: name, dynamicBatch: entry.convert.dynamicBatch })),
      );
    });

    for (const index of GROUND_TRUTH_FRAMES) {
      it(`frame ${index}: scores within 1e-4, every output close`, async () => {
        const { width, height, colorOrder } = entry.descriptor.input;
        const frame = (await readFrames([index], { width, height, format: colorOrder })).get(index)!;
        const { data, shape } = normalisedInput(entry, frame.model);
        const outputNames = reference.outputs.map((o) => o.name);
        const run = reference.execute(tf.tensor(data, shape), outputNames);
        const expected = Array.isArray(run) ? run : [run];
        const expectedData = await Promise.all(expected.map((t) => t.data() as Promise<Float32Array>));
        tf.dispose(expected);
        const fromShipped = await shipped.run({
          frames: new ort.Tensor('uint8', frame.model, [1, height, width, 3]),
        });
        const fromPlain = await plain.run({
          [entry.convert.graphInput]: new ort.Tensor('float32', data, shape),
        });
        outputNames.forEach((tfName, k) => {
          const onnxName = tfName.replace(/:0$/, '');
          const bound = SCORE_OUTPUTS[name]!.includes(onnxName) ? 1e-4 : 1e-2;
          const range = expectedData[k]!.reduce((m, v) => Math.max(m, Math.abs(v)), 1);
          for (const [label, session] of [
            ['shipped', fromShipped],
            ['plain', fromPlain],
          ] as const) {
            const diff = maxAbsDiff(session[onnxName]!.data as Float32Array, expectedData[k]!);
            assert.ok(
              diff <= bound * (bound === 1e-4 ? 1 : range),
              `${label} ${onnxName}: max abs diff ${diff} exceeds ${bound === 1e-4 ? bound : `${bound} × range ${range}`}`,
            );
          }
        });
      });
    }
  });
}
