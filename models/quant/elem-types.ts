import { type ElemType, type Graph, ONNX_DATA_TYPE } from '../onnx/ir.ts';

const BY_NUMBER = new Map<number, ElemType>(
  Object.entries(ONNX_DATA_TYPE).map(([name, n]) => [n, name as ElemType]),
);

const INT64_OUTPUTS = new Set(['Shape', 'Size', 'NonZero', 'ArgMax', 'ArgMin', 'NonMaxSuppression']);
const BOOL_OUTPUTS = new Set([
  'Equal',
  'Less',
  'LessOrEqual',
  'Greater',
  'GreaterOrEqual',
  'Not',
  'And',
  'Or',
]);

/**
 * The element type of every tensor the graph computes, propagated from its inputs and initializers
 * in node order: enough to tell float activations from the integer shape arithmetic around them
 * (Shape → Concat → Resize sizes), which must never be quantized.
 */
export function inferElemTypes(graph: Graph): Map<string, ElemType> {
  const types = new Map<string, ElemType>();
  for (const v of graph.inputs) types.set(v.name, v.type);
  for (const t of graph.initializers) types.set(t.name, t.type);
  for (const v of graph.valueInfo) types.set(v.name, v.type);
  for (const node of graph.nodes) {
    const first = node.inputs.map((i) => types.get(i)).find((t) => t !== undefined);
    let out: ElemType | undefined;
    const to = node.attributes.to;
    const value = node.attributes.value;
    if (node.opType === 'Cast' && to?.type === 'int') out = BY_NUMBER.get(to.value);
    else if (INT64_OUTPUTS.has(node.opType)) out = 'int64';
    else if (BOOL_OUTPUTS.has(node.opType)) out = 'bool';
    else if (node.opType === 'DequantizeLinear') out = 'float32';
    else if (node.opType === 'QuantizeLinear') out = types.get(node.inputs[2] ?? '') ?? 'uint8';
    else if ((node.opType === 'Constant' || node.opType === 'ConstantOfShape') && value?.type === 'tensor')
      out = value.value.type;
    else if (node.opType === 'ConstantOfShape') out = 'float32';
    else if (node.opType === 'Where') out = types.get(node.inputs[1] ?? '');
    else out = first;
    if (out) for (const o of node.outputs) types.set(o, out);
    if (node.opType === 'TopK' && node.outputs[1]) types.set(node.outputs[1], 'int64');
  }
  return types;
}
