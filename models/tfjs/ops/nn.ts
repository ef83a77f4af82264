import { ArgusError } from '../../../common/errors.ts';
import { attr, float32Tensor, type Tensor } from '../../onnx/ir.ts';
import type { NodeAttrs } from '../attrs.ts';
import type { ConversionContext, Value } from '../converter.ts';
import type { TfNode } from '../graph-model.ts';
import type { OpHandler } from './types.ts';

const TO_NCHW = [0, 3, 1, 2];
const TO_NHWC = [0, 2, 3, 1];

function permute<T>(values: T[], perm: number[]): T[] {
  return perm.map((p) => values[p]!);
}

interface Spatial {
  nchw: boolean;
  /** [h, w] */
  strides: number[];
  dilations: number[];
  /** ONNX pads [top, left, bottom, right] */
  pads: number[];
  /** output [h, w] */
  out: number[];
}

/** TF padding (SAME / VALID / EXPLICIT) resolved to explicit ONNX pads against the known input size */
function spatial(node: TfNode, attrs: NodeAttrs, inputShape: number[], kernel: number[]): Spatial {
  const nchw = attrs.string('data_format', 'NHWC') === 'NCHW';
  const pick = (v: number[]) => (nchw ? [v[2]!, v[3]!] : [v[1]!, v[2]!]);
  const strides = pick(attrs.ints('strides', [1, 1, 1, 1]));
  const dilations = pick(attrs.ints('dilations', [1, 1, 1, 1]));
  const size = pick(inputShape);
  const padding = attrs.string('padding');
  const before: number[] = [];
  const after: number[] = [];
  const out: number[] = [];
  for (let d = 0; d < 2; d++) {
    const eff = (kernel[d]! - 1) * dilations[d]! + 1;
    const stride = strides[d]!;
    if (padding === 'SAME') {
      const o = Math.ceil(size[d]! / stride);
      const total = Math.max((o - 1) * stride + eff - size[d]!, 0);
      before.push(Math.floor(total / 2));
      after.push(total - Math.floor(total / 2));
      out.push(o);
    } else if (padding === 'VALID') {
      before.push(0);
      after.push(0);
      out.push(Math.floor((size[d]! - eff) / stride) + 1);
    } else if (padding === 'EXPLICIT') {
      const explicit = attrs.ints('explicit_paddings');
      const axis = nchw ? d + 2 : d + 1;
      before.push(explicit[axis * 2]!);
      after.push(explicit[axis * 2 + 1]!);
      out.push(Math.floor((size[d]! + before[d]! + after[d]! - eff) / stride) + 1);
    } else {
      throw new ArgusError(`node "${node.name}": unsupported padding "${padding}"`);
    }
  }
  return { nchw, strides, dilations, pads: [...before, ...after], out };
}

function toNchw(ctx: ConversionContext, x: Value, hint: string, nchw: boolean): Value {
  if (nchw) return x;
  return ctx.emit1('Transpose', [x.name], x.type, permute(x.shape, TO_NCHW), `${hint}/to_nchw`, {
    perm: attr.ints(TO_NCHW),
  });
}

function fromNchw(ctx: ConversionContext, x: Value, hint: string, nchw: boolean): Value {
  if (nchw) return x;
  return ctx.emit1('Transpose', [x.name], x.type, permute(x.shape, TO_NHWC), hint, {
    perm: attr.ints(TO_NHWC),
  });
}

/** [kh, kw, cin, cout] → [cout, cin, kh, kw]; depthwise [kh, kw, c, m] → [c·m, 1, kh, kw] */
function convWeights(filter: Tensor, depthwise: boolean): { data: Float32Array; dims: number[] } {
  const [kh, kw, ci, co] = filter.dims as [number, number, number, number];
  const src = filter.data as Float32Array;
  const outCh = depthwise ? ci * co : co;
  const inCh = depthwise ? 1 : ci;
  const data = new Float32Array(outCh * inCh * kh * kw);
  for (let y = 0; y < kh; y++) {
    for (let x = 0; x < kw; x++) {
      for (let i = 0; i < ci; i++) {
        for (let o = 0; o < co; o++) {
          const v = src[((y * kw + x) * ci + i) * co + o]!;
          const oc = depthwise ? i * co + o : o;
          const ic = depthwise ? 0 : i;
          data[((oc * inCh + ic) * kh + y) * kw + x] = v;
        }
      }
    }
  }
  return { data, dims: [outCh, inCh, kh, kw] };
}

const ACTIVATIONS = new Set(['Relu', 'Relu6', 'LeakyRelu', 'Elu', 'Sigmoid', 'Tanh']);

function activation(ctx: ConversionContext, node: TfNode, attrs: NodeAttrs, op: string, x: Value): Value {
  const hint = `${node.name}/${op.toLowerCase()}`;
  switch (op) {
    case 'Relu6': {
      const lo = ctx.scalar('float32', 0, `${node.name}/clip_min`);
      const hi = ctx.scalar('float32', 6, `${node.name}/clip_max`);
      return ctx.emit1('Clip', [x.name, lo, hi], x.type, x.shape, hint);
    }
    case 'LeakyRelu':
      return ctx.emit1('LeakyRelu', [x.name], x.type, x.shape, hint, {
        alpha: attr.float(attrs.float('leakyrelu_alpha', 0.2)),
      });
    default:
      return ctx.emit1(op, [x.name], x.type, x.shape, hint);
  }
}

/** Conv2D, DepthwiseConv2dNative and their fused forms (BiasAdd / FusedBatchNorm + activation) */
const conv =
  (depthwise: boolean, fused: boolean): OpHandler =>
  (ctx, node, attrs) => {
    const x = ctx.input(node, 0);
    const filter = ctx.constant(node, 1);
    if (filter.type !== 'float32' || filter.dims.length !== 4) {
      throw new ArgusError(`node "${node.name}": the filter must be a float32 [kh,kw,cin,cout] constant`);
    }
    const w = convWeights(filter, depthwise);
    const outCh = w.dims[0]!;
    let bias: Float32Array | undefined;
    const ops = fused ? attrs.strings('fused_ops') : [];
    let act: string | undefined;
    for (const op of ops) {
      if (op === 'BiasAdd') {
        bias = Float32Array.from(ctx.constant(node, 2).data as Float32Array);
      } else if (op === 'FusedBatchNorm') {
        const [scale, offset, mean, variance] = [2, 3, 4, 5].map(
          (k) => ctx.constant(node, k).data as Float32Array,
        );
        const eps = attrs.float('epsilon', 1e-3);
        const per = w.data.length / outCh;
        bias = new Float32Array(outCh);
        for (let o = 0; o < outCh; o++) {
          const k = scale![o]! / Math.sqrt(variance![o]! + eps);
          for (let j = 0; j < per; j++) w.data[o * per + j]! *= k;
          bias[o] = offset![o]! - mean![o]! * k;
        }
      } else if (ACTIVATIONS.has(op)) {
        act = op;
      } else {
        throw new ArgusError(`node "${node.name}": unsupported fused op "${op}" in ${node.op}`);
      }
    }
    const geo = spatial(node, attrs, x.shape, [w.dims[2]!, w.dims[3]!]);
    const inputs = [
      toNchw(ctx, x, node.name, geo.nchw).name,
      ctx.initializer(float32Tensor('', w.dims, w.data), `${node.name}/weights`).name,
    ];
    if (bias) inputs.push(ctx.initializer(float32Tensor('', [outCh], bias), `${node.name}/bias`).name);
    const n = x.shape[0]!;
    let y = ctx.emit1('Conv', inputs, 'float32', [n, outCh, geo.out[0]!, geo.out[1]!], `${node.name}/conv`, {
      strides: attr.ints(geo.strides),
      dilations: attr.ints(geo.dilations),
      pads: attr.ints(geo.pads),
      group: attr.int(depthwise ? filter.dims[2]! : 1),
    });
    if (act) y = activation(ctx, node, attrs, act, y);
    return [fromNchw(ctx, y, node.name, geo.nchw)];
  };

const pool =
  (onnxOp: 'MaxPool' | 'AveragePool'): OpHandler =>
  (ctx, node, attrs) => {
    const x = ctx.input(node, 0);
    const ksize = attrs.ints('ksize');
    const nchw = attrs.string('data_format', 'NHWC') === 'NCHW';
    const kernel = nchw ? [ksize[2]!, ksize[3]!] : [ksize[1]!, ksize[2]!];
    const geo = spatial(node, attrs, x.shape, kernel);
    const c = nchw ? x.shape[1]! : x.shape[3]!;
    const y = ctx.emit1(
      onnxOp,
      [toNchw(ctx, x, node.name, nchw).name],
      x.type,
      [x.shape[0]!, c, geo.out[0]!, geo.out[1]!],
      `${node.name}/pool`,
      { kernel_shape: attr.ints(kernel), strides: attr.ints(geo.strides), pads: attr.ints(geo.pads) },
    );
    return [fromNchw(ctx, y, node.name, nchw)];
  };

/**
 * For a graph that runs on inputs of any size: the factors that resize [h, w] to `size` (scales of
 * every NCHW axis), which must be powers of two so that the layer keeps its ratio at other sizes
 */
function resizeFactors(name: string, ctx: ConversionContext, from: [number, number], size: number[]): string {
  const factors = from.map((d, i) => size[i]! / d);
  if (factors.some((f) => !Number.isInteger(Math.log2(f)))) {
    throw new ArgusError(
      `node "${name}" resizes ${from.join('×')} to ${size.join('×')}: not a power-of-two factor, so the graph cannot run on other input sizes`,
      'convert the model without a sizeStep',
    );
  }
  return ctx.initializer(float32Tensor('', [4], [1, 1, ...factors]), `${name}/scales`).name;
}

const resize =
  (mode: 'linear' | 'nearest'): OpHandler =>
  (ctx, node, attrs) => {
    const x = ctx.input(node, 0);
    const size = Array.from(ctx.constant(node, 1).data as ArrayLike<number | bigint>, Number);
    const alignCorners = attrs.bool('align_corners', false);
    const halfPixel = attrs.bool('half_pixel_centers', false);
    const transform = alignCorners
      ? 'align_corners'
      : halfPixel
        ? mode === 'nearest'
          ? 'tf_half_pixel_for_nn'
          : 'half_pixel'
        : 'asymmetric';
    const nchw = toNchw(ctx, x, node.name, false);
    const [n, c, h, w] = nchw.shape as [number, number, number, number];
    const attributes = {
      mode: attr.string(mode),
      coordinate_transformation_mode: attr.string(transform),
      ...(mode === 'nearest'
        ? { nearest_mode: attr.string(alignCorners ? 'round_prefer_ceil' : 'floor') }
        : {}),
    };
    // a fixed output size, or (for a graph that runs on any input size) a fixed factor
    const [target, extra] =
      ctx.options.sizeStep === undefined
        ? [['', '', ctx.int64s(size, `${node.name}/sizes`)], { axes: attr.ints([2, 3]) }]
        : [['', resizeFactors(node.name, ctx, [h, w], size)], {}];
    const y = ctx.emit1(
      'Resize',
      [nchw.name, ...target],
      x.type,
      [n, c, size[0]!, size[1]!],
      `${node.name}/resize`,
      { ...attributes, ...extra },
    );
    return [fromNchw(ctx, y, node.name, false)];
  };

export const NN_OPS: Record<string, OpHandler> = {
  Conv2D: conv(false, false),
  _FusedConv2D: conv(false, true),
  DepthwiseConv2dNative: conv(true, false),
  FusedDepthwiseConv2dNative: conv(true, true),
  MaxPool: pool('MaxPool'),
  AvgPool: pool('AveragePool'),
  ResizeBilinear: resize('linear'),
  ResizeNearestNeighbor: resize('nearest'),
};
