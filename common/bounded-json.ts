import { ArgusError } from './errors.ts';

export interface JsonLimits {
  /** UTF-8 bytes of the text at most */
  maxBytes: number;
  /** nesting of arrays and objects at most (a scalar is depth 0, `[]` and `{}` are depth 1) */
  maxDepth: number;
}

/** JSON that breaks a limit (or is not JSON): the message says which */
export class JsonBoundsError extends ArgusError {
  constructor(
    message: string,
    readonly reason: 'oversized' | 'too_deep' | 'malformed_json',
  ) {
    super(message);
    this.name = 'JsonBoundsError';
  }
}

const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * The nesting depth of a JSON text, found in one pass over its characters without building
 * anything, so that a hostile text costs its length and no stack. Brackets inside strings do not
 * count. Stops at the first level past `maxDepth` and answers `maxDepth + 1`.
 */
export function jsonDepth(text: string, maxDepth: number): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      depth++;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > maxDepth) return deepest;
      }
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
    }
  }
  return deepest;
}

/**
 * Parses untrusted JSON after checking its size and nesting depth, so that no later code that
 * walks the value (validation, JSON.stringify, a database driver) can be made to overflow its
 * stack. Throws a JsonBoundsError naming the limit that was broken.
 */
export function parseBoundedJson(text: string, limits: JsonLimits): unknown {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > limits.maxBytes)
    throw new JsonBoundsError(`${bytes} bytes of JSON, more than ${limits.maxBytes}`, 'oversized');
  const depth = jsonDepth(text, limits.maxDepth);
  if (depth > limits.maxDepth)
    throw new JsonBoundsError(
      `JSON nested deeper than ${limits.maxDepth} levels of arrays and objects`,
      'too_deep',
    );
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new JsonBoundsError((err as Error).message, 'malformed_json');
  }
}

/**
 * Whether a value (parsed JSON, e.g. an HTTP body) nests arrays and objects deeper than
 * `maxDepth`, found without recursion, so that a hostile value costs no stack; it stops at the
 * first level past `maxDepth`. Depth counts as in `jsonDepth`.
 */
export function exceedsJsonDepth(value: unknown, maxDepth: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth + 1 > maxDepth) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return false;
}
