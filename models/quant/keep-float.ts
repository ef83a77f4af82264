import { ArgusError } from '../../common/errors.ts';
import type { Graph } from '../onnx/ir.ts';
import type { QuantizeConfig } from './config.ts';
import { GraphIndex } from './graph-edit.ts';

/** ops a head passes through between its last Conv and a graph output */
const HEAD_TAIL_OPS = new Set([
  'Identity',
  'Transpose',
  'Reshape',
  'Flatten',
  'Squeeze',
  'Unsqueeze',
  'Split',
  'Slice',
  'Sigmoid',
  'Softmax',
  'Concat',
]);

/** the last Conv on the way to each graph output, and the nodes after it */
function outputHeadNodes(graph: Graph): Set<string> {
  const index = new GraphIndex(graph);
  const found = new Set<string>();
  const visit = (tensor: string) => {
    const node = index.producers.get(tensor);
    if (!node || found.has(node.name)) return;
    if (node.opType === 'Conv') {
      found.add(node.name);
      return;
    }
    if (!HEAD_TAIL_OPS.has(node.opType)) return;
    found.add(node.name);
    for (const i of node.inputs) if (i && !index.constant(i)) visit(i);
  };
  for (const o of graph.outputs) visit(o.name);
  return found;
}

function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${escaped}$`);
}

/** the names of the nodes the config keeps in float; a pattern that matches no node is an error */
export function resolveKeepFloat(graph: Graph, config: QuantizeConfig['keepFloat']): Set<string> {
  const keep = config.outputHeads ? outputHeadNodes(graph) : new Set<string>();
  for (const pattern of config.nodes) {
    const re = globToRegExp(pattern);
    const matches = graph.nodes.filter((n) => re.test(n.name));
    if (matches.length === 0) {
      throw new ArgusError(
        `quantization config keepFloat.nodes: "${pattern}" matches no node of the model`,
        '`argus models quantize MODEL --list-nodes` prints the names of the nodes that can be quantized',
      );
    }
    for (const n of matches) keep.add(n.name);
  }
  return keep;
}
