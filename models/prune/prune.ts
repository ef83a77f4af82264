import ort from 'onnxruntime-node';
import { ArgusError } from '../../common/errors.ts';
import { sha256Hex } from '../../common/hash.ts';
import type { GflDecoderSpec } from '../../inference/descriptor.ts';
import type { LoadedModel } from '../../inference/model-dir.ts';
import { type DerivedModel, extendLineage } from '../bundle/lineage.ts';
import { decodeModel, encodeModel } from '../onnx/codec.ts';
import { createTensor, type Graph, int64Tensor, type Node, tensorNumbers } from '../onnx/ir.ts';
import { GraphIndex, NameAllocator, removeDeadCode } from '../quant/graph-edit.ts';
import { simplifyForQuantization } from '../quant/simplify.ts';

/**
 * Class pruning of a GFL detector (NanoDet): each stride's head Conv computes the class logits and
 * the box bins of a cell in one output that a Split cuts apart. Keeping K of the classes slices the
 * Conv's weights and bias down to those K class channels (plus all box channels), shrinks the
 * Split and the Reshape shapes behind it, and writes a descriptor with the K labels. Scores of the
 * kept classes and all box outputs stay exactly what the full model computes (checked on a run
 * before the pruned model is returned).
 */

/** the classes a street scene needs */
export const TRAFFIC_LABELS = ['person', 'bicycle', 'car', 'motorcycle', 'bus', 'truck'] as const;

const TAIL_OPS = new Set(['Identity', 'Transpose', 'Reshape', 'Sigmoid']);

/** a GFL head's last layer: the Conv whose output a Split cuts into class logits and box bins */
export interface Head {
  conv: Node;
  split: Node;
  /** which Split output carries the class logits */
  classPart: number;
  /** Reshape nodes between the Split and the score output */
  reshapes: Node[];
}

/** the head computing `scoreOutput` (a score output of a GFL decoder with `numClasses` classes) */
export function findHead(index: GraphIndex, scoreOutput: string, numClasses: number): Head {
  const reshapes: Node[] = [];
  let tensor = scoreOutput;
  for (;;) {
    const node = index.producers.get(tensor);
    if (!node || (tensor !== scoreOutput && !index.hasSingleUse(tensor))) break;
    if (node.opType === 'Split') {
      const conv = index.producers.get(node.inputs[0]!);
      const axis = node.attributes.axis;
      const sizes = node.inputs[1] ? index.constant(node.inputs[1]) : undefined;
      const classPart = node.outputs.indexOf(tensor);
      if (
        conv?.opType === 'Conv' &&
        index.hasSingleUse(node.inputs[0]!) &&
        index.constant(conv.inputs[1]!) &&
        (!conv.inputs[2] || index.constant(conv.inputs[2])) &&
        axis?.type === 'int' &&
        axis.value === 1 &&
        sizes &&
        tensorNumbers(sizes)[classPart] === numClasses
      ) {
        return { conv, split: node, classPart, reshapes };
      }
      break;
    }
    if (!TAIL_OPS.has(node.opType)) break;
    if (node.opType === 'Reshape') reshapes.push(node);
    tensor = node.inputs[0]!;
  }
  throw new ArgusError(
    `cannot prune output "${scoreOutput}": it is not computed as Conv → Split(${numClasses} class channels) → activation/reshape`,
    'class pruning supports GFL heads like NanoDet’s',
  );
}

/** rows `keep` of a tensor's first axis */
function sliceRows(data: Float32Array, rows: number, keep: readonly number[]): Float32Array {
  const per = data.length / rows;
  const out = new Float32Array(keep.length * per);
  keep.forEach((r, i) => {
    out.set(data.subarray(r * per, (r + 1) * per), i * per);
  });
  return out;
}

function pruneHead(graph: Graph, index: GraphIndex, names: NameAllocator, head: Head, keep: number[]): void {
  const { conv, split, classPart } = head;
  const sizes = tensorNumbers(index.constant(split.inputs[1]!)!);
  const offset = sizes.slice(0, classPart).reduce((a, b) => a + b, 0);
  const weights = index.constant(conv.inputs[1]!)!;
  const channels = weights.dims[0]!;
  const rows = [
    ...Array.from({ length: offset }, (_, i) => i),
    ...keep.map((k) => offset + k),
    ...Array.from(
      { length: channels - offset - sizes[classPart]! },
      (_, i) => offset + sizes[classPart]! + i,
    ),
  ];
  const base = conv.name || conv.outputs[0]!;
  const w = names.next(`${base}/weights_pruned`);
  graph.initializers.push(
    createTensor(
      w,
      'float32',
      [rows.length, ...weights.dims.slice(1)],
      sliceRows(weights.data as Float32Array, channels, rows),
    ),
  );
  const inputs = [conv.inputs[0]!, w];
  if (conv.inputs[2]) {
    const bias = index.constant(conv.inputs[2])!;
    const b = names.next(`${base}/bias_pruned`);
    graph.initializers.push(
      createTensor(b, 'float32', [rows.length], sliceRows(bias.data as Float32Array, channels, rows)),
    );
    inputs.push(b);
  }
  conv.inputs = inputs;

  const newSizes = sizes.map((s, i) => (i === classPart ? keep.length : s));
  const sizesName = names.next(`${split.name || split.outputs[0]}/split_pruned`);
  graph.initializers.push(int64Tensor(sizesName, [newSizes.length], newSizes));
  split.inputs = [split.inputs[0]!, sizesName];

  for (const reshape of head.reshapes) {
    const shape = tensorNumbers(index.constant(reshape.inputs[1]!)!);
    const fixed = shape.map((d) => (d === sizes[classPart] ? keep.length : d));
    const shapeName = names.next(`${reshape.name || reshape.outputs[0]}/shape_pruned`);
    graph.initializers.push(int64Tensor(shapeName, [fixed.length], fixed));
    reshape.inputs = [reshape.inputs[0]!, shapeName];
  }
}

/** runs both models on one synthetic frame and checks kept-class scores and box outputs are unchanged */
async function checkPruned(
  source: LoadedModel,
  pruned: Uint8Array,
  decoder: GflDecoderSpec,
  keep: readonly number[],
): Promise<void> {
  const { input, labels } = source.descriptor;
  const frame = new Uint8Array(input.width * input.height * 3);
  for (let i = 0; i < frame.length; i++) frame[i] = (i * 2654435761) >>> 24;
  const feeds = { [input.name]: new ort.Tensor('uint8', frame, [1, input.height, input.width, 3]) };
  const outputs = [...decoder.scoreOutputs, ...decoder.boxOutputs];
  const [full, small] = await Promise.all(
    [source.bytes, pruned].map(async (bytes) => {
      const session = await ort.InferenceSession.create(bytes);
      try {
        return await session.run(feeds, outputs);
      } finally {
        await session.release();
      }
    }),
  );
  let worst = 0;
  for (const name of decoder.scoreOutputs) {
    const a = full![name]!.data as Float32Array;
    const b = small![name]!.data as Float32Array;
    const cells = a.length / labels.length;
    if (b.length !== cells * keep.length) throw new Error(`pruned output ${name} has ${b.length} values`);
    for (let c = 0; c < cells; c++) {
      keep.forEach((k, i) => {
        worst = Math.max(worst, Math.abs(a[c * labels.length + k]! - b[c * keep.length + i]!));
      });
    }
  }
  for (const name of decoder.boxOutputs) {
    const a = full![name]!.data as Float32Array;
    const b = small![name]!.data as Float32Array;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  }
  if (worst > 1e-4) {
    throw new ArgusError(
      `the pruned model's outputs differ from the full model's by up to ${worst.toExponential(2)}`,
      'this head layout is not supported by the class pruner',
    );
  }
}

export interface PruneOptions {
  /** labels to keep, by name */
  keep: readonly string[];
  /** name of the pruned model (default: the source's name + "-pruned") */
  name?: string;
}

export async function pruneClasses(source: LoadedModel, options: PruneOptions): Promise<DerivedModel> {
  const d = source.descriptor;
  if (d.decoder.kind !== 'gfl') {
    throw new ArgusError(`model ${d.name} decodes in the graph; class pruning needs a GFL (NanoDet) head`);
  }
  const unknown = options.keep.filter((l) => !d.labels.includes(l));
  if (unknown.length > 0) {
    throw new ArgusError(
      `model ${d.name} has no class ${unknown.map((u) => `"${u}"`).join(', ')}`,
      `its classes: ${d.labels.join(', ')}`,
    );
  }
  const keep = [...new Set(options.keep.map((l) => d.labels.indexOf(l)))].sort((a, b) => a - b);
  if (keep.length === 0) throw new ArgusError('pruning needs at least one class to keep');

  const model = simplifyForQuantization(decodeModel(source.bytes));
  const graph = model.graph;
  const index = new GraphIndex(graph);
  const names = new NameAllocator(graph);
  const heads = d.decoder.scoreOutputs.map((o) => findHead(index, o, d.labels.length));
  for (const head of heads) pruneHead(graph, index, names, head, keep);
  for (const output of graph.outputs) {
    if (d.decoder.scoreOutputs.includes(output.name) && output.shape) {
      output.shape = [...output.shape.slice(0, -1), keep.length];
    }
  }
  removeDeadCode(graph);
  const name = options.name ?? `${d.name}-pruned`;
  model.metadata = { ...model.metadata, 'argus.model': name };
  const bytes = encodeModel(model);
  await checkPruned(source, bytes, d.decoder, keep);
  const keptLabels = keep.map((k) => d.labels[k]!);
  return {
    bytes,
    descriptor: { ...d, name, labels: keptLabels, file: 'model.onnx', sha256: sha256Hex(bytes) },
    lineage: await extendLineage(source, {
      kind: 'prune',
      at: new Date().toISOString(),
      keptLabels,
      removedClasses: d.labels.length - keep.length,
    }),
  };
}
