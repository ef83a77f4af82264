import {
  attr,
  createNode,
  createTensor,
  type Graph,
  type Model,
  type Node,
  type Tensor,
} from '../onnx/ir.ts';
import { inferElemTypes } from './elem-types.ts';
import { cloneGraph, GraphIndex, NameAllocator, removeDeadCode } from './graph-edit.ts';
import {
  type ActivationType,
  activationParams,
  biasFittingScales,
  type QuantParams,
  quantizeBias,
  quantizeWeightsPerChannel,
  type Range,
} from './qparams.ts';

/**
 * Static quantization in QDQ form: every activation a quantized node reads or writes gets a
 * QuantizeLinear → DequantizeLinear pair right after its producer, Conv weights are stored as int8
 * (per output channel) behind a DequantizeLinear with `axis` 0, and Conv biases as int32 at
 * input scale × weight scale. The model stays a plain float graph to any runtime; ONNX Runtime
 * recognises DQ → op → Q groups and runs them as integer kernels (QLinearConv, QLinearAdd, …).
 */

/** ops whose inputs and outputs are quantized; the rest of the graph stays float */
export const QUANTIZED_OPS: ReadonlySet<string> = new Set([
  'Conv',
  'Add',
  'Concat',
  'LeakyRelu',
  'Relu',
  'AveragePool',
  'GlobalAveragePool',
  'MaxPool',
  'Resize',
]);

/** ops that only move or select values: their output reuses the input's parameters (so the runtime can drop the pair) */
const SAME_SCALE_OPS: ReadonlySet<string> = new Set(['MaxPool', 'Resize']);

export interface QdqOptions {
  activationType: ActivationType;
  /** one weight scale per Conv output channel, else one per weight tensor */
  perChannelWeights: boolean;
  /** names of nodes left in float */
  keepFloat: ReadonlySet<string>;
}

export interface QdqPlan {
  /** positions in the graph's node list of the nodes that will be quantized */
  nodes: number[];
  /**
   * positions of Convs that would be quantized but whose weights are computed (by a
   * DequantizeLinear, a Constant chain, …) rather than an initializer: they cannot be stored as
   * int8, so quantization refuses them unless they are kept in float
   */
  computedWeights: number[];
  /** float activations that need a calibrated range */
  calibrate: string[];
  /** activation → the tensor whose parameters it shares */
  sharesWith: Map<string, string>;
  /** activations that already come out of a DequantizeLinear, with its parameters */
  alreadyQuantized: Map<string, QuantParams>;
}

/** the parameters of a per-tensor DequantizeLinear, or undefined when it is per-axis or computed */
function dequantizeParams(node: Node, index: GraphIndex): QuantParams | undefined {
  const scale = index.constant(node.inputs[1]!);
  const zeroPoint = index.constant(node.inputs[2] ?? '');
  if (scale?.data.length !== 1) return undefined;
  const type = zeroPoint?.type ?? 'uint8';
  if (type !== 'uint8' && type !== 'int8') return undefined;
  return { type, scale: Number(scale.data[0]), zeroPoint: Number(zeroPoint?.data[0] ?? 0) };
}

/** activation inputs of a node (not constants, not the empty optional-input marker) */
function activationInputs(node: Node, index: GraphIndex): string[] {
  const inputs = node.opType === 'Conv' || SAME_SCALE_OPS.has(node.opType) ? [node.inputs[0]!] : node.inputs;
  return inputs.filter((i) => i && !index.constant(i));
}

/** which nodes get quantized and which tensors need calibrating */
export function planQdq(graph: Graph, options: QdqOptions): QdqPlan {
  const index = new GraphIndex(graph);
  const types = inferElemTypes(graph);
  const isFloat = (t: string) => types.get(t) === 'float32';
  const candidates = graph.nodes.flatMap((n, i) =>
    QUANTIZED_OPS.has(n.opType) &&
    !options.keepFloat.has(n.name) &&
    n.outputs.every(isFloat) &&
    activationInputs(n, index).every(isFloat)
      ? [i]
      : [],
  );
  const hasComputedWeights = (i: number) =>
    graph.nodes[i]!.opType === 'Conv' && !index.constant(graph.nodes[i]!.inputs[1]!);
  const computedWeights = candidates.filter(hasComputedWeights);
  const nodes = candidates.filter((i) => !hasComputedWeights(i));
  const tensors = new Set<string>();
  const sharesWith = new Map<string, string>();
  for (const node of nodes.map((i) => graph.nodes[i]!)) {
    for (const t of activationInputs(node, index)) tensors.add(t);
    for (const t of node.outputs) tensors.add(t);
    if (SAME_SCALE_OPS.has(node.opType)) sharesWith.set(node.outputs[0]!, node.inputs[0]!);
  }
  const root = (t: string): string => {
    let r = t;
    while (sharesWith.has(r)) r = sharesWith.get(r)!;
    return r;
  };
  for (const t of sharesWith.keys()) sharesWith.set(t, root(t));
  const alreadyQuantized = new Map<string, QuantParams>();
  for (const t of tensors) {
    const producer = index.producers.get(t);
    const params = producer?.opType === 'DequantizeLinear' ? dequantizeParams(producer, index) : undefined;
    if (params) alreadyQuantized.set(t, params);
  }
  const calibrate = [...tensors].filter((t) => !sharesWith.has(t) && !alreadyQuantized.has(t));
  return { nodes, computedWeights, calibrate, sharesWith, alreadyQuantized };
}

function scalar(name: string, type: ActivationType | 'float32', value: number): Tensor {
  const data =
    type === 'float32'
      ? Float32Array.of(value)
      : type === 'uint8'
        ? Uint8Array.of(value)
        : Int8Array.of(value);
  return createTensor(name, type, [], data);
}

/** the per-tensor parameters of every planned activation; a range missing from `ranges` is a bug in the caller */
export function activationQuantParams(
  plan: QdqPlan,
  ranges: ReadonlyMap<string, Range>,
  type: ActivationType,
): Map<string, QuantParams> {
  const params = new Map<string, QuantParams>();
  for (const t of plan.calibrate) {
    const range = ranges.get(t);
    if (!range) throw new Error(`no calibrated range for tensor "${t}"`);
    params.set(t, activationParams(range, type));
  }
  for (const [t, p] of plan.alreadyQuantized) params.set(t, p);
  for (const [t, source] of plan.sharesWith) params.set(t, params.get(source)!);
  return params;
}

/**
 * Returns a copy of `model` with QDQ pairs on the planned activations and int8 weights. `params`
 * maps each activation to its quantization parameters (see activationQuantParams).
 */
export function insertQdq(
  model: Model,
  plan: QdqPlan,
  params: ReadonlyMap<string, QuantParams>,
  options: QdqOptions,
): Model {
  const graph = cloneGraph(model.graph);
  const index = new GraphIndex(graph);
  const names = new NameAllocator(graph);
  const initializers: Tensor[] = [...graph.initializers];
  const planned = new Set(plan.nodes.map((i) => graph.nodes[i]!));

  // Q → DQ after each activation's producer; every reader of the activation reads the DQ output,
  // except Shape, which reads the quantized tensor (same shape) so that the DQ keeps a single reader
  const after = new Map<Node | undefined, Node[]>();
  const dequantized = new Map<string, string>();
  const quantized = new Map<string, string>();
  for (const [tensor, p] of params) {
    if (plan.alreadyQuantized.has(tensor)) continue;
    const q = names.next(`${tensor}/quantized`);
    const dq = names.next(`${tensor}/dequantized`);
    const scale = names.next(`${tensor}/scale`);
    const zeroPoint = names.next(`${tensor}/zero_point`);
    initializers.push(scalar(scale, 'float32', p.scale), scalar(zeroPoint, p.type, p.zeroPoint));
    const producer = index.producers.get(tensor);
    after.set(producer, [
      ...(after.get(producer) ?? []),
      createNode('QuantizeLinear', [tensor, scale, zeroPoint], [q], names.next(`${tensor}/QuantizeLinear`)),
      createNode('DequantizeLinear', [q, scale, zeroPoint], [dq], names.next(`${tensor}/DequantizeLinear`)),
    ]);
    dequantized.set(tensor, dq);
    quantized.set(tensor, q);
  }

  // a DequantizeLinear over an int8/int32 initializer, per axis 0 when there is more than one scale
  const before = new Map<Node, Node[]>();
  const constantDq = (
    conv: Node,
    what: string,
    values: Int8Array | Int32Array,
    dims: number[],
    scales: Float32Array,
  ): string => {
    const base = `${conv.name || conv.outputs[0]}/${what}`;
    const type = values instanceof Int8Array ? 'int8' : 'int32';
    const q = names.next(`${base}_quantized`);
    const scale = names.next(`${base}_scale`);
    const zeroPoint = names.next(`${base}_zero_point`);
    const out = names.next(`${base}_dequantized`);
    const perAxis = scales.length > 1;
    const paramDims = perAxis ? [scales.length] : [];
    const zeros = type === 'int8' ? new Int8Array(scales.length) : new Int32Array(scales.length);
    initializers.push(
      createTensor(q, type, dims, values),
      createTensor(scale, 'float32', paramDims, scales),
      createTensor(zeroPoint, type, paramDims, zeros),
    );
    before.set(conv, [
      ...(before.get(conv) ?? []),
      createNode(
        'DequantizeLinear',
        [q, scale, zeroPoint],
        [out],
        names.next(`${base}_DequantizeLinear`),
        perAxis ? { axis: attr.int(0) } : {},
      ),
    ]);
    return out;
  };

  for (const conv of graph.nodes) {
    if (conv.opType !== 'Conv' || !planned.has(conv)) continue;
    const w = index.constant(conv.inputs[1]!)!;
    const channels = options.perChannelWeights ? w.dims[0]! : 1;
    const inputParams = params.get(conv.inputs[0]!);
    if (!inputParams) throw new Error(`Conv "${conv.name}" input has no quantization parameters`);
    const biasName = conv.inputs[2];
    const bias = biasName ? index.constant(biasName) : undefined;
    if (biasName && !bias) throw new Error(`Conv "${conv.name}" has a computed bias`);
    const minScales = bias
      ? biasFittingScales(bias.data as Float32Array, inputParams.scale, channels)
      : undefined;
    const qw = quantizeWeightsPerChannel(w.data as Float32Array, channels, minScales);
    const inputs = [conv.inputs[0]!, constantDq(conv, 'weights', qw.values, w.dims, qw.scales)];
    if (bias) {
      const qb = quantizeBias(bias.data as Float32Array, inputParams.scale, qw.scales);
      inputs.push(constantDq(conv, 'bias', qb.values, bias.dims, qb.scales));
    }
    conv.inputs = inputs;
  }

  const nodes: Node[] = [...(after.get(undefined) ?? [])];
  for (const node of graph.nodes) {
    const readers = node.opType === 'Shape' ? quantized : dequantized;
    node.inputs = node.inputs.map((i) => readers.get(i) ?? i);
    nodes.push(...(before.get(node) ?? []), node, ...(after.get(node) ?? []));
  }
  graph.nodes = nodes;
  graph.initializers = initializers;
  removeDeadCode(graph);
  return { ...model, graph };
}
