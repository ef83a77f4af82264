import { ELEMENTWISE_OPS } from './elementwise.ts';
import { NN_OPS } from './nn.ts';
import { TENSOR_OPS } from './tensor.ts';
import type { OpHandler } from './types.ts';

/** every TensorFlow op the converter handles, by op name */
export const OP_HANDLERS: Record<string, OpHandler> = { ...ELEMENTWISE_OPS, ...NN_OPS, ...TENSOR_OPS };
