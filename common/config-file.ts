import { readFile } from 'node:fs/promises';
import { isMap, isScalar, LineCounter, type Node, parseDocument } from 'yaml';
import { ArgusError } from './errors.ts';
import type { SchemaIssue, Validator } from './schema.ts';

export type ConfigPath = readonly (string | number)[];

/** a parsed config file, able to point at the line of any value or key in it */
export interface ConfigDocument {
  file: string;
  /** the document as plain data */
  data: unknown;
  /** "file:line:col" of the value at `path`, or just the file when it is not in the document */
  locate(path: ConfigPath): string;
  /** "file:line:col" of the key `key` of the mapping at `path` */
  locateKey(path: ConfigPath, key: string): string;
}

/** a config file read and validated against its schema */
export interface LoadedConfig<T> extends ConfigDocument {
  value: T;
}

function pointerSegments(pointer: string): string[] {
  if (!pointer) return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** Parses YAML (or JSON) text; syntax errors are reported with file, line and column. */
export function parseConfigDocument(text: string, file: string, what: string): ConfigDocument {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const lines = doc.errors.map((e) => {
      const pos = lineCounter.linePos(e.pos[0]);
      return `  ${file}:${pos.line}:${pos.col}: ${e.message.split('\n')[0]}`;
    });
    throw new ArgusError(`${what} ${file} is not valid YAML:\n${lines.join('\n')}`);
  }
  const at = (offset: number | undefined) => {
    if (offset === undefined) return file;
    const pos = lineCounter.linePos(offset);
    return `${file}:${pos.line}:${pos.col}`;
  };
  const nodeAt = (path: ConfigPath): Node | undefined => {
    const node = path.length === 0 ? doc.contents : doc.getIn(path, true);
    return (node ?? undefined) as Node | undefined;
  };
  const locate = (path: ConfigPath) => at(nodeAt(path)?.range?.[0]);
  const locateKey = (path: ConfigPath, key: string): string => {
    const parent = nodeAt(path);
    if (isMap(parent)) {
      const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === key);
      if (pair && isScalar(pair.key)) return at(pair.key.range?.[0]);
    }
    return locate(path);
  };
  return { file, data: doc.toJS() ?? {}, locate, locateKey };
}

/** one line per schema issue, each starting with the file:line:col it is at; `base` prefixes paths */
export function describeIssues(
  doc: ConfigDocument,
  issues: readonly SchemaIssue[],
  base: ConfigPath = [],
): string[] {
  return issues.flatMap((issue) => {
    const segments = [...base, ...pointerSegments(issue.path)];
    if (issue.unknownKeys) {
      return issue.unknownKeys.map(
        (k) =>
          `  ${doc.locateKey(segments, k)}: ${[...segments, k].join('.')}: unknown key "${k}" (remove it or check its spelling)`,
      );
    }
    return [`  ${doc.locate(segments)}: ${segments.join('.') || '(top level)'}: ${issue.message}`];
  });
}

/**
 * Validates a parsed document against its schema. Every problem is reported with the file, line
 * and column it is at, the path of the value and what is wrong, so that an operator can fix the
 * file without reading code.
 */
export function validateConfigDocument<T>(
  doc: ConfigDocument,
  validator: Validator<T>,
  what: string,
): LoadedConfig<T> {
  const value = validator.withDefaults(doc.data);
  const issues = validator.issues(value);
  if (issues.length > 0)
    throw new ArgusError(`${what} ${doc.file} is invalid:\n${describeIssues(doc, issues).join('\n')}`);
  return { ...doc, value: value as T };
}

export function parseConfigText<T>(
  text: string,
  file: string,
  validator: Validator<T>,
  what: string,
): LoadedConfig<T> {
  return validateConfigDocument(parseConfigDocument(text, file, what), validator, what);
}

export async function readConfigText(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new ArgusError(`cannot read ${what} ${file}: ${(err as Error).message}`);
  }
}

const ENV_REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/**
 * Replaces each `${NAME}` in the document's string values by the environment variable NAME, so
 * that secrets (passwords, tokens) need not be written in the file. An unset or empty variable is
 * an error naming the file, line and key.
 */
export function substituteEnvironment(
  doc: ConfigDocument,
  env: Record<string, string | undefined>,
): ConfigDocument {
  const missing: string[] = [];
  const walk = (value: unknown, path: (string | number)[]): unknown => {
    if (typeof value === 'string')
      return value.replace(ENV_REFERENCE, (_, name: string) => {
        const found = env[name];
        if (found) return found;
        missing.push(`  ${doc.locate(path)}: ${path.join('.')}: the environment variable ${name} is not set`);
        return '';
      });
    if (Array.isArray(value)) return value.map((v, i) => walk(v, [...path, i]));
    if (value !== null && typeof value === 'object')
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, [...path, k])]));
    return value;
  };
  const data = walk(doc.data, []);
  if (missing.length > 0)
    throw new ArgusError(
      `${doc.file} refers to environment variables that are not set:\n${missing.join('\n')}`,
      'set them (docker compose reads them from .env), or write the values in the file',
    );
  return { ...doc, data };
}

/**
 * Reads a YAML (or JSON) config file, puts in the environment variables it refers to (`${NAME}`,
 * see substituteEnvironment) and validates it against its schema (see validateConfigDocument).
 */
export async function loadConfigFile<T>(
  file: string,
  validator: Validator<T>,
  what: string,
): Promise<LoadedConfig<T>> {
  const doc = parseConfigDocument(await readConfigText(file, what), file, what);
  return validateConfigDocument(substituteEnvironment(doc, process.env), validator, what);
}
