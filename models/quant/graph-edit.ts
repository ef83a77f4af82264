import type { Graph, Node, Tensor } from '../onnx/ir.ts';

/**
 * Lookups over a graph that rewriting passes need: who produces a tensor, who consumes it, which
 * tensors are constants. Built once per pass; a pass that edits the graph builds a new one.
 */
export class GraphIndex {
  readonly producers = new Map<string, Node>();
  readonly consumers = new Map<string, Node[]>();
  readonly initializers = new Map<string, Tensor>();
  readonly outputs: Set<string>;

  constructor(readonly graph: Graph) {
    for (const t of graph.initializers) this.initializers.set(t.name, t);
    for (const n of graph.nodes) {
      for (const o of n.outputs) this.producers.set(o, n);
      for (const i of n.inputs) {
        if (!i) continue;
        const list = this.consumers.get(i) ?? [];
        if (!list.includes(n)) list.push(n);
        this.consumers.set(i, list);
      }
    }
    this.outputs = new Set(graph.outputs.map((o) => o.name));
  }

  consumersOf(tensor: string): Node[] {
    return this.consumers.get(tensor) ?? [];
  }

  /** the tensor is read by exactly one node and is not a graph output */
  hasSingleUse(tensor: string): boolean {
    return this.consumersOf(tensor).length === 1 && !this.outputs.has(tensor);
  }

  constant(tensor: string): Tensor | undefined {
    return this.initializers.get(tensor);
  }
}

/** makes every node that reads `from` read `to` instead */
export function replaceUses(graph: Graph, from: string, to: string): void {
  for (const n of graph.nodes) {
    for (let i = 0; i < n.inputs.length; i++) if (n.inputs[i] === from) n.inputs[i] = to;
  }
}

/**
 * Drops nodes whose outputs nobody reads (and that are not graph outputs), then initializers no
 * node reads. Runs to a fixed point, so whole dead chains disappear.
 */
export function removeDeadCode(graph: Graph): void {
  const outputs = new Set(graph.outputs.map((o) => o.name));
  for (;;) {
    const used = new Set<string>(outputs);
    for (const n of graph.nodes) for (const i of n.inputs) used.add(i);
    const before = graph.nodes.length;
    graph.nodes = graph.nodes.filter((n) => n.outputs.some((o) => used.has(o)));
    if (graph.nodes.length === before) {
      graph.initializers = graph.initializers.filter((t) => used.has(t.name));
      graph.valueInfo = graph.valueInfo.filter((v) => used.has(v.name));
      return;
    }
  }
}

/** hands out tensor and node names that do not clash with any name already in the graph */
export class NameAllocator {
  private readonly taken = new Set<string>();

  constructor(graph: Graph) {
    for (const n of graph.nodes) for (const t of [...n.inputs, ...n.outputs, n.name]) this.taken.add(t);
    for (const t of graph.initializers) this.taken.add(t.name);
    for (const v of graph.inputs) this.taken.add(v.name);
  }

  next(base: string): string {
    let name = base;
    for (let i = 1; this.taken.has(name); i++) name = `${base}_${i}`;
    this.taken.add(name);
    return name;
  }
}

/** a deep-enough copy of a graph for passes that mutate nodes, node lists and initializer lists */
export function cloneGraph(graph: Graph): Graph {
  return {
    ...graph,
    nodes: graph.nodes.map((n) => ({
      ...n,
      inputs: [...n.inputs],
      outputs: [...n.outputs],
      attributes: { ...n.attributes },
    })),
    initializers: [...graph.initializers],
    inputs: [...graph.inputs],
    outputs: [...graph.outputs],
    valueInfo: [...graph.valueInfo],
  };
}
