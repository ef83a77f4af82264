import { ArgusError } from '../../common/errors.ts';
import {
  ARGUS_IR_VERSION,
  ARGUS_OPSET,
  type Attribute,
  createNode,
  type ElemType,
  float32Tensor,
  int64Tensor,
  type Model,
  type Node,
  type Tensor,
  type ValueInfo,
} from '../onnx/ir.ts';
import { NodeAttrs } from './attrs.ts';
import { evaluateConstNode, FOLDABLE_OPS } from './const-eval.ts';
import { type TfGraphModel, type TfNode, tfDtype } from './graph-model.ts';
import { OP_HANDLERS } from './ops/index.ts';

/** A tensor in the ONNX graph under construction, with the static type and shape tracked for it. */
export interface Value {
  name: string;
  type: ElemType;
  /** static shape; dimension 0 is the batch (tracked as 1 while converting) */
  shape: number[];
}

export interface ConvertOptions {
  /** name of the produced ONNX graph */
  graphName: string;
  /** make the batch dimension symbolic so one session runs N frames per call */
  dynamicBatch: boolean;
  /**
   * the graph is to run on any input size that is a multiple of this (the descriptor's `sizeStep`):
   * layers that resize to a fixed size resize by a fixed factor instead
   */
  sizeStep?: number;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

/** what the op handlers see: inputs of the node being converted and ways to emit ONNX nodes */
export class ConversionContext {
  readonly nodes: Node[] = [];
  readonly initializers: Tensor[] = [];
  private readonly values = new Map<string, Value>();
  private readonly consts = new Map<string, Tensor>();
  private readonly materialized = new Map<string, Value>();
  private readonly names = new Set<string>();

  constructor(readonly options: ConvertOptions) {}

  /** "a" and "a:0" name the same output; "^a" is a control edge */
  static ref(input: string): string {
    return input.includes(':') ? input : `${input}:0`;
  }

  static dataInputs(node: TfNode): string[] {
    return (node.input ?? []).filter((i) => !i.startsWith('^'));
  }

  uniqueName(hint: string): string {
    let name = hint;
    for (let i = 1; this.names.has(name); i++) name = `${hint}_${i}`;
    this.names.add(name);
    return name;
  }

  setConst(ref: string, t: Tensor): void {
    this.consts.set(ref, t);
  }

  setValue(ref: string, v: Value): void {
    this.values.set(ref, v);
  }

  isConst(node: TfNode, index: number): boolean {
    const input = ConversionContext.dataInputs(node)[index];
    return input !== undefined && this.consts.has(ConversionContext.ref(input));
  }

  /** the node's `index`-th input as a conversion-time constant (an error if it is computed at run time) */
  constant(node: TfNode, index: number): Tensor {
    const input = ConversionContext.dataInputs(node)[index];
    if (input === undefined) throw new ArgusError(`node "${node.name}" (${node.op}) lacks input ${index}`);
    const t = this.consts.get(ConversionContext.ref(input));
    if (!t) {
      throw new ArgusError(
        `node "${node.name}" (${node.op}): input ${index} ("${input}") must be a constant, but it is computed at run time`,
      );
    }
    return t;
  }

  /** the node's `index`-th input as an ONNX value (constants become initializers on first use) */
  input(node: TfNode, index: number): Value {
    const input = ConversionContext.dataInputs(node)[index];
    if (input === undefined) throw new ArgusError(`node "${node.name}" (${node.op}) lacks input ${index}`);
    const ref = ConversionContext.ref(input);
    const v = this.values.get(ref);
    if (v) return v;
    const t = this.consts.get(ref);
    if (!t)
      throw new ArgusError(`node "${node.name}" (${node.op}): input "${input}" is not produced by the graph`);
    const done = this.materialized.get(ref);
    if (done) return done;
    const value = this.initializer(t, ref.endsWith(':0') ? ref.slice(0, -2) : ref);
    this.materialized.set(ref, value);
    return value;
  }

  initializer(t: Tensor, hint: string): Value {
    const name = this.uniqueName(hint);
    this.initializers.push({ ...t, name });
    return { name, type: t.type, shape: [...t.dims] };
  }

  int64s(values: number[], hint: string): string {
    return this.initializer(int64Tensor('', [values.length], values), hint).name;
  }

  scalar(type: 'float32' | 'int64', value: number, hint: string): string {
    const t = type === 'float32' ? float32Tensor('', [], [value]) : int64Tensor('', [], [value]);
    return this.initializer(t, hint).name;
  }

  /** appends one ONNX node; `outputs` are the types and shapes of what it produces */
  emit(
    opType: string,
    inputs: string[],
    outputs: { type: ElemType; shape: number[] }[],
    hint: string,
    attributes: Record<string, Attribute> = {},
  ): Value[] {
    const values = outputs.map((o, i) => ({
      name: this.uniqueName(outputs.length === 1 || i === 0 ? hint : `${hint}:${i}`),
      type: o.type,
      shape: o.shape,
    }));
    this.nodes.push(
      createNode(
        opType,
        inputs,
        values.map((v) => v.name),
        this.uniqueName(`${hint}/${opType}`),
        attributes,
      ),
    );
    return values;
  }

  emit1(
    opType: string,
    inputs: string[],
    type: ElemType,
    shape: number[],
    hint: string,
    attributes: Record<string, Attribute> = {},
  ): Value {
    return this.emit(opType, inputs, [{ type, shape }], hint, attributes)[0]!;
  }
}

function topologicalOrder(model: TfGraphModel, outputs: string[]): TfNode[] {
  const byName = new Map(model.nodes.map((n) => [n.name, n]));
  const order: TfNode[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (start: string) => {
    const stack: { name: string; expanded: boolean }[] = [{ name: start, expanded: false }];
    while (stack.length > 0) {
      const top = stack.pop()!;
      if (top.expanded) {
        state.set(top.name, 'done');
        order.push(byName.get(top.name)!);
        continue;
      }
      if (state.get(top.name) === 'done') continue;
      const node = byName.get(top.name);
      if (!node)
        throw new ArgusError(
          `${model.source}: the graph references node "${top.name}", which does not exist`,
        );
      state.set(top.name, 'visiting');
      stack.push({ name: top.name, expanded: true });
      for (const input of ConversionContext.dataInputs(node)) {
        const dep = input.split(':')[0]!;
        const s = state.get(dep);
        if (s === 'visiting') throw new ArgusError(`${model.source}: the graph has a cycle through "${dep}"`);
        if (s !== 'done') stack.push({ name: dep, expanded: false });
      }
    }
  };
  for (const o of outputs) visit(o);
  return order;
}

function outputNodeNames(model: TfGraphModel): string[] {
  if (model.outputs.length > 0) return model.outputs.map((o) => o.name.split(':')[0]!);
  const consumed = new Set(
    model.nodes.flatMap((n) => ConversionContext.dataInputs(n).map((i) => i.split(':')[0]!)),
  );
  return model.nodes.filter((n) => !consumed.has(n.name) && n.op !== 'Const').map((n) => n.name);
}

function valueInfo(v: Value, name: string, dynamicBatch: boolean): ValueInfo {
  return { name, type: v.type, shape: v.shape.map((d, i) => (i === 0 && dynamicBatch ? 'batch' : d)) };
}

/**
 * Converts a TensorFlow.js graph model to ONNX, keeping TensorFlow's NHWC layout and wrapping only
 * the layout-sensitive ops (Conv, pooling, Resize) in transposes that ONNX Runtime's optimiser
 * cancels out. Every op outside the supported set is reported by name.
 */
export function convertTfjsGraph(model: TfGraphModel, options: ConvertOptions): Model {
  const ctx = new ConversionContext(options);
  const outputs = outputNodeNames(model);
  const order = topologicalOrder(model, outputs);
  const unknown = [...new Set(order.map((n) => n.op))].filter(
    (op) => !OP_HANDLERS[op] && op !== 'Const' && op !== 'Placeholder' && !FOLDABLE_OPS.has(op),
  );
  if (unknown.length > 0) {
    const first = order.find((n) => n.op === unknown[0])!;
    throw new ArgusError(
      `${model.source}: unsupported TensorFlow op${unknown.length > 1 ? 's' : ''} ${unknown.map((o) => `"${o}"`).join(', ')} (first at node "${first.name}")`,
      `the converter supports: ${Object.keys(OP_HANDLERS).sort().join(', ')}`,
    );
  }

  const inputs: ValueInfo[] = [];
  order.forEach((node, i) => {
    if (options.signal?.aborted) throw options.signal.reason ?? new Error('aborted');
    const ref0 = `${node.name}:0`;
    if (node.op === 'Const') {
      const t = model.consts.get(node.name);
      if (!t) throw new ArgusError(`${model.source}: constant "${node.name}" has no weights in the manifest`);
      ctx.setConst(ref0, t);
    } else if (node.op === 'Placeholder') {
      const attrs = new NodeAttrs(node);
      const shape =
        attrs.shape('shape') ?? model.inputs.find((s) => s.name.split(':')[0] === node.name)?.shape;
      if (!shape || shape.some((d, k) => d < 0 && k > 0)) {
        throw new ArgusError(`${model.source}: input "${node.name}" has no fully known shape`);
      }
      const v: Value = {
        name: ctx.uniqueName(node.name),
        type: tfDtype(attrs.type('dtype'), node.name),
        shape: shape.map((d) => (d < 0 ? 1 : d)),
      };
      ctx.setValue(ref0, v);
      inputs.push(valueInfo(v, v.name, options.dynamicBatch));
    } else {
      const data = ConversionContext.dataInputs(node);
      const allConst = data.length > 0 && data.every((_, k) => ctx.isConst(node, k));
      if (allConst && FOLDABLE_OPS.has(node.op)) {
        ctx.setConst(
          ref0,
          evaluateConstNode(
            node,
            data.map((_, k) => ctx.constant(node, k)),
          ),
        );
      } else {
        const handler = OP_HANDLERS[node.op];
        if (!handler) throw new ArgusError(`node "${node.name}": ${node.op} must have constant inputs here`);
        const produced = handler(ctx, node, new NodeAttrs(node));
        for (const [k, v] of produced.entries()) ctx.setValue(`${node.name}:${k}`, v);
      }
    }
    if (i % 25 === 0) options.onProgress?.(i, order.length);
  });
  options.onProgress?.(order.length, order.length);

  const graphOutputs = outputs.map((name) => {
    const node = model.nodes.find((n) => n.name === name)!;
    const v = ctx.input({ name: `output ${name}`, op: 'Output', input: [node.name] }, 0);
    return valueInfo(v, v.name, options.dynamicBatch);
  });

  return {
    irVersion: ARGUS_IR_VERSION,
    opsetImports: [{ domain: '', version: ARGUS_OPSET }],
    producerName: 'argus',
    producerVersion: '0.1.0',
    graph: {
      name: options.graphName,
      nodes: ctx.nodes,
      initializers: ctx.initializers,
      inputs,
      outputs: graphOutputs,
      valueInfo: [],
    },
    metadata: {},
  };
}
