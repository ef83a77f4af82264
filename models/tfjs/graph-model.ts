import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ArgusError } from '../../common/errors.ts';
import { type ElemType, elementCount, type Tensor, type TensorValues } from '../onnx/ir.ts';

/**
 * A TensorFlow.js graph model (`model.json` + weight shards) read into memory: the GraphDef nodes
 * and every constant decoded to a typed tensor (float16/uint8-quantized weights expanded to float32).
 */

export interface TfAttrValue {
  s?: string;
  i?: string | number;
  f?: number;
  b?: boolean;
  type?: string;
  shape?: { dim?: { size?: string | number }[]; unknownRank?: boolean };
  list?: { s?: string[]; i?: (string | number)[]; f?: number[]; b?: boolean[]; type?: string[] };
  tensor?: unknown;
}

export interface TfNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, TfAttrValue>;
}

export interface TfSignatureEntry {
  name: string;
  dtype: string;
  shape: number[];
}

export interface TfGraphModel {
  /** file the model was read from, for error messages */
  source: string;
  nodes: TfNode[];
  /** Const node values by node name */
  consts: Map<string, Tensor>;
  inputs: TfSignatureEntry[];
  outputs: TfSignatureEntry[];
}

interface WeightEntry {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { dtype: string; scale?: number; min?: number; original_dtype?: string };
}

interface ModelJson {
  format?: string;
  modelTopology?: { node?: TfNode[] };
  weightsManifest?: { paths: string[]; weights: WeightEntry[] }[];
  signature?: {
    inputs?: Record<string, { name: string; dtype: string; tensorShape?: { dim?: { size?: string }[] } }>;
    outputs?: Record<string, { name: string; dtype: string; tensorShape?: { dim?: { size?: string }[] } }>;
  };
}

const TF_DTYPES: Record<string, ElemType> = {
  DT_FLOAT: 'float32',
  DT_INT32: 'int32',
  DT_INT64: 'int64',
  DT_BOOL: 'bool',
  DT_UINT8: 'uint8',
  DT_INT8: 'int8',
  DT_HALF: 'float16',
};

export function tfDtype(type: string | undefined, where: string): ElemType {
  const t = type ? TF_DTYPES[type] : undefined;
  if (!t) throw new ArgusError(`${where}: unsupported TensorFlow dtype ${type ?? '(none)'}`);
  return t;
}

/** IEEE 754 half → float, exact for every half value */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

function storedBytesPerElement(w: WeightEntry): number {
  const stored = w.quantization?.dtype ?? w.dtype;
  switch (stored) {
    case 'float32':
    case 'int32':
      return 4;
    case 'float16':
    case 'uint16':
      return 2;
    case 'uint8':
    case 'bool':
      return 1;
    default:
      throw new ArgusError(`weight "${w.name}": unsupported stored dtype ${stored}`);
  }
}

function decodeWeight(w: WeightEntry, bytes: Uint8Array, nodeType: ElemType): TensorValues {
  const count = elementCount(w.shape);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const q = w.quantization;
  if (q) {
    const out = new Float32Array(count);
    if (q.dtype === 'float16') {
      for (let i = 0; i < count; i++) out[i] = halfToFloat(view.getUint16(i * 2, true));
    } else if (q.dtype === 'uint8' || q.dtype === 'uint16') {
      const scale = q.scale ?? 1;
      const min = q.min ?? 0;
      for (let i = 0; i < count; i++) {
        const v = q.dtype === 'uint8' ? view.getUint8(i) : view.getUint16(i * 2, true);
        out[i] = v * scale + min;
      }
    } else {
      throw new ArgusError(`weight "${w.name}": unsupported quantization ${q.dtype}`);
    }
    return out;
  }
  switch (w.dtype) {
    case 'float32': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    }
    case 'int32': {
      // tfjs stores int64 constants as int32; the node's dtype attribute says what they really are
      if (nodeType === 'int64') {
        const out = new BigInt64Array(count);
        for (let i = 0; i < count; i++) out[i] = BigInt(view.getInt32(i * 4, true));
        return out;
      }
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt32(i * 4, true);
      return out;
    }
    case 'bool':
      return Uint8Array.from(bytes.subarray(0, count));
    default:
      throw new ArgusError(`weight "${w.name}": unsupported dtype ${w.dtype}`);
  }
}

function signatureEntries(
  sig:
    | Record<string, { name: string; dtype: string; tensorShape?: { dim?: { size?: string }[] } }>
    | undefined,
): TfSignatureEntry[] {
  return Object.values(sig ?? {}).map((e) => ({
    name: e.name,
    dtype: e.dtype,
    shape: (e.tensorShape?.dim ?? []).map((d) => Number(d.size ?? -1)),
  }));
}

/** Reads `model.json` and its weight shards from disk. */
export async function loadTfjsGraphModel(modelJsonPath: string): Promise<TfGraphModel> {
  let text: string;
  try {
    text = await readFile(modelJsonPath, 'utf8');
  } catch (err) {
    throw new ArgusError(`cannot read ${modelJsonPath}: ${(err as Error).message}`);
  }
  return parseTfjsGraphModel(text, modelJsonPath, async (p) => {
    try {
      return await readFile(join(dirname(modelJsonPath), p));
    } catch {
      throw new ArgusError(
        `weight file ${p} named by ${basename(modelJsonPath)} is missing`,
        'fetch the model again',
      );
    }
  });
}

/**
 * Parses a graph model from `model.json` text and a reader for its weight shards; every
 * inconsistency is reported with the file it is in.
 */
export async function parseTfjsGraphModel(
  text: string,
  source: string,
  readShard: (path: string) => Promise<Uint8Array>,
): Promise<TfGraphModel> {
  const file = basename(source);
  let json: ModelJson;
  try {
    json = JSON.parse(text) as ModelJson;
  } catch (err) {
    throw new ArgusError(
      `${file} is not a readable tfjs model.json: ${(err as Error).message}`,
      'fetch the model again with `argus models fetch --force`',
    );
  }
  const nodes = json.modelTopology?.node;
  if (json.format !== 'graph-model' || !Array.isArray(nodes) || !Array.isArray(json.weightsManifest)) {
    throw new ArgusError(`${file} is not a tfjs graph model (format "${json.format ?? 'missing'}")`);
  }
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const consts = new Map<string, Tensor>();
  for (const group of json.weightsManifest) {
    const shards = await Promise.all(group.paths.map(readShard));
    const data = Buffer.concat(shards);
    const expected = group.weights.reduce(
      (sum, w) => sum + elementCount(w.shape) * storedBytesPerElement(w),
      0,
    );
    if (data.length !== expected) {
      throw new ArgusError(
        `weight file ${group.paths.join(', ')} is ${data.length < expected ? 'truncated' : 'too long'}: ${file} declares ${expected} bytes, found ${data.length}`,
        'the download is damaged; fetch the model again with `argus models fetch --force`',
      );
    }
    let offset = 0;
    for (const w of group.weights) {
      const size = elementCount(w.shape) * storedBytesPerElement(w);
      const node = byName.get(w.name);
      const declared = node?.attr?.dtype?.type;
      const type: ElemType = declared
        ? tfDtype(declared, `Const "${w.name}"`)
        : w.quantization
          ? 'float32'
          : tfDtype(`DT_${w.dtype.toUpperCase()}`, w.name);
      const values = decodeWeight(w, data.subarray(offset, offset + size), type);
      const elemType: ElemType = w.quantization ? 'float32' : type;
      consts.set(w.name, { name: w.name, type: elemType, dims: [...w.shape], data: values });
      offset += size;
    }
  }
  return {
    source,
    nodes,
    consts,
    inputs: signatureEntries(json.signature?.inputs),
    outputs: signatureEntries(json.signature?.outputs),
  };
}
