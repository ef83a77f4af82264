/**
 * An in-memory ONNX model: the subset of ModelProto that Argus reads and writes (graphs, nodes,
 * attributes, initializers, typed inputs/outputs, metadata). Converters, the quantizer and the
 * class pruner all work on this representation; `codec.ts` turns it into bytes and back.
 */

export type ElemType =
  | 'float32'
  | 'float16'
  | 'float64'
  | 'int8'
  | 'uint8'
  | 'int16'
  | 'uint16'
  | 'int32'
  | 'uint32'
  | 'int64'
  | 'uint64'
  | 'bool';

/** TensorProto.DataType numbers from onnx.proto */
export const ONNX_DATA_TYPE: Record<ElemType, number> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  uint16: 4,
  int16: 5,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  float64: 11,
  uint32: 12,
  uint64: 13,
};

/** bool is stored as Uint8Array (0/1) and float16 as raw Uint16Array bit patterns */
export type TensorValues =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

export interface Tensor {
  name: string;
  type: ElemType;
  dims: number[];
  data: TensorValues;
}

export type Attribute =
  | { type: 'float'; value: number }
  | { type: 'int'; value: number }
  | { type: 'string'; value: string }
  | { type: 'tensor'; value: Tensor }
  | { type: 'graph'; value: Graph }
  | { type: 'floats'; value: number[] }
  | { type: 'ints'; value: number[] }
  | { type: 'strings'; value: string[] };

export interface Node {
  name: string;
  opType: string;
  /** "" is the default ONNX domain */
  domain: string;
  inputs: string[];
  outputs: string[];
  attributes: Record<string, Attribute>;
}

/** a dimension is a fixed size or a symbolic name such as "batch" */
export type Dim = number | string;

export interface ValueInfo {
  name: string;
  type: ElemType;
  shape: Dim[] | undefined;
}

export interface Graph {
  name: string;
  nodes: Node[];
  initializers: Tensor[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  valueInfo: ValueInfo[];
}

export interface OpsetImport {
  domain: string;
  version: number;
}

export interface Model {
  irVersion: number;
  opsetImports: OpsetImport[];
  producerName: string;
  producerVersion: string;
  graph: Graph;
  metadata: Record<string, string>;
}

/** The opset Argus emits; ONNX Runtime 1.30 runs it on every execution provider we target. */
export const ARGUS_OPSET = 18;
export const ARGUS_IR_VERSION = 8;

export const attr = {
  int: (value: number): Attribute => ({ type: 'int', value }),
  ints: (value: number[]): Attribute => ({ type: 'ints', value }),
  float: (value: number): Attribute => ({ type: 'float', value }),
  floats: (value: number[]): Attribute => ({ type: 'floats', value }),
  string: (value: string): Attribute => ({ type: 'string', value }),
  tensor: (value: Tensor): Attribute => ({ type: 'tensor', value }),
};

export function elementCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

export function createTensor(name: string, type: ElemType, dims: number[], data: TensorValues): Tensor {
  if (data.length !== elementCount(dims)) {
    throw new Error(`tensor "${name}": ${data.length} values do not fill shape [${dims.join(',')}]`);
  }
  return { name, type, dims, data };
}

export function float32Tensor(name: string, dims: number[], values: ArrayLike<number>): Tensor {
  return createTensor(name, 'float32', dims, Float32Array.from(values));
}

export function int64Tensor(name: string, dims: number[], values: ArrayLike<number>): Tensor {
  return createTensor(name, 'int64', dims, BigInt64Array.from(Array.from(values, (v) => BigInt(v))));
}

export function int32Tensor(name: string, dims: number[], values: ArrayLike<number>): Tensor {
  return createTensor(name, 'int32', dims, Int32Array.from(values));
}

export function emptyGraph(name: string): Graph {
  return { name, nodes: [], initializers: [], inputs: [], outputs: [], valueInfo: [] };
}

export function createNode(
  opType: string,
  inputs: string[],
  outputs: string[],
  name: string,
  attributes: Record<string, Attribute> = {},
): Node {
  return { name, opType, domain: '', inputs, outputs, attributes };
}

/** Tensor values as plain numbers (int64 converted; callers only use this on small tensors). */
export function tensorNumbers(t: Tensor): number[] {
  return Array.from(t.data as ArrayLike<number | bigint>, (v) => Number(v));
}
