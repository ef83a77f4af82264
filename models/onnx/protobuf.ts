/**
 * The protobuf wire format, just enough of it for ONNX: varints, length-delimited fields, fixed32/64.
 * Field layouts live in `codec.ts`; this module knows nothing about ONNX.
 */

export enum WireType {
  Varint = 0,
  Fixed64 = 1,
  LengthDelimited = 2,
  Fixed32 = 5,
}

export class ProtoWriter {
  private buf = new Uint8Array(256);
  private len = 0;

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  private rawVarint(value: bigint): void {
    let v = BigInt.asUintN(64, value);
    this.reserve(10);
    while (v >= 0x80n) {
      this.buf[this.len++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.len++] = Number(v);
  }

  private rawSmallVarint(value: number): void {
    if (value < 0 || value > 0x7fffffff) {
      this.rawVarint(BigInt(value));
      return;
    }
    this.reserve(5);
    let v = value;
    while (v >= 0x80) {
      this.buf[this.len++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[this.len++] = v;
  }

  private tag(field: number, wire: WireType): void {
    this.rawSmallVarint((field << 3) | wire);
  }

  varint(field: number, value: number | bigint): this {
    this.tag(field, WireType.Varint);
    if (typeof value === 'bigint') this.rawVarint(value);
    else this.rawSmallVarint(value);
    return this;
  }

  bytes(field: number, data: Uint8Array): this {
    this.tag(field, WireType.LengthDelimited);
    this.rawSmallVarint(data.length);
    this.reserve(data.length);
    this.buf.set(data, this.len);
    this.len += data.length;
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  float(field: number, value: number): this {
    this.tag(field, WireType.Fixed32);
    this.reserve(4);
    new DataView(this.buf.buffer, this.buf.byteOffset + this.len, 4).setFloat32(0, value, true);
    this.len += 4;
    return this;
  }

  message(field: number, write: (w: ProtoWriter) => void): this {
    const inner = new ProtoWriter();
    write(inner);
    return this.bytes(field, inner.finish());
  }

  packedVarints(field: number, values: readonly (number | bigint)[]): this {
    const inner = new ProtoWriter();
    for (const v of values) {
      if (typeof v === 'bigint') inner.rawVarint(v);
      else inner.rawSmallVarint(v);
    }
    return this.bytes(field, inner.finish());
  }

  packedFloats(field: number, values: readonly number[]): this {
    const data = new Uint8Array(values.length * 4);
    const view = new DataView(data.buffer);
    for (const [i, v] of values.entries()) view.setFloat32(i * 4, v, true);
    return this.bytes(field, data);
  }

  finish(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}

export interface ProtoField {
  field: number;
  wire: WireType;
  /** varint value (as bigint to keep int64 exact) */
  varint: bigint;
  /** payload of a length-delimited, fixed32 or fixed64 field */
  data: Uint8Array;
}

export class ProtoDecodeError extends Error {}

/** Iterates the fields of one message; throws ProtoDecodeError on truncated or malformed input. */
export function* readFields(buf: Uint8Array): Generator<ProtoField> {
  let pos = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (pos >= buf.length) throw new ProtoDecodeError('truncated varint');
      const b = buf[pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 70n) throw new ProtoDecodeError('varint too long');
    }
  };
  const take = (n: number): Uint8Array => {
    if (n < 0 || pos + n > buf.length)
      throw new ProtoDecodeError(`field runs past the end (${n} bytes at ${pos})`);
    const out = buf.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  const empty = new Uint8Array(0);
  while (pos < buf.length) {
    const key = Number(varint());
    const field = key >>> 3;
    const wire = key & 7;
    if (field === 0) throw new ProtoDecodeError('field number 0');
    switch (wire) {
      case WireType.Varint:
        yield { field, wire, varint: varint(), data: empty };
        break;
      case WireType.Fixed64:
        yield { field, wire, varint: 0n, data: take(8) };
        break;
      case WireType.LengthDelimited:
        yield { field, wire, varint: 0n, data: take(Number(varint())) };
        break;
      case WireType.Fixed32:
        yield { field, wire, varint: 0n, data: take(4) };
        break;
      default:
        throw new ProtoDecodeError(`unsupported wire type ${wire}`);
    }
  }
}

/** Values of a repeated varint field, packed or not. */
export function readVarints(f: ProtoField): bigint[] {
  if (f.wire === WireType.Varint) return [f.varint];
  const out: bigint[] = [];
  for (const inner of readFields(prefixPacked(f.data))) out.push(inner.varint);
  return out;
}

/** Values of a repeated float field, packed or not. */
export function readFloats(f: ProtoField): number[] {
  const view = new DataView(f.data.buffer, f.data.byteOffset, f.data.byteLength);
  const out: number[] = [];
  for (let i = 0; i + 4 <= f.data.byteLength; i += 4) out.push(view.getFloat32(i, true));
  return out;
}

export function readString(f: ProtoField): string {
  return new TextDecoder().decode(f.data);
}

/** Re-frames packed varints as a sequence of field-1 varints so readFields can walk them. */
function prefixPacked(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(data.length * 2);
  let o = 0;
  let i = 0;
  while (i < data.length) {
    out[o++] = 0x08;
    do {
      out[o++] = data[i]!;
    } while (data[i++]! & 0x80 && i < data.length);
  }
  return out.subarray(0, o);
}
