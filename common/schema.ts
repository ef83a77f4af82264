import type { TSchema } from 'typebox';
import { Compile } from 'typebox/compile';
import { Format } from 'typebox/format';
import Value from 'typebox/value';
import { ArgusError } from './errors.ts';
import { isTimestamp } from './timestamp.ts';

// `date-time` everywhere means a timestamp Date reads as the same instant (see isTimestamp); it is
// also several times cheaper than TypeBox's general RFC 3339 + RFC 9557 check
Format.Set('date-time', isTimestamp);

export interface SchemaIssue {
  /** JSON pointer into the checked value, e.g. `/cameras/0/url` ("" for the root) */
  path: string;
  message: string;
  /** for unknown-key issues: the offending keys (so a config loader can point at their lines) */
  unknownKeys?: string[];
}

export interface Validator<T> {
  readonly schema: TSchema;
  check(value: unknown): value is T;
  issues(value: unknown): SchemaIssue[];
  /** returns the value typed, or throws an ArgusError that lists every problem found in `what` */
  parse(value: unknown, what: string): T;
  /** a copy of `value` with the schema's defaults filled in where values are missing */
  withDefaults(value: unknown): unknown;
}

function describeIssue(error: {
  keyword: string;
  instancePath: string;
  params: Record<string, unknown>;
  message: string;
}): SchemaIssue | undefined {
  if (error.keyword === 'boolean') return undefined; // duplicated by the additionalProperties error
  if (error.keyword === 'additionalProperties') {
    const extra = (error.params.additionalProperties as string[] | undefined) ?? [];
    return {
      path: error.instancePath,
      message: `unknown key${extra.length > 1 ? 's' : ''} ${extra.map((k) => `"${k}"`).join(', ')}`,
      unknownKeys: extra,
    };
  }
  if (error.keyword === 'required') {
    const missing = (error.params.requiredProperties as string[] | undefined) ?? [];
    return {
      path: error.instancePath,
      message: `missing required field${missing.length > 1 ? 's' : ''} ${missing.map((k) => `"${k}"`).join(', ')}`,
    };
  }
  if (error.keyword === 'const') {
    return { path: error.instancePath, message: `must be ${JSON.stringify(error.params.allowedValue)}` };
  }
  if (error.keyword === 'enum') {
    return {
      path: error.instancePath,
      message: `must be one of ${JSON.stringify(error.params.allowedValues)}`,
    };
  }
  return { path: error.instancePath, message: error.message };
}

/** Compiles a TypeBox schema once; the schema stays the single source of type, validation and docs. */
export function compileSchema<T>(schema: TSchema): Validator<T> {
  const compiled = Compile(schema);
  const issues = (value: unknown): SchemaIssue[] => {
    const seen = new Set<string>();
    const out: SchemaIssue[] = [];
    for (const error of compiled.Errors(value)) {
      const issue = describeIssue(error as never);
      if (!issue) continue;
      const key = `${issue.path}|${issue.message}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(issue);
    }
    return out;
  };
  return {
    schema,
    check: (value): value is T => compiled.Check(value),
    issues,
    withDefaults: (value) => Value.Default(schema, structuredClone(value)),
    parse(value, what) {
      if (compiled.Check(value)) return value as T;
      const found = issues(value);
      const lines = found.map((i) => `  ${i.path || '(root)'}: ${i.message}`);
      throw new ArgusError(`${what} is invalid:\n${lines.join('\n')}`);
    },
  };
}
