import {
  type Attribute,
  type Dim,
  type ElemType,
  elementCount,
  type Graph,
  type Model,
  type Node,
  ONNX_DATA_TYPE,
  type Tensor,
  type TensorValues,
  type ValueInfo,
} from './ir.ts';
import {
  ProtoDecodeError,
  type ProtoField,
  ProtoWriter,
  readFields,
  readFloats,
  readString,
  readVarints,
} from './protobuf.ts';

const DATA_TYPE = ONNX_DATA_TYPE;
const ELEM_TYPE = new Map<number, ElemType>(Object.entries(DATA_TYPE).map(([k, v]) => [v, k as ElemType]));

const ATTR_TYPE = {
  float: 1,
  int: 2,
  string: 3,
  tensor: 4,
  graph: 5,
  floats: 6,
  ints: 7,
  strings: 8,
} as const;

export class OnnxDecodeError extends Error {}

function typedArrayFor(type: ElemType, count: number): TensorValues {
  switch (type) {
    case 'float32':
      return new Float32Array(count);
    case 'float64':
      return new Float64Array(count);
    case 'int8':
      return new Int8Array(count);
    case 'uint8':
    case 'bool':
      return new Uint8Array(count);
    case 'int16':
      return new Int16Array(count);
    case 'uint16':
    case 'float16':
      return new Uint16Array(count);
    case 'int32':
      return new Int32Array(count);
    case 'uint32':
      return new Uint32Array(count);
    case 'int64':
      return new BigInt64Array(count);
    case 'uint64':
      return new BigUint64Array(count);
  }
}

function bytesOf(data: TensorValues): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

// ---------------------------------------------------------------------------------------------
// encode

function writeTensor(w: ProtoWriter, t: Tensor): void {
  if (t.dims.length > 0) w.packedVarints(1, t.dims);
  w.varint(2, DATA_TYPE[t.type]);
  if (t.name) w.string(8, t.name);
  w.bytes(9, bytesOf(t.data));
}

function writeAttribute(w: ProtoWriter, name: string, a: Attribute): void {
  w.string(1, name);
  w.varint(20, ATTR_TYPE[a.type]);
  switch (a.type) {
    case 'float':
      w.float(2, a.value);
      break;
    case 'int':
      w.varint(3, BigInt(a.value));
      break;
    case 'string':
      w.string(4, a.value);
      break;
    case 'tensor':
      w.message(5, (m) => writeTensor(m, a.value));
      break;
    case 'graph':
      w.message(6, (m) => writeGraph(m, a.value));
      break;
    case 'floats':
      w.packedFloats(7, a.value);
      break;
    case 'ints':
      w.packedVarints(
        8,
        a.value.map((v) => BigInt(v)),
      );
      break;
    case 'strings':
      for (const s of a.value) w.string(9, s);
      break;
  }
}

function writeNode(w: ProtoWriter, n: Node): void {
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  if (n.name) w.string(3, n.name);
  w.string(4, n.opType);
  for (const [name, a] of Object.entries(n.attributes)) w.message(5, (m) => writeAttribute(m, name, a));
  if (n.domain) w.string(7, n.domain);
}

function writeValueInfo(w: ProtoWriter, v: ValueInfo): void {
  w.string(1, v.name);
  w.message(2, (type) =>
    type.message(1, (tensor) => {
      tensor.varint(1, DATA_TYPE[v.type]);
      if (v.shape) {
        const shape = v.shape;
        tensor.message(2, (s) => {
          for (const d of shape) {
            s.message(1, (dim) => {
              if (typeof d === 'number') dim.varint(1, d);
              else dim.string(2, d);
            });
          }
        });
      }
    }),
  );
}

function writeGraph(w: ProtoWriter, g: Graph): void {
  for (const n of g.nodes) w.message(1, (m) => writeNode(m, n));
  w.string(2, g.name);
  for (const t of g.initializers) w.message(5, (m) => writeTensor(m, t));
  for (const v of g.inputs) w.message(11, (m) => writeValueInfo(m, v));
  for (const v of g.outputs) w.message(12, (m) => writeValueInfo(m, v));
  for (const v of g.valueInfo) w.message(13, (m) => writeValueInfo(m, v));
}

export function encodeModel(model: Model): Uint8Array {
  const w = new ProtoWriter();
  w.varint(1, model.irVersion);
  w.string(2, model.producerName);
  w.string(3, model.producerVersion);
  w.message(7, (m) => writeGraph(m, model.graph));
  for (const op of model.opsetImports) {
    w.message(8, (m) => {
      if (op.domain) m.string(1, op.domain);
      m.varint(2, op.version);
    });
  }
  for (const [key, value] of Object.entries(model.metadata)) {
    w.message(14, (m) => m.string(1, key).string(2, value));
  }
  return w.finish();
}

// ---------------------------------------------------------------------------------------------
// decode

function readTensor(buf: Uint8Array): Tensor {
  let dims: number[] = [];
  let dataType = 0;
  let name = '';
  let raw: Uint8Array | undefined;
  const floats: number[] = [];
  const ints: bigint[] = [];
  const doubles: number[] = [];
  for (const f of readFields(buf)) {
    switch (f.field) {
      case 1:
        dims = dims.concat(readVarints(f).map(Number));
        break;
      case 2:
        dataType = Number(f.varint);
        break;
      case 4:
        floats.push(...readFloats(f));
        break;
      case 5:
      case 7:
      case 11:
        ints.push(...readVarints(f));
        break;
      case 8:
        name = readString(f);
        break;
      case 9:
        raw = f.data;
        break;
      case 10: {
        const view = new DataView(f.data.buffer, f.data.byteOffset, f.data.byteLength);
        for (let i = 0; i + 8 <= f.data.byteLength; i += 8) doubles.push(view.getFloat64(i, true));
        break;
      }
      case 13:
      case 14:
        throw new OnnxDecodeError(`tensor "${name}" uses external data, which Argus does not load`);
    }
  }
  const type = ELEM_TYPE.get(dataType);
  if (!type) throw new OnnxDecodeError(`tensor "${name}" has unsupported data type ${dataType}`);
  const count = elementCount(dims);
  const data = typedArrayFor(type, count);
  if (raw) {
    if (raw.byteLength !== data.byteLength) {
      throw new OnnxDecodeError(
        `tensor "${name}" holds ${raw.byteLength} bytes but shape [${dims.join(',')}] of ${type} needs ${data.byteLength}`,
      );
    }
    bytesOf(data).set(raw);
  } else {
    const values: (number | bigint)[] = type === 'float32' ? floats : type === 'float64' ? doubles : ints;
    if (values.length !== count) {
      throw new OnnxDecodeError(
        `tensor "${name}" holds ${values.length} values but its shape needs ${count}`,
      );
    }
    const big = data instanceof BigInt64Array || data instanceof BigUint64Array;
    values.forEach((v, i) => {
      (data as unknown as (number | bigint)[])[i] = big ? BigInt(v) : Number(v);
    });
  }
  return { name, type, dims, data };
}

function readAttribute(buf: Uint8Array): [string, Attribute] {
  let name = '';
  let type = 0;
  const fields: ProtoField[] = [];
  for (const f of readFields(buf)) {
    if (f.field === 1) name = readString(f);
    else if (f.field === 20) type = Number(f.varint);
    else fields.push(f);
  }
  const get = (n: number) => fields.filter((f) => f.field === n);
  const one = (n: number) => get(n)[0];
  switch (type) {
    case ATTR_TYPE.float: {
      const f = one(2);
      return [name, { type: 'float', value: f ? readFloats(f)[0]! : 0 }];
    }
    case ATTR_TYPE.int:
      return [name, { type: 'int', value: Number(BigInt.asIntN(64, one(3)?.varint ?? 0n)) }];
    case ATTR_TYPE.string:
      return [name, { type: 'string', value: one(4) ? readString(one(4)!) : '' }];
    case ATTR_TYPE.tensor:
      return [name, { type: 'tensor', value: readTensor(one(5)?.data ?? new Uint8Array()) }];
    case ATTR_TYPE.graph:
      return [name, { type: 'graph', value: readGraph(one(6)?.data ?? new Uint8Array()) }];
    case ATTR_TYPE.floats:
      return [name, { type: 'floats', value: get(7).flatMap(readFloats) }];
    case ATTR_TYPE.ints:
      return [
        name,
        {
          type: 'ints',
          value: get(8).flatMap((f) => readVarints(f).map((v) => Number(BigInt.asIntN(64, v)))),
        },
      ];
    case ATTR_TYPE.strings:
      return [name, { type: 'strings', value: get(9).map(readString) }];
    default:
      throw new OnnxDecodeError(`attribute "${name}" has unsupported type ${type}`);
  }
}

function readNode(buf: Uint8Array): Node {
  const node: Node = { name: '', opType: '', domain: '', inputs: [], outputs: [], attributes: {} };
  for (const f of readFields(buf)) {
    if (f.field === 1) node.inputs.push(readString(f));
    else if (f.field === 2) node.outputs.push(readString(f));
    else if (f.field === 3) node.name = readString(f);
    else if (f.field === 4) node.opType = readString(f);
    else if (f.field === 5) {
      const [name, a] = readAttribute(f.data);
      node.attributes[name] = a;
    } else if (f.field === 7) node.domain = readString(f);
  }
  return node;
}

function readValueInfo(buf: Uint8Array): ValueInfo {
  const info: ValueInfo = { name: '', type: 'float32', shape: undefined };
  for (const f of readFields(buf)) {
    if (f.field === 1) info.name = readString(f);
    else if (f.field === 2) {
      for (const t of readFields(f.data)) {
        if (t.field !== 1) continue;
        for (const tt of readFields(t.data)) {
          if (tt.field === 1) {
            const type = ELEM_TYPE.get(Number(tt.varint));
            if (!type) throw new OnnxDecodeError(`value "${info.name}" has unsupported type ${tt.varint}`);
            info.type = type;
          } else if (tt.field === 2) {
            const shape: Dim[] = [];
            for (const d of readFields(tt.data)) {
              if (d.field !== 1) continue;
              let dim: Dim = '?';
              for (const dd of readFields(d.data)) {
                if (dd.field === 1) dim = Number(dd.varint);
                else if (dd.field === 2) dim = readString(dd);
              }
              shape.push(dim);
            }
            info.shape = shape;
          }
        }
      }
    }
  }
  return info;
}

function readGraph(buf: Uint8Array): Graph {
  const g: Graph = { name: '', nodes: [], initializers: [], inputs: [], outputs: [], valueInfo: [] };
  for (const f of readFields(buf)) {
    if (f.field === 1) g.nodes.push(readNode(f.data));
    else if (f.field === 2) g.name = readString(f);
    else if (f.field === 5) g.initializers.push(readTensor(f.data));
    else if (f.field === 11) g.inputs.push(readValueInfo(f.data));
    else if (f.field === 12) g.outputs.push(readValueInfo(f.data));
    else if (f.field === 13) g.valueInfo.push(readValueInfo(f.data));
  }
  return g;
}

/** Parses an ONNX file; throws OnnxDecodeError naming what is wrong when the bytes are not a model. */
export function decodeModel(bytes: Uint8Array): Model {
  const model: Model = {
    irVersion: 0,
    opsetImports: [],
    producerName: '',
    producerVersion: '',
    graph: { name: '', nodes: [], initializers: [], inputs: [], outputs: [], valueInfo: [] },
    metadata: {},
  };
  let sawGraph = false;
  try {
    for (const f of readFields(bytes)) {
      if (f.field === 1) model.irVersion = Number(f.varint);
      else if (f.field === 2) model.producerName = readString(f);
      else if (f.field === 3) model.producerVersion = readString(f);
      else if (f.field === 7) {
        model.graph = readGraph(f.data);
        sawGraph = true;
      } else if (f.field === 8) {
        let domain = '';
        let version = 0;
        for (const o of readFields(f.data)) {
          if (o.field === 1) domain = readString(o);
          else if (o.field === 2) version = Number(o.varint);
        }
        model.opsetImports.push({ domain, version });
      } else if (f.field === 14) {
        let key = '';
        let value = '';
        for (const e of readFields(f.data)) {
          if (e.field === 1) key = readString(e);
          else if (e.field === 2) value = readString(e);
        }
        model.metadata[key] = value;
      }
    }
  } catch (err) {
    if (err instanceof ProtoDecodeError) throw new OnnxDecodeError(`not a valid ONNX file: ${err.message}`);
    throw err;
  }
  if (!sawGraph || model.irVersion === 0)
    throw new OnnxDecodeError('not a valid ONNX file: no graph or IR version');
  return model;
}
