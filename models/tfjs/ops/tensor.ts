import { ArgusError } from '../../../common/errors.ts';
import { attr, elementCount, ONNX_DATA_TYPE, tensorNumbers } from '../../onnx/ir.ts';
import type { Value } from '../converter.ts';
import type { OpHandler } from './types.ts';

const INT64_MAX = 2 ** 62;

function normAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

/** number of elements Python-style slicing [start:end:step] takes from a dimension of size `dim` */
function sliceLength(dim: number, start: number, end: number, step: number): number {
  const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
  let s = start < 0 ? start + dim : start;
  let e = end < 0 ? end + dim : end;
  if (step > 0) {
    s = clamp(s, 0, dim);
    e = clamp(e, 0, dim);
    return Math.max(0, Math.ceil((e - s) / step));
  }
  s = clamp(s, -1, dim - 1);
  e = clamp(e, -1, dim - 1);
  return Math.max(0, Math.ceil((s - e) / -step));
}

const reshape: OpHandler = (ctx, node) => {
  const x = ctx.input(node, 0);
  const target = tensorNumbers(ctx.constant(node, 1));
  const known = target.filter((d) => d !== -1).reduce((p, d) => p * d, 1);
  const shape = target.map((d) => (d === -1 ? elementCount(x.shape) / known : d));
  if (elementCount(shape) !== elementCount(x.shape)) {
    throw new ArgusError(`node "${node.name}": cannot reshape [${x.shape}] to [${target}]`);
  }
  // with a symbolic batch, a leading 1 that is the batch becomes 0 ("copy dimension 0 from the input")
  const onnxTarget =
    ctx.options.dynamicBatch && target[0] === 1 && x.shape[0] === 1 ? [0, ...target.slice(1)] : target;
  return [
    ctx.emit1('Reshape', [x.name, ctx.int64s(onnxTarget, `${node.name}/shape`)], x.type, shape, node.name),
  ];
};

const transpose: OpHandler = (ctx, node) => {
  const x = ctx.input(node, 0);
  const perm = tensorNumbers(ctx.constant(node, 1));
  return [
    ctx.emit1(
      'Transpose',
      [x.name],
      x.type,
      perm.map((p) => x.shape[p]!),
      node.name,
      { perm: attr.ints(perm) },
    ),
  ];
};

function concatValues(ctx: Parameters<OpHandler>[0], parts: Value[], axisIn: number, hint: string): Value {
  const rank = parts[0]!.shape.length;
  const axis = normAxis(axisIn, rank);
  const shape = [...parts[0]!.shape];
  shape[axis] = parts.reduce((s, p) => s + p.shape[axis]!, 0);
  return ctx.emit1(
    'Concat',
    parts.map((p) => p.name),
    parts[0]!.type,
    shape,
    hint,
    { axis: attr.int(axis) },
  );
}

const concat: OpHandler = (ctx, node, attrs) => {
  const n = attrs.int('N');
  const parts = Array.from({ length: n }, (_, i) => ctx.input(node, i));
  const axis = tensorNumbers(ctx.constant(node, n))[0]!;
  return [concatValues(ctx, parts, axis, node.name)];
};

const pack: OpHandler = (ctx, node, attrs) => {
  const n = attrs.int('N');
  const axis = normAxis(attrs.int('axis', 0), ctx.input(node, 0).shape.length + 1);
  const parts = Array.from({ length: n }, (_, i) => {
    const x = ctx.input(node, i);
    const shape = [...x.shape];
    shape.splice(axis, 0, 1);
    return ctx.emit1(
      'Unsqueeze',
      [x.name, ctx.int64s([axis], `${node.name}/axes`)],
      x.type,
      shape,
      `${node.name}/unsqueeze`,
    );
  });
  return [concatValues(ctx, parts, axis, node.name)];
};

const pad: OpHandler = (ctx, node) => {
  const x = ctx.input(node, 0);
  const paddings = tensorNumbers(ctx.constant(node, 1));
  const rank = x.shape.length;
  const before = Array.from({ length: rank }, (_, d) => paddings[d * 2]!);
  const after = Array.from({ length: rank }, (_, d) => paddings[d * 2 + 1]!);
  const inputs = [x.name, ctx.int64s([...before, ...after], `${node.name}/pads`)];
  if (node.op === 'PadV2') inputs.push(ctx.input(node, 2).name);
  return [
    ctx.emit1(
      'Pad',
      inputs,
      x.type,
      x.shape.map((d, i) => d + before[i]! + after[i]!),
      node.name,
      { mode: attr.string('constant') },
    ),
  ];
};

const reduce =
  (onnxOp: string): OpHandler =>
  (ctx, node, attrs) => {
    const x = ctx.input(node, 0);
    const axes = tensorNumbers(ctx.constant(node, 1)).map((a) => normAxis(a, x.shape.length));
    const keep = attrs.bool('keep_dims', false);
    const shape = keep
      ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d))
      : x.shape.filter((_, i) => !axes.includes(i));
    return [
      ctx.emit1(onnxOp, [x.name, ctx.int64s(axes, `${node.name}/axes`)], x.type, shape, node.name, {
        keepdims: attr.int(keep ? 1 : 0),
      }),
    ];
  };

const splitV: OpHandler = (ctx, node) => {
  const x = ctx.input(node, 0);
  const sizes = tensorNumbers(ctx.constant(node, 1));
  const axis = normAxis(tensorNumbers(ctx.constant(node, 2))[0]!, x.shape.length);
  const known = sizes.filter((s) => s !== -1).reduce((a, b) => a + b, 0);
  const resolved = sizes.map((s) => (s === -1 ? x.shape[axis]! - known : s));
  return ctx.emit(
    'Split',
    [x.name, ctx.int64s(resolved, `${node.name}/split`)],
    resolved.map((s) => ({ type: x.type, shape: x.shape.map((d, i) => (i === axis ? s : d)) })),
    node.name,
    { axis: attr.int(axis) },
  );
};

const split: OpHandler = (ctx, node, attrs) => {
  const axisT = ctx.constant(node, 0);
  const x = ctx.input(node, 1);
  const n = attrs.int('num_split');
  const axis = normAxis(tensorNumbers(axisT)[0]!, x.shape.length);
  const size = x.shape[axis]! / n;
  return ctx.emit(
    'Split',
    [x.name, ctx.int64s(new Array(n).fill(size), `${node.name}/split`)],
    Array.from({ length: n }, () => ({
      type: x.type,
      shape: x.shape.map((d, i) => (i === axis ? size : d)),
    })),
    node.name,
    { axis: attr.int(axis) },
  );
};

const stridedSlice: OpHandler = (ctx, node, attrs) => {
  const x = ctx.input(node, 0);
  const begin = tensorNumbers(ctx.constant(node, 1));
  const end = tensorNumbers(ctx.constant(node, 2));
  const strides = tensorNumbers(ctx.constant(node, 3));
  if (attrs.int('ellipsis_mask', 0) || attrs.int('new_axis_mask', 0)) {
    throw new ArgusError(
      `node "${node.name}": StridedSlice with ellipsis or new-axis masks is not supported`,
    );
  }
  const beginMask = attrs.int('begin_mask', 0);
  const endMask = attrs.int('end_mask', 0);
  const shrinkMask = attrs.int('shrink_axis_mask', 0);
  const starts: number[] = [];
  const ends: number[] = [];
  const shape = [...x.shape];
  begin.forEach((b, i) => {
    const step = strides[i]!;
    const dim = x.shape[i]!;
    const bit = 1 << i;
    let s = beginMask & bit ? (step > 0 ? 0 : INT64_MAX) : b;
    let e = endMask & bit ? (step > 0 ? INT64_MAX : -INT64_MAX) : end[i]!;
    if (shrinkMask & bit) {
      s = b < 0 ? b + dim : b;
      e = s + 1;
    }
    starts.push(s);
    ends.push(e);
    shape[i] = sliceLength(dim, s === INT64_MAX ? dim - 1 : s, e === -INT64_MAX ? -dim - 1 : e, step);
  });
  const axes = begin.map((_, i) => i);
  const sliced = ctx.emit1(
    'Slice',
    [
      x.name,
      ctx.int64s(starts, `${node.name}/starts`),
      ctx.int64s(ends, `${node.name}/ends`),
      ctx.int64s(axes, `${node.name}/axes`),
      ctx.int64s(strides, `${node.name}/steps`),
    ],
    x.type,
    shape,
    shrinkMask ? `${node.name}/slice` : node.name,
  );
  if (!shrinkMask) return [sliced];
  const squeezed = axes.filter((i) => shrinkMask & (1 << i));
  return [
    ctx.emit1(
      'Squeeze',
      [sliced.name, ctx.int64s(squeezed, `${node.name}/squeeze_axes`)],
      x.type,
      shape.filter((_, i) => !squeezed.includes(i)),
      node.name,
    ),
  ];
};

const expandDims: OpHandler = (ctx, node) => {
  const x = ctx.input(node, 0);
  const axis = normAxis(tensorNumbers(ctx.constant(node, 1))[0]!, x.shape.length + 1);
  const shape = [...x.shape];
  shape.splice(axis, 0, 1);
  return [
    ctx.emit1('Unsqueeze', [x.name, ctx.int64s([axis], `${node.name}/axes`)], x.type, shape, node.name),
  ];
};

const squeeze: OpHandler = (ctx, node, attrs) => {
  const x = ctx.input(node, 0);
  const dims = attrs.ints('squeeze_dims', []);
  const axes =
    dims.length > 0
      ? dims.map((a) => normAxis(a, x.shape.length))
      : x.shape.flatMap((d, i) => (d === 1 ? [i] : []));
  return [
    ctx.emit1(
      'Squeeze',
      [x.name, ctx.int64s(axes, `${node.name}/axes`)],
      x.type,
      x.shape.filter((_, i) => !axes.includes(i)),
      node.name,
    ),
  ];
};

const topK: OpHandler = (ctx, node) => {
  const x = ctx.input(node, 0);
  const k = tensorNumbers(ctx.constant(node, 1))[0]!;
  const shape = [...x.shape.slice(0, -1), k];
  const [values, indices] = ctx.emit(
    'TopK',
    [x.name, ctx.int64s([k], `${node.name}/k`)],
    [
      { type: x.type, shape },
      { type: 'int64', shape },
    ],
    node.name,
    { axis: attr.int(-1), largest: attr.int(1), sorted: attr.int(1) },
  ) as [Value, Value];
  // TensorFlow returns int32 indices
  const idx32 = ctx.emit1('Cast', [indices.name], 'int32', shape, `${node.name}:1`, {
    to: attr.int(ONNX_DATA_TYPE.int32),
  });
  return [values, idx32];
};

const gather: OpHandler = (ctx, node, attrs) => {
  if (attrs.int('batch_dims', 0) !== 0)
    throw new ArgusError(`node "${node.name}": GatherV2 with batch_dims is not supported`);
  const params = ctx.input(node, 0);
  const indices = ctx.input(node, 1);
  const axis = normAxis(tensorNumbers(ctx.constant(node, 2))[0]!, params.shape.length);
  const shape = [...params.shape.slice(0, axis), ...indices.shape, ...params.shape.slice(axis + 1)];
  return [
    ctx.emit1('Gather', [params.name, indices.name], params.type, shape, node.name, { axis: attr.int(axis) }),
  ];
};

export const TENSOR_OPS: Record<string, OpHandler> = {
  Reshape: reshape,
  Transpose: transpose,
  ConcatV2: concat,
  Pack: pack,
  Pad: pad,
  PadV2: pad,
  Mean: reduce('ReduceMean'),
  Max: reduce('ReduceMax'),
  Sum: reduce('ReduceSum'),
  SplitV: splitV,
  Split: split,
  StridedSlice: stridedSlice,
  ExpandDims: expandDims,
  Squeeze: squeeze,
  TopKV2: topK,
  GatherV2: gather,
};
