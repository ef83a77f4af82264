import { ArgusError } from '../../common/errors.ts';
import type { TfAttrValue, TfNode } from './graph-model.ts';

/** Typed access to a GraphDef node's attributes, with errors that name the node. */
export class NodeAttrs {
  constructor(private readonly node: TfNode) {}

  private get(key: string): TfAttrValue | undefined {
    return this.node.attr?.[key];
  }

  private missing(key: string): never {
    throw new ArgusError(`node "${this.node.name}" (${this.node.op}) lacks attribute "${key}"`);
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  string(key: string, fallback?: string): string {
    const v = this.get(key)?.s;
    if (v === undefined) return fallback ?? this.missing(key);
    return Buffer.from(v, 'base64').toString('utf8');
  }

  strings(key: string): string[] {
    return (this.get(key)?.list?.s ?? []).map((s) => Buffer.from(s, 'base64').toString('utf8'));
  }

  int(key: string, fallback?: number): number {
    const v = this.get(key)?.i;
    if (v === undefined) return fallback ?? this.missing(key);
    return Number(v);
  }

  ints(key: string, fallback?: number[]): number[] {
    const v = this.get(key)?.list?.i;
    if (v === undefined) return fallback ?? this.missing(key);
    return v.map(Number);
  }

  float(key: string, fallback?: number): number {
    const v = this.get(key)?.f;
    if (v === undefined) return fallback ?? this.missing(key);
    return Number(v);
  }

  bool(key: string, fallback?: boolean): boolean {
    const v = this.get(key)?.b;
    if (v === undefined) return fallback ?? this.missing(key);
    return v;
  }

  type(key: string, fallback?: string): string {
    const v = this.get(key)?.type;
    if (v === undefined) return fallback ?? this.missing(key);
    return v;
  }

  shape(key: string): number[] | undefined {
    const s = this.get(key)?.shape;
    if (!s || s.unknownRank) return undefined;
    return (s.dim ?? []).map((d) => Number(d.size ?? -1));
  }
}
