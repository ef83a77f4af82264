import {
  attr,
  createNode,
  float32Tensor,
  type Graph,
  int64Tensor,
  type Model,
  type Node,
  tensorNumbers,
} from '../onnx/ir.ts';
import { cloneGraph, GraphIndex, NameAllocator, removeDeadCode, replaceUses } from './graph-edit.ts';

/**
 * Rewrites a converted graph into the plain NCHW form a quantizer can annotate: the tfjs converter
 * leaves Conv → Transpose → Add(bias) → Transpose chains, back-to-back transposes and explicit Pad
 * nodes, which would put a Transpose or a Pad between every Conv and its quantize/dequantize
 * neighbours and keep ONNX Runtime from fusing them into integer kernels. Every rewrite here is
 * exact: the simplified graph computes the same values (checked by the tests against ORT).
 */

function perm(node: Node): number[] | undefined {
  const a = node.attributes.perm;
  return a?.type === 'ints' ? a.value : undefined;
}

/** Transpose(pa) followed by Transpose(pb) that compose to the identity: readers of the second read the input of the first */
function cancelTransposePairs(graph: Graph): boolean {
  const index = new GraphIndex(graph);
  let changed = false;
  for (const second of graph.nodes) {
    if (second.opType !== 'Transpose') continue;
    const first = index.producers.get(second.inputs[0]!);
    if (first?.opType !== 'Transpose') continue;
    const pa = perm(first);
    const pb = perm(second);
    if (!pa || !pb || pa.length !== pb.length || !pb.every((p, i) => pa[p] === i)) continue;
    const out = second.outputs[0]!;
    if (index.outputs.has(out)) continue;
    replaceUses(graph, out, first.inputs[0]!);
    changed = true;
  }
  return changed;
}

const NCHW_TO_NHWC = [0, 2, 3, 1];

/** Conv → [Transpose to NHWC] → Add(per-channel constant): the constant becomes the Conv's bias */
function foldBiasAdds(graph: Graph): boolean {
  const index = new GraphIndex(graph);
  let changed = false;
  const dropped = new Set<Node>();
  for (const conv of graph.nodes) {
    if (conv.opType !== 'Conv' || conv.inputs.length > 2) continue;
    const weights = index.constant(conv.inputs[1]!);
    if (!weights) continue;
    const channels = weights.dims[0]!;
    let tensor = conv.outputs[0]!;
    if (!index.hasSingleUse(tensor)) continue;
    let next = index.consumersOf(tensor)[0]!;
    let viaTranspose: Node | undefined;
    if (next.opType === 'Transpose' && perm(next)?.join() === NCHW_TO_NHWC.join()) {
      viaTranspose = next;
      tensor = next.outputs[0]!;
      if (!index.hasSingleUse(tensor)) continue;
      next = index.consumersOf(tensor)[0]!;
    }
    if (next.opType !== 'Add') continue;
    const other = next.inputs[0] === tensor ? next.inputs[1]! : next.inputs[0]!;
    const bias = index.constant(other);
    if (bias?.type !== 'float32' || bias.data.length !== channels) continue;
    // the constant must vary along the channel axis only: [C] or [1,1,1,C] after NHWC, [C,1,1] before
    const channelAxisLast = bias.dims.length === 0 || bias.dims[bias.dims.length - 1] === channels;
    if (viaTranspose ? !channelAxisLast : !(bias.dims.length === 3 && bias.dims[0] === channels)) continue;
    const biasName = `${conv.name || conv.outputs[0]}/bias`;
    graph.initializers.push(float32Tensor(biasName, [channels], bias.data as Float32Array));
    conv.inputs = [...conv.inputs, biasName];
    const last = viaTranspose ?? conv;
    last.outputs = [next.outputs[0]!];
    dropped.add(next);
    changed = true;
  }
  graph.nodes = graph.nodes.filter((n) => !dropped.has(n));
  return changed;
}

function hasNoPadding(node: Node): boolean {
  const pads = node.attributes.pads;
  const autoPad = node.attributes.auto_pad;
  const noAuto = !autoPad || (autoPad.type === 'string' && autoPad.value === 'NOTSET');
  return noAuto && (!pads || (pads.type === 'ints' && pads.value.every((p) => p === 0)));
}

/** constant-mode Pad of the spatial axes feeding a Conv (pad 0) or MaxPool (pad −∞): moved into the op's `pads` */
function foldPads(graph: Graph): boolean {
  const index = new GraphIndex(graph);
  let changed = false;
  for (const pad of graph.nodes) {
    if (pad.opType !== 'Pad' || pad.inputs.length > 3) continue;
    const mode = pad.attributes.mode;
    if (mode && !(mode.type === 'string' && mode.value === 'constant')) continue;
    const out = pad.outputs[0]!;
    if (!index.hasSingleUse(out)) continue;
    const op = index.consumersOf(out)[0]!;
    if ((op.opType !== 'Conv' && op.opType !== 'MaxPool') || op.inputs[0] !== out || !hasNoPadding(op))
      continue;
    const padsTensor = index.constant(pad.inputs[1]!);
    if (!padsTensor) continue;
    const pads = tensorNumbers(padsTensor);
    if (pads.length !== 8 || pads[0] !== 0 || pads[1] !== 0 || pads[4] !== 0 || pads[5] !== 0) continue;
    const valueName = pad.inputs[2];
    const valueTensor = valueName ? index.constant(valueName) : undefined;
    if (valueName && !valueTensor) continue;
    const value = valueTensor ? tensorNumbers(valueTensor)[0]! : 0;
    const neutral = op.opType === 'Conv' ? value === 0 : value === Number.NEGATIVE_INFINITY;
    if (!neutral) continue;
    op.attributes = { ...op.attributes, pads: attr.ints([pads[2]!, pads[3]!, pads[6]!, pads[7]!]) };
    delete op.attributes.auto_pad;
    op.inputs[0] = pad.inputs[0]!;
    changed = true;
  }
  return changed;
}

const ELEMENTWISE = new Set(['Add', 'Sub', 'Mul', 'Div']);
const NHWC_TO_NCHW = [0, 3, 1, 2];

/**
 * Transpose(NHWC → NCHW) after a Cast or after an elementwise op with a per-channel constant
 * ([C], broadcast along the last axis): the Transpose moves above the op and the constant becomes
 * [C, 1, 1]. Applied repeatedly this moves the input transpose onto the raw uint8 frame, and the
 * normalisation runs on NCHW planes, where a per-channel broadcast is a fast contiguous loop.
 */
function hoistInputTranspose(graph: Graph): boolean {
  const index = new GraphIndex(graph);
  const names = new NameAllocator(graph);
  for (const transpose of graph.nodes) {
    if (transpose.opType !== 'Transpose' || perm(transpose)?.join() !== NHWC_TO_NCHW.join()) continue;
    const between = transpose.inputs[0]!;
    const op = index.producers.get(between);
    if (!op || !index.hasSingleUse(between)) continue;
    let dataInput = 0;
    if (ELEMENTWISE.has(op.opType)) {
      const constantAt = op.inputs.findIndex((i) => index.constant(i));
      const constant = index.constant(op.inputs[constantAt] ?? '');
      if (constant?.dims.length !== 1 || op.inputs.length !== 2) continue;
      dataInput = 1 - constantAt;
      const reshaped = names.next(`${constant.name}/nchw`);
      graph.initializers.push({ ...constant, name: reshaped, dims: [constant.dims[0]!, 1, 1] });
      op.inputs[constantAt] = reshaped;
    } else if (op.opType !== 'Cast') {
      continue;
    }
    // a → op → b → Transpose → c   becomes   a → Transpose → a' → op → c
    const source = op.inputs[dataInput]!;
    const transposed = names.next(`${source}/nchw`);
    op.outputs = [transpose.outputs[0]!];
    op.inputs[dataInput] = transposed;
    transpose.inputs = [source];
    transpose.outputs = [transposed];
    const opAt = graph.nodes.indexOf(op);
    const transposeAt = graph.nodes.indexOf(transpose);
    graph.nodes[opAt] = transpose;
    graph.nodes[transposeAt] = op;
    return true;
  }
  return false;
}

/**
 * Resize with an `axes` attribute and sizes for those axes only → Resize with sizes for every axis,
 * the leading ones taken from the input's shape at run time. Same result; needed because ONNX
 * Runtime 1.30's NHWC layout transformer (which runs on integer models) rejects the `axes` form.
 */
function expandResizeAxes(graph: Graph): boolean {
  const index = new GraphIndex(graph);
  const names = new NameAllocator(graph);
  let changed = false;
  const added: Node[][] = [];
  for (const [position, resize] of graph.nodes.entries()) {
    const axes = resize.attributes.axes;
    if (resize.opType !== 'Resize' || axes?.type !== 'ints') continue;
    const sizesName = resize.inputs[3];
    const sizes = sizesName ? index.constant(sizesName) : undefined;
    const rank = axes.value.length + Math.min(...axes.value);
    const trailing = axes.value.every((a, i) => a === rank - axes.value.length + i);
    if (!sizes || !trailing) continue;
    const base = resize.name || resize.outputs[0]!;
    const leading = names.next(`${base}/leading_dims`);
    const full = names.next(`${base}/sizes`);
    const constant = names.next(`${base}/trailing_sizes`);
    graph.initializers.push(int64Tensor(constant, [axes.value.length], tensorNumbers(sizes)));
    added[position] = [
      createNode('Shape', [resize.inputs[0]!], [leading], names.next(`${base}/Shape`), {
        start: attr.int(0),
        end: attr.int(Math.min(...axes.value)),
      }),
      createNode('Concat', [leading, constant], [full], names.next(`${base}/Concat`), { axis: attr.int(0) }),
    ];
    resize.inputs = [resize.inputs[0]!, '', '', full];
    delete resize.attributes.axes;
    changed = true;
  }
  graph.nodes = graph.nodes.flatMap((n, i) => [...(added[i] ?? []), n]);
  return changed;
}

/** Identity nodes inside the graph (graph outputs keep theirs: they carry the output names) */
function dropIdentities(graph: Graph): boolean {
  const index = new GraphIndex(graph);
  let changed = false;
  for (const node of graph.nodes) {
    if (node.opType !== 'Identity' || index.outputs.has(node.outputs[0]!)) continue;
    replaceUses(graph, node.outputs[0]!, node.inputs[0]!);
    changed = true;
  }
  return changed;
}

/** the graph in plain NCHW form, without pass-through nodes; the input model is left untouched */
export function simplifyForQuantization(model: Model): Model {
  const graph = cloneGraph(model.graph);
  const passes = [
    dropIdentities,
    cancelTransposePairs,
    foldBiasAdds,
    foldPads,
    expandResizeAxes,
    hoistInputTranspose,
  ];
  for (let round = 0; round < 10; round++) {
    let changed = false;
    for (const pass of passes) {
      if (pass(graph)) {
        changed = true;
        removeDeadCode(graph);
      }
    }
    if (!changed) break;
  }
  return { ...model, graph };
}
