import { attr, createNode, float32Tensor, type Model, ONNX_DATA_TYPE } from './ir.ts';

export interface FoldOptions {
  /** the float input the graph was exported with */
  input: string;
  /** layout that input expects */
  graphLayout: 'NCHW' | 'NHWC';
  /** per channel; identity (0 / 1) when the graph takes raw 0–255 values */
  mean: number[];
  std: number[];
  /** name of the new uint8 NHWC input */
  newInput: string;
}

/**
 * Replaces a float input that expects normalised pixels with a uint8 NHWC input that takes frames
 * exactly as GStreamer delivers them. Cast, (x − mean)/std and the NHWC→NCHW transpose run inside
 * ONNX Runtime, vectorised, instead of in a JS loop over every pixel.
 */
export function foldInputPreprocessing(model: Model, options: FoldOptions): Model {
  const g = model.graph;
  const index = g.inputs.findIndex((i) => i.name === options.input);
  const original = g.inputs[index];
  if (!original?.shape) throw new Error(`graph has no input "${options.input}" with a known shape`);
  const shape = original.shape;
  const nhwcShape =
    options.graphLayout === 'NCHW' ? [shape[0]!, shape[2]!, shape[3]!, shape[1]!] : [...shape];
  const prefix = `${options.newInput}/preprocess`;
  const nodes = [];
  const initializers = [];
  let current = options.newInput;
  const next = (step: string) => `${prefix}/${step}`;

  nodes.push(
    createNode('Cast', [current], [next('float')], next('cast'), { to: attr.int(ONNX_DATA_TYPE.float32) }),
  );
  current = next('float');
  if (options.mean.some((m) => m !== 0)) {
    initializers.push(float32Tensor(next('mean'), [3], options.mean));
    nodes.push(createNode('Sub', [current, next('mean')], [next('centred')], next('sub')));
    current = next('centred');
  }
  if (options.std.some((s) => s !== 1)) {
    initializers.push(
      float32Tensor(
        next('inv_std'),
        [3],
        options.std.map((s) => 1 / s),
      ),
    );
    nodes.push(createNode('Mul', [current, next('inv_std')], [next('scaled')], next('mul')));
    current = next('scaled');
  }
  if (options.graphLayout === 'NCHW') {
    nodes.push(
      createNode('Transpose', [current], [next('nchw')], next('transpose'), {
        perm: attr.ints([0, 3, 1, 2]),
      }),
    );
    current = next('nchw');
  }
  nodes.push(createNode('Identity', [current], [options.input], next('out')));

  const inputs = [...g.inputs];
  inputs[index] = { name: options.newInput, type: 'uint8', shape: nhwcShape };
  return {
    ...model,
    graph: {
      ...g,
      inputs,
      nodes: [...nodes, ...g.nodes],
      initializers: [...initializers, ...g.initializers],
    },
  };
}
