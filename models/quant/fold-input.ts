import { createNode, createTensor, float32Tensor, type Model, type Node, tensorNumbers } from '../onnx/ir.ts';
import { cloneGraph, GraphIndex, NameAllocator, removeDeadCode } from './graph-edit.ts';

/**
 * Folds the input normalisation of a uint8-input model into its first Conv, for integer models:
 *
 *   frames(uint8) → [Transpose] → Cast → Sub(mean) → Mul(1/std) → Conv
 * becomes
 *   frames(uint8) → [Transpose] → DequantizeLinear(scale 1, zero point Z) → Conv(W·(1/std), b')
 *
 * so the first integer convolution reads the camera frame as it is, with no float pass over the
 * 416×416×3 input. The result equals the original everywhere except where the Conv reads its
 * zero padding: there it sees the pixel value Z (the channel means rounded to one integer) instead
 * of each channel's mean, a difference of (Z − mean_c)/std_c on the one-pixel border ring.
 * The accuracy gate measures what that costs. Returns undefined when the graph has no such chain.
 */
export function foldInputNormalization(model: Model): { model: Model; zeroPoint: number } | undefined {
  const graph = cloneGraph(model.graph);
  const index = new GraphIndex(graph);
  const input = graph.inputs.find((i) => i.type === 'uint8');
  if (!input) return undefined;

  let tensor = input.name;
  let mean: number[] | undefined;
  let scale: number[] | undefined;
  let cast: Node | undefined;
  let conv: Node | undefined;
  let quantizedSource = input.name;
  for (let steps = 0; steps < 6 && !conv; steps++) {
    if (!index.hasSingleUse(tensor)) return undefined;
    const node = index.consumersOf(tensor)[0]!;
    const constant = node.inputs.map((i) => index.constant(i)).find((t) => t !== undefined);
    if (node.opType === 'Transpose' && !cast) {
      quantizedSource = node.outputs[0]!;
    } else if (node.opType === 'Cast' && !cast) {
      cast = node;
    } else if (cast && !mean && node.opType === 'Sub' && node.inputs[0] === tensor && constant) {
      mean = tensorNumbers(constant);
    } else if (cast && !scale && (node.opType === 'Mul' || node.opType === 'Div') && constant) {
      scale = tensorNumbers(constant).map((v) => (node.opType === 'Div' ? 1 / v : v));
    } else if (node.opType === 'Conv' && cast && node.inputs[0] === tensor) {
      conv = node;
      break;
    } else {
      return undefined;
    }
    tensor = node.outputs[0]!;
  }
  const weights = conv ? index.constant(conv.inputs[1]!) : undefined;
  const group = conv?.attributes.group;
  if (!conv || !weights || (group?.type === 'int' && group.value !== 1)) return undefined;
  const [outChannels, inChannels, ...kernel] = weights.dims as [number, number, ...number[]];
  const m = mean ?? new Array<number>(inChannels).fill(0);
  const k = scale ?? new Array<number>(inChannels).fill(1);
  if (m.length !== inChannels || k.length !== inChannels) return undefined;

  const zeroPoint = Math.min(255, Math.max(0, Math.round(m.reduce((a, b) => a + b, 0) / m.length)));
  const area = kernel.reduce((a, b) => a * b, 1);
  const w = weights.data as Float32Array;
  const folded = new Float32Array(w.length);
  const biasName = conv.inputs[2];
  const bias = biasName ? (index.constant(biasName)?.data as Float32Array) : new Float32Array(outChannels);
  const newBias = Float32Array.from(bias);
  for (let o = 0; o < outChannels; o++) {
    for (let c = 0; c < inChannels; c++) {
      for (let a = 0; a < area; a++) {
        const at = (o * inChannels + c) * area + a;
        folded[at] = w[at]! * k[c]!;
        newBias[o]! += folded[at]! * (zeroPoint - m[c]!);
      }
    }
  }

  const names = new NameAllocator(graph);
  const base = conv.name || conv.outputs[0]!;
  const scaleName = names.next(`${quantizedSource}/scale`);
  const zeroName = names.next(`${quantizedSource}/zero_point`);
  const dequantized = names.next(`${quantizedSource}/dequantized`);
  const weightName = names.next(`${base}/weights_normalized`);
  const newBiasName = names.next(`${base}/bias_normalized`);
  graph.initializers.push(
    createTensor(scaleName, 'float32', [], Float32Array.of(1)),
    createTensor(zeroName, 'uint8', [], Uint8Array.of(zeroPoint)),
    float32Tensor(weightName, weights.dims, folded),
    float32Tensor(newBiasName, [outChannels], newBias),
  );
  const dq = createNode(
    'DequantizeLinear',
    [quantizedSource, scaleName, zeroName],
    [dequantized],
    names.next(`${quantizedSource}/DequantizeLinear`),
  );
  conv.inputs = [dequantized, weightName, newBiasName];
  graph.nodes.splice(graph.nodes.indexOf(conv), 0, dq);
  removeDeadCode(graph);
  return { model: { ...model, graph }, zeroPoint };
}
