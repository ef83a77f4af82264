import { attr, ONNX_DATA_TYPE } from '../../onnx/ir.ts';
import { broadcastShape } from '../const-eval.ts';
import { tfDtype } from '../graph-model.ts';
import type { OpHandler } from './types.ts';

const UNARY: Record<string, string> = {
  Sigmoid: 'Sigmoid',
  Relu: 'Relu',
  Tanh: 'Tanh',
  Exp: 'Exp',
  Log: 'Log',
  Sqrt: 'Sqrt',
  Abs: 'Abs',
  Neg: 'Neg',
  Floor: 'Floor',
  Ceil: 'Ceil',
  Elu: 'Elu',
  Softplus: 'Softplus',
  Identity: 'Identity',
};

const BINARY: Record<string, string> = {
  Add: 'Add',
  AddV2: 'Add',
  BiasAdd: 'Add',
  Sub: 'Sub',
  Mul: 'Mul',
  RealDiv: 'Div',
  Div: 'Div',
  Maximum: 'Max',
  Minimum: 'Min',
  Pow: 'Pow',
};

const COMPARE: Record<string, string> = {
  Equal: 'Equal',
  Greater: 'Greater',
  Less: 'Less',
  GreaterEqual: 'GreaterOrEqual',
  LessEqual: 'LessOrEqual',
};

const unary =
  (onnxOp: string): OpHandler =>
  (ctx, node) => {
    const x = ctx.input(node, 0);
    return [ctx.emit1(onnxOp, [x.name], x.type, x.shape, node.name)];
  };

const binary =
  (onnxOp: string, boolResult = false): OpHandler =>
  (ctx, node) => {
    const a = ctx.input(node, 0);
    const b = ctx.input(node, 1);
    return [
      ctx.emit1(
        onnxOp,
        [a.name, b.name],
        boolResult ? 'bool' : a.type,
        broadcastShape(a.shape, b.shape),
        node.name,
      ),
    ];
  };

/** floor division and modulo with TensorFlow's (Python's) rounding toward −∞ */
const floorDivMod =
  (mode: 'div' | 'mod'): OpHandler =>
  (ctx, node) => {
    const a = ctx.input(node, 0);
    const b = ctx.input(node, 1);
    const shape = broadcastShape(a.shape, b.shape);
    const isFloat = a.type === 'float32';
    if (isFloat) {
      const q = ctx.emit1('Div', [a.name, b.name], a.type, shape, `${node.name}/div`);
      const fq = ctx.emit1(
        'Floor',
        [q.name],
        a.type,
        shape,
        mode === 'div' ? node.name : `${node.name}/floor`,
      );
      if (mode === 'div') return [fq];
      const prod = ctx.emit1('Mul', [fq.name, b.name], a.type, shape, `${node.name}/mul`);
      return [ctx.emit1('Sub', [a.name, prod.name], a.type, shape, node.name)];
    }
    // integer Mod with fmod=0 takes the divisor's sign, which is floor-mod; a - mod is divisible by b
    const mod = ctx.emit1(
      'Mod',
      [a.name, b.name],
      a.type,
      shape,
      mode === 'mod' ? node.name : `${node.name}/mod`,
      {
        fmod: attr.int(0),
      },
    );
    if (mode === 'mod') return [mod];
    const exact = ctx.emit1('Sub', [a.name, mod.name], a.type, shape, `${node.name}/sub`);
    return [ctx.emit1('Div', [exact.name, b.name], a.type, shape, node.name)];
  };

export const ELEMENTWISE_OPS: Record<string, OpHandler> = {
  ...Object.fromEntries(Object.entries(UNARY).map(([tf, onnx]) => [tf, unary(onnx)])),
  ...Object.fromEntries(Object.entries(BINARY).map(([tf, onnx]) => [tf, binary(onnx)])),
  ...Object.fromEntries(Object.entries(COMPARE).map(([tf, onnx]) => [tf, binary(onnx, true)])),
  FloorDiv: floorDivMod('div'),
  FloorMod: floorDivMod('mod'),
  Relu6: (ctx, node) => {
    const x = ctx.input(node, 0);
    const lo = ctx.scalar('float32', 0, `${node.name}/min`);
    const hi = ctx.scalar('float32', 6, `${node.name}/max`);
    return [ctx.emit1('Clip', [x.name, lo, hi], x.type, x.shape, node.name)];
  },
  LeakyRelu: (ctx, node, attrs) => {
    const x = ctx.input(node, 0);
    return [
      ctx.emit1('LeakyRelu', [x.name], x.type, x.shape, node.name, {
        alpha: attr.float(attrs.float('alpha', 0.2)),
      }),
    ];
  },
  Rsqrt: (ctx, node) => {
    const x = ctx.input(node, 0);
    const s = ctx.emit1('Sqrt', [x.name], x.type, x.shape, `${node.name}/sqrt`);
    return [ctx.emit1('Reciprocal', [s.name], x.type, x.shape, node.name)];
  },
  Square: (ctx, node) => {
    const x = ctx.input(node, 0);
    return [ctx.emit1('Mul', [x.name, x.name], x.type, x.shape, node.name)];
  },
  SquaredDifference: (ctx, node) => {
    const a = ctx.input(node, 0);
    const b = ctx.input(node, 1);
    const shape = broadcastShape(a.shape, b.shape);
    const d = ctx.emit1('Sub', [a.name, b.name], a.type, shape, `${node.name}/sub`);
    return [ctx.emit1('Mul', [d.name, d.name], a.type, shape, node.name)];
  },
  Cast: (ctx, node, attrs) => {
    const x = ctx.input(node, 0);
    const to = tfDtype(attrs.type('DstT'), node.name);
    return [ctx.emit1('Cast', [x.name], to, x.shape, node.name, { to: attr.int(ONNX_DATA_TYPE[to]) })];
  },
};
