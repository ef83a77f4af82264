import { readFile } from 'node:fs/promises';
import { isMap, isScalar, LineCounter, type Node, parseDocument } from 'yaml';
import { ArgusError } from './errors.ts';
import type { SchemaIssue, Validator } from './schema.ts';

/** a config file read and validated, able to point at the line of any value in it */
export interface LoadedConfig<T> {
  value: T;
  file: string;
  /** "file:line:col" of the value at `path` (JSON pointer segments), or just the file if not found */
  locate(path: readonly (string | number)[]): string;
}

function pointerSegments(pointer: string): string[] {
  if (!pointer) return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/**
 * Reads a YAML (or JSON) config file and validates it against its schema. Every problem is
 * reported with the file, line and column it is at, the path of the value and what is wrong, so
 * that an operator can fix the file without reading code.
 */
export async function loadConfigFile<T>(
  file: string,
  validator: Validator<T>,
  what: string,
): Promise<LoadedConfig<T>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ArgusError(`cannot read ${what} ${file}: ${(err as Error).message}`);
  }
  return parseConfigText(text, file, validator, what);
}

export function parseConfigText<T>(
  text: string,
  file: string,
  validator: Validator<T>,
  what: string,
): LoadedConfig<T> {
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
  const nodeAt = (path: readonly (string | number)[]): Node | undefined => {
    const node = path.length === 0 ? doc.contents : doc.getIn(path, true);
    return (node ?? undefined) as Node | undefined;
  };
  const locate = (path: readonly (string | number)[]) => at(nodeAt(path)?.range?.[0]);
  const keyLocation = (path: readonly string[], key: string): string => {
    const parent = nodeAt(path);
    if (isMap(parent)) {
      const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === key);
      if (pair && isScalar(pair.key)) return at(pair.key.range?.[0]);
    }
    return locate(path);
  };
  const value: unknown = doc.toJS() ?? {};
  const issues = validator.issues(value);
  if (issues.length > 0) {
    const lines = issues.flatMap((issue: SchemaIssue) => {
      const segments = pointerSegments(issue.path);
      if (issue.unknownKeys) {
        return issue.unknownKeys.map(
          (k) =>
            `  ${keyLocation(segments, k)}: ${[...segments, k].join('.')}: unknown key "${k}" (remove it or check its spelling)`,
        );
      }
      const where = locate(segments);
      return [`  ${where}: ${segments.join('.') || '(top level)'}: ${issue.message}`];
    });
    throw new ArgusError(`${what} ${file} is invalid:\n${lines.join('\n')}`);
  }
  return { value: value as T, file, locate };
}
