import { ArgusError } from '../../common/errors.ts';
import type { GflDecoderSpec, ModelDescriptor } from '../../inference/descriptor.ts';
import { decodeModel, encodeModel } from '../onnx/codec.ts';
import { createTensor, type Model, type Node, type Tensor, tensorNumbers } from '../onnx/ir.ts';
import { findHead } from '../prune/prune.ts';
import { GraphIndex, NameAllocator, removeDeadCode } from '../quant/graph-edit.ts';
import { simplifyForQuantization } from '../quant/simplify.ts';
import type { HeadParams, HeadShape } from './loss.ts';

/**
 * The trainable last layer of a GFL detector's heads in its ONNX graph: per stride, the 1×1 Conv
 * whose output a Split cuts into class logits and box bins (what the class pruner finds too). Read
 * as a `HeadShape` and `HeadParams`, written back as new float32 initializers, and exposed as extra
 * graph outputs (the Conv's input, the features of every cell) for the feature cache.
 */

export interface GraphHead {
  shape: HeadShape;
  params: HeadParams;
  /** per level, the tensor the Conv reads: [1, cin, rows, cols] */
  featureTensors: string[];
}

interface Located {
  model: Model;
  index: GraphIndex;
  convs: Node[];
  shape: HeadShape;
}

function gflOf(d: ModelDescriptor): GflDecoderSpec {
  if (d.decoder.kind !== 'gfl') {
    throw new ArgusError(
      `model ${d.name} decodes in the graph; adaptation trains a GFL (NanoDet) head`,
      'adapt a NanoDet student (or one pruned from it)',
    );
  }
  return d.decoder;
}

function floatConstant(index: GraphIndex, name: string, what: string): Tensor {
  const t = index.constant(name);
  if (t?.type !== 'float32') {
    throw new ArgusError(
      `the head Conv's ${what} "${name}" is not a float32 initializer`,
      'adapt the float model, then quantize it',
    );
  }
  return t;
}

function locate(bytes: Uint8Array, d: ModelDescriptor): Located {
  const decoder = gflOf(d);
  const model = simplifyForQuantization(decodeModel(bytes));
  const index = new GraphIndex(model.graph);
  const bins = decoder.regMax + 1;
  let layout: Omit<HeadShape, 'cin' | 'strides'> | undefined;
  const convs: Node[] = [];
  const cin: number[] = [];
  for (const output of decoder.scoreOutputs) {
    const head = findHead(index, output, d.labels.length);
    const { conv, split, classPart } = head;
    const w = floatConstant(index, conv.inputs[1]!, 'weights');
    const [cout, inputs, kh, kw] = w.dims;
    const ints = (name: string) => {
      const a = conv.attributes[name];
      return a?.type === 'ints' ? a.value : undefined;
    };
    const group = conv.attributes.group;
    const ones = (v: number[] | undefined) => v === undefined || v.every((x) => x === 1);
    const zeros = (v: number[] | undefined) => v === undefined || v.every((x) => x === 0);
    if (
      w.dims.length !== 4 ||
      kh !== 1 ||
      kw !== 1 ||
      !ones(ints('strides')) ||
      !ones(ints('dilations')) ||
      !zeros(ints('pads')) ||
      (group && !(group.type === 'int' && group.value === 1)) ||
      (conv.attributes.auto_pad?.type === 'string' &&
        !['NOTSET', 'VALID'].includes(conv.attributes.auto_pad.value))
    ) {
      throw new ArgusError(
        `the head Conv of output "${output}" is not a plain 1×1 convolution (weights [${w.dims.join(',')}])`,
        'adaptation trains a head whose last layer is a per-cell linear map, as NanoDet’s is',
      );
    }
    const sizes = tensorNumbers(index.constant(split.inputs[1]!)!);
    if (sizes.length !== 2 || sizes[1 - classPart] !== 4 * bins) {
      throw new ArgusError(
        `the head Split of output "${output}" cuts [${sizes.join(', ')}], not ${d.labels.length} class and ${4 * bins} box channels`,
      );
    }
    const here = {
      classes: d.labels.length,
      bins,
      classOffset: classPart === 0 ? 0 : sizes[0]!,
      boxOffset: classPart === 0 ? sizes[0]! : 0,
      cout: cout!,
    };
    if (here.cout !== d.labels.length + 4 * bins) {
      throw new ArgusError(
        `the head Conv of output "${output}" has ${cout} output channels, not ${d.labels.length + 4 * bins}`,
      );
    }
    if (layout && JSON.stringify(layout) !== JSON.stringify(here)) {
      throw new ArgusError(`the heads of ${d.name} do not share one channel layout`);
    }
    layout = here;
    convs.push(conv);
    cin.push(inputs!);
  }
  return { model, index, convs, shape: { ...layout!, cin, strides: [...decoder.strides] } };
}

/** the head's shape and weights, as float64 for training */
export function readHead(bytes: Uint8Array, d: ModelDescriptor): GraphHead {
  const { index, convs, shape } = locate(bytes, d);
  const weights: Float64Array[] = [];
  const biases: Float64Array[] = [];
  convs.forEach((conv) => {
    weights.push(Float64Array.from(floatConstant(index, conv.inputs[1]!, 'weights').data as Float32Array));
    biases.push(
      conv.inputs[2]
        ? Float64Array.from(floatConstant(index, conv.inputs[2], 'bias').data as Float32Array)
        : new Float64Array(shape.cout),
    );
  });
  return { shape, params: { weights, biases }, featureTensors: convs.map((c) => c.inputs[0]!) };
}

/** the model with the head's weights replaced by `params` (rounded to float32) */
export function writeHead(bytes: Uint8Array, d: ModelDescriptor, params: HeadParams): Uint8Array {
  const { model, convs, shape } = locate(bytes, d);
  const names = new NameAllocator(model.graph);
  convs.forEach((conv, level) => {
    const cin = shape.cin[level]!;
    const w = params.weights[level]!;
    const b = params.biases[level]!;
    if (w.length !== shape.cout * cin || b.length !== shape.cout) {
      throw new ArgusError(
        `adapted weights of level ${level} do not fit its head Conv (${shape.cout}×${cin})`,
      );
    }
    const base = conv.name || conv.outputs[0]!;
    const wName = names.next(`${base}/weights_adapted`);
    const bName = names.next(`${base}/bias_adapted`);
    model.graph.initializers.push(
      createTensor(wName, 'float32', [shape.cout, cin, 1, 1], Float32Array.from(w)),
      createTensor(bName, 'float32', [shape.cout], Float32Array.from(b)),
    );
    conv.inputs = [conv.inputs[0]!, wName, bName];
  });
  removeDeadCode(model.graph);
  return encodeModel(model);
}

/** the model with each head Conv's input (the cells' features) as an extra output */
export function withFeatureOutputs(
  bytes: Uint8Array,
  d: ModelDescriptor,
): { bytes: Uint8Array; outputs: string[] } {
  const { model, convs } = locate(bytes, d);
  const outputs = convs.map((c) => c.inputs[0]!);
  const declared = new Set(model.graph.outputs.map((o) => o.name));
  for (const name of outputs) {
    if (!declared.has(name)) model.graph.outputs.push({ name, type: 'float32', shape: undefined });
  }
  return { bytes: encodeModel(model), outputs };
}
