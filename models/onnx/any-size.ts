import ort from 'onnxruntime-node';
import { ArgusError } from '../../common/errors.ts';
import { encodeModel } from './codec.ts';
import type { Dim, Model } from './ir.ts';

const HEIGHT_AXIS = 1;
const WIDTH_AXIS = 2;

/**
 * Declares the height and width of a graph's uint8 NHWC input symbolic, for a model whose
 * descriptor has a `sizeStep`, and checks the claim on ONNX Runtime: the graph must run at every
 * height and every width that is a multiple of `step` up to its own size (each with the other axis
 * at `step`: a convolutional graph treats the two independently). Output dimensions that change
 * with the input size become symbolic too. The input model is left untouched.
 */
export async function declareAnyInputSize(model: Model, step: number): Promise<Model> {
  const [input, ...rest] = model.graph.inputs;
  const shape = input?.shape;
  if (!input || rest.length > 0 || !shape || shape.length !== 4 || shape[3] !== 3) {
    throw new ArgusError('only a graph with one NHWC image input can take inputs of any size');
  }
  const [height, width] = [shape[HEIGHT_AXIS], shape[WIDTH_AXIS]];
  if (typeof height !== 'number' || typeof width !== 'number' || height % step || width % step) {
    throw new ArgusError(`input ${height}×${width} is not a multiple of the size step ${step}`);
  }
  const inputShape: Dim[] = [...shape];
  inputShape[HEIGHT_AXIS] = 'height';
  inputShape[WIDTH_AXIS] = 'width';
  const graph = { ...model.graph, inputs: [{ ...input, shape: inputShape }] };
  const session = await ort.InferenceSession.create(encodeModel({ ...model, graph }), {
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  });
  try {
    const run = async (h: number, w: number) => {
      const pixels = new Uint8Array(h * w * 3).fill(128);
      try {
        return await session.run({ [input.name]: new ort.Tensor('uint8', pixels, [1, h, w, 3]) });
      } catch (err) {
        throw new ArgusError(
          `the graph does not run on a ${w}×${h} input: ${(err as Error).message.split('\n')[0]}`,
          'convert the model without a sizeStep',
        );
      }
    };
    const full = await run(height, width);
    const varying = new Set<string>();
    const sizes = [
      ...Array.from({ length: height / step }, (_, i) => [(i + 1) * step, step]),
      ...Array.from({ length: width / step - 1 }, (_, i) => [step, (i + 2) * step]),
    ];
    for (const [h, w] of sizes) {
      const out = await run(h!, w!);
      for (const [name, t] of Object.entries(out))
        t.dims.forEach((d, axis) => {
          if (d !== full[name]!.dims[axis]) varying.add(`${name}/${axis}`);
        });
    }
    const outputs = graph.outputs.map((o) => ({
      ...o,
      shape: o.shape?.map((d, axis) => (varying.has(`${o.name}/${axis}`) ? `${o.name}_dim${axis}` : d)),
    }));
    return { ...model, graph: { ...graph, outputs } };
  } finally {
    await session.release();
  }
}
