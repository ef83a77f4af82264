import { ArgusError } from '../../common/errors.ts';
import { type ElemType, elementCount, type Tensor, type TensorValues, tensorNumbers } from '../onnx/ir.ts';
import { NodeAttrs } from './attrs.ts';
import { type TfNode, tfDtype } from './graph-model.ts';

/**
 * Evaluates small constant subgraphs at conversion time (shape arithmetic that exporters leave in
 * graphs, such as SparseToDense/AddV2 computing Reshape targets). Only ops listed here are folded;
 * others with constant inputs are emitted as ONNX nodes and left to ONNX Runtime's optimiser.
 */

function fromNumbers(name: string, type: ElemType, dims: number[], values: number[]): Tensor {
  let data: TensorValues;
  switch (type) {
    case 'int64':
      data = BigInt64Array.from(values, (v) => BigInt(Math.trunc(v)));
      break;
    case 'int32':
      data = Int32Array.from(values);
      break;
    case 'bool':
    case 'uint8':
      data = Uint8Array.from(values);
      break;
    case 'float32':
      data = Float32Array.from(values);
      break;
    default:
      throw new ArgusError(`constant folding of ${type} tensors is not supported ("${name}")`);
  }
  return { name, type, dims, data };
}

export function broadcastShape(a: number[], b: number[]): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new ArgusError(`shapes [${a}] and [${b}] do not broadcast`);
    out.push(Math.max(da, db));
  }
  return out;
}

function broadcastIndex(flat: number, out: number[], shape: number[]): number {
  let idx = 0;
  let stride = 1;
  let rem = flat;
  const offset = out.length - shape.length;
  const coords: number[] = new Array(out.length);
  for (let d = out.length - 1; d >= 0; d--) {
    coords[d] = rem % out[d]!;
    rem = Math.floor(rem / out[d]!);
  }
  for (let d = shape.length - 1; d >= 0; d--) {
    const c = shape[d] === 1 ? 0 : coords[d + offset]!;
    idx += c * stride;
    stride *= shape[d]!;
  }
  return idx;
}

const BINARY: Record<string, (a: number, b: number) => number> = {
  Add: (a, b) => a + b,
  AddV2: (a, b) => a + b,
  Sub: (a, b) => a - b,
  Mul: (a, b) => a * b,
  RealDiv: (a, b) => a / b,
  FloorDiv: (a, b) => Math.floor(a / b),
  FloorMod: (a, b) => a - Math.floor(a / b) * b,
  Maximum: (a, b) => Math.max(a, b),
  Minimum: (a, b) => Math.min(a, b),
};

export const FOLDABLE_OPS = new Set([
  ...Object.keys(BINARY),
  'SparseToDense',
  'Cast',
  'Reshape',
  'ConcatV2',
  'Pack',
  'ExpandDims',
  'Identity',
]);

function axisOf(t: Tensor): number {
  return tensorNumbers(t)[0]!;
}

/** Folds `node` given its constant inputs; the result is named after the node. */
export function evaluateConstNode(node: TfNode, inputs: Tensor[]): Tensor {
  const name = node.name;
  const attrs = new NodeAttrs(node);
  const binary = BINARY[node.op];
  if (binary) {
    const [a, b] = inputs as [Tensor, Tensor];
    const dims = broadcastShape(a.dims, b.dims);
    const av = tensorNumbers(a);
    const bv = tensorNumbers(b);
    const out = Array.from({ length: elementCount(dims) }, (_, i) =>
      binary(av[broadcastIndex(i, dims, a.dims)]!, bv[broadcastIndex(i, dims, b.dims)]!),
    );
    return fromNumbers(name, a.type, dims, out);
  }
  switch (node.op) {
    case 'Identity':
      return { ...inputs[0]!, name };
    case 'Cast':
      return fromNumbers(name, tfDtype(attrs.type('DstT'), name), inputs[0]!.dims, tensorNumbers(inputs[0]!));
    case 'SparseToDense': {
      const [indices, outputShape, values, fallback] = inputs as [Tensor, Tensor, Tensor, Tensor];
      const dims = tensorNumbers(outputShape);
      const out = new Array(elementCount(dims)).fill(tensorNumbers(fallback)[0]);
      const idx = tensorNumbers(indices);
      const vals = tensorNumbers(values);
      const rank = indices.dims.length === 2 ? indices.dims[1]! : 1;
      const n = indices.dims[0] ?? (indices.dims.length === 0 ? 1 : 0);
      for (let i = 0; i < n; i++) {
        let flat = 0;
        for (let d = 0; d < rank; d++) flat = flat * dims[d]! + idx[i * rank + d]!;
        out[flat] = vals.length === 1 ? vals[0] : vals[i];
      }
      return fromNumbers(name, values.type, dims, out);
    }
    case 'Reshape': {
      const [x, shape] = inputs as [Tensor, Tensor];
      const target = tensorNumbers(shape);
      const known = target.filter((d) => d !== -1).reduce((p, d) => p * d, 1);
      const dims = target.map((d) => (d === -1 ? elementCount(x.dims) / known : d));
      return { ...x, name, dims };
    }
    case 'ExpandDims': {
      const [x, axisT] = inputs as [Tensor, Tensor];
      let axis = axisOf(axisT);
      if (axis < 0) axis += x.dims.length + 1;
      const dims = [...x.dims];
      dims.splice(axis, 0, 1);
      return { ...x, name, dims };
    }
    case 'Pack':
    case 'ConcatV2': {
      const parts = node.op === 'Pack' ? inputs : inputs.slice(0, -1);
      const first = parts[0]!;
      const packed = node.op === 'Pack';
      let axis = packed ? attrs.int('axis', 0) : axisOf(inputs[inputs.length - 1]!);
      const rank = first.dims.length + (packed ? 1 : 0);
      if (axis < 0) axis += rank;
      const shapes = parts.map((p) => {
        const d = [...p.dims];
        if (packed) d.splice(axis, 0, 1);
        return d;
      });
      const dims = [...shapes[0]!];
      dims[axis] = shapes.reduce((s, d) => s + d[axis]!, 0);
      const outer = dims.slice(0, axis).reduce((p, d) => p * d, 1);
      const out: number[] = [];
      for (let o = 0; o < outer; o++) {
        parts.forEach((p, k) => {
          const block = elementCount(shapes[k]!.slice(axis));
          out.push(...tensorNumbers(p).slice(o * block, (o + 1) * block));
        });
      }
      return fromNumbers(name, first.type, dims, out);
    }
    default:
      throw new ArgusError(`internal: ${node.op} is not foldable`);
  }
}
