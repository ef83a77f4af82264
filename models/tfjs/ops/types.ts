import type { NodeAttrs } from '../attrs.ts';
import type { ConversionContext, Value } from '../converter.ts';
import type { TfNode } from '../graph-model.ts';

/** converts one TensorFlow node; returns its outputs in TensorFlow's output order */
export type OpHandler = (ctx: ConversionContext, node: TfNode, attrs: NodeAttrs) => Value[];
