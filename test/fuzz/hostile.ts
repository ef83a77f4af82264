import fc from 'fast-check';

/** JSON text put as it is into a generated document (numbers and nestings JavaScript cannot hold) */
export class Raw {
  constructor(readonly text: string) {}
}

/** a JSON-like value whose parts may be Raw text */
export type Doc = null | boolean | number | string | Raw | Doc[] | { [key: string]: Doc };

/** the JSON text of a Doc: Raw parts as they are, the rest as JSON.stringify writes it */
export function docText(d: Doc): string {
  if (d instanceof Raw) return d.text;
  if (Array.isArray(d)) return `[${d.map(docText).join(',')}]`;
  if (d !== null && typeof d === 'object')
    return `{${Object.entries(d)
      .map(([k, v]) => `${JSON.stringify(k)}:${docText(v)}`)
      .join(',')}}`;
  return JSON.stringify(d) ?? 'null';
}

/** `[[[…]]]` or `{"a":{"a":…}}` `depth` levels deep, around `inner` */
export function nested(depth: number, shape: 'array' | 'object' | 'mixed', inner = '0'): string {
  if (shape === 'array') return `${'['.repeat(depth)}${inner}${']'.repeat(depth)}`;
  if (shape === 'object') return `${'{"a":'.repeat(depth)}${inner}${'}'.repeat(depth)}`;
  const pairs = Math.floor(depth / 2);
  const odd = depth % 2 === 1;
  return `${'[{"a":'.repeat(pairs)}${odd ? '[' : ''}${inner}${odd ? ']' : ''}${'}]'.repeat(pairs)}`;
}

const NUMBER_TEXTS = [
  '1e308',
  '-1e308',
  '1e309',
  '-0',
  '5e-324',
  '2e-400',
  '9007199254740993',
  '-9007199254740993',
  '123456789012345678901234567890123456789012345678901234567890',
  '0.1e-99999',
  '1E+2',
  '00',
  '01',
  '.5',
  '+1',
  '0x10',
  'NaN',
  'Infinity',
  '-Infinity',
  '1_000',
];
const NUMBER_LIKE_STRINGS = ['NaN', 'Infinity', '-Infinity', '-0', '1e308', '', ' 1', '0x1F', 'null', 'true'];
const SPECIAL_CHARS = [
  '\u0000',
  '\ud800',
  '\udfff',
  '\udbff\udfff',
  '\u202e',
  '\u200f',
  '\u2066',
  '\ufeff',
  '\uffff',
  '\u0085',
  '\u2028',
  '\u2029',
  '\u001b[31m',
  '\r\n',
  '%s%n',
  "'; DROP TABLE events; --",
  '../../etc/passwd',
  '<script>alert(1)</script>',
  '$' + '{jndi:ldap://x}',
  '\\',
  '"',
];

/** strings a careless parser, database or log trips on */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(...SPECIAL_CHARS, ...NUMBER_LIKE_STRINGS),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.array(fc.constantFrom(...SPECIAL_CHARS, 'a', 'é', '🦀'), { maxLength: 30 }).map((a) => a.join('')),
  fc
    .tuple(fc.constantFrom('x', '\u202e', '🦀', '\u0000', 'ab'), fc.integer({ min: 256, max: 70_000 }))
    .map(([s, n]) => s.repeat(Math.ceil(n / s.length))),
);

/** a value for any place of a message: extremes of every JSON type, deep nestings, wrong types */
export const hostileValue: fc.Arbitrary<Doc> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...NUMBER_TEXTS).map((t) => new Raw(t)) },
  {
    weight: 2,
    arbitrary: fc.oneof(
      fc.double(),
      fc.integer(),
      fc.constantFrom(0, -1, 2 ** 31, 2 ** 31 - 1, -(2 ** 31), 2 ** 53, Number.MAX_VALUE, Number.MIN_VALUE),
    ),
  },
  { weight: 3, arbitrary: hostileString },
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        fc.oneof(
          fc.integer({ min: 1, max: 64 }),
          fc.integer({ min: 64, max: 2000 }),
          fc.integer({ min: 2000, max: 40_000 }),
        ),
        fc.constantFrom('array', 'object', 'mixed') as fc.Arbitrary<'array' | 'object' | 'mixed'>,
      )
      .map(([depth, shape]) => new Raw(nested(depth, shape))),
  },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 4 }) as fc.Arbitrary<Doc> },
  {
    weight: 1,
    arbitrary: fc.constantFrom<Doc>(
      null,
      true,
      false,
      [],
      {},
      [null],
      { '': null },
      new Raw('{"__proto__":{"polluted":true}}'),
    ),
  },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 1000, max: 5000 }).map((n) => Array.from({ length: n }, (_, i) => i) as Doc),
  },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: 100, max: 1000 })
      .map((n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i])) as Doc),
  },
);

/** one change to a document: a path is chosen by indices (taken modulo what is there) */
type Mutation =
  | { op: 'set'; path: number[]; value: Doc }
  | { op: 'delete'; path: number[] }
  | { op: 'add'; path: number[]; key: string; value: Doc }
  | { op: 'wrap'; depth: number }
  | { op: 'deepen'; at: number; depth: number; shape: 'array' | 'object' | 'mixed' };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant('set' as const),
      path: fc.array(fc.nat(), { minLength: 1, maxLength: 4 }),
      value: hostileValue,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('delete' as const),
      path: fc.array(fc.nat(), { minLength: 1, maxLength: 3 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('add' as const),
      path: fc.array(fc.nat(), { maxLength: 3 }),
      key: fc.oneof(hostileString, fc.constantFrom('__proto__', 'constructor', 'device', 'v', 'id')),
      value: hostileValue,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant('wrap' as const), depth: fc.integer({ min: 1, max: 3 }) }),
  },
  // a deep nesting under a new key of some object of the message, where free-form records
  // (before, after, data, counters) carry it past the schema
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('deepen' as const),
      at: fc.nat(),
      depth: fc.oneof(fc.integer({ min: 100, max: 3000 }), fc.integer({ min: 3000, max: 30_000 })),
      shape: fc.constantFrom('array', 'object', 'mixed') as fc.Arbitrary<'array' | 'object' | 'mixed'>,
    }),
  },
);

/** every object (not array) of a document, the document first */
function objectsOf(d: Doc, into: { [key: string]: Doc }[] = []): { [key: string]: Doc }[] {
  if (!isContainer(d)) return into;
  if (!Array.isArray(d)) into.push(d);
  for (const child of Object.values(d)) objectsOf(child, into);
  return into;
}

function isContainer(d: Doc): d is Doc[] | { [key: string]: Doc } {
  return d !== null && typeof d === 'object' && !(d instanceof Raw);
}

/** the container and key that `path` leads to (indices modulo the keys found on the way) */
function locate(
  root: Doc,
  path: number[],
): { parent: Doc[] | { [key: string]: Doc }; key: string | number } | undefined {
  let parent: Doc = root;
  for (let i = 0; i < path.length; i++) {
    if (!isContainer(parent)) return undefined;
    const keys: (string | number)[] = Array.isArray(parent) ? parent.map((_, j) => j) : Object.keys(parent);
    if (keys.length === 0) return undefined;
    const key = keys[path[i]! % keys.length]!;
    const child: Doc = (parent as Record<string | number, Doc>)[key]!;
    if (i === path.length - 1 || !isContainer(child)) return { parent, key };
    parent = child;
  }
  return undefined;
}

function applyMutation(doc: Doc, m: Mutation): Doc {
  if (m.op === 'deepen') {
    const objects = objectsOf(doc);
    const target = objects[m.at % Math.max(objects.length, 1)];
    if (target) target.deep = new Raw(nested(m.depth, m.shape));
    return doc;
  }
  if (m.op === 'wrap') {
    let d = doc;
    for (let i = 0; i < m.depth; i++) d = i % 2 ? [d] : { message: d };
    return d;
  }
  if (m.op === 'add') {
    let target: Doc = doc;
    const at = m.path.length > 0 ? locate(doc, m.path) : undefined;
    if (at) {
      const child = (at.parent as Record<string | number, Doc>)[at.key]!;
      if (isContainer(child)) target = child;
    }
    if (Array.isArray(target)) target.push(m.value);
    else if (isContainer(target))
      Object.defineProperty(target, m.key, {
        value: m.value,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    return doc;
  }
  const at = locate(doc, m.path);
  if (!at) return doc;
  if (m.op === 'delete') {
    if (Array.isArray(at.parent)) at.parent.splice(at.key as number, 1);
    else delete at.parent[at.key as string];
  } else {
    (at.parent as Record<string | number, Doc>)[at.key] = m.value;
  }
  return doc;
}

/** what becomes of the text on its way: nothing, or bytes cut, flipped, inserted, or not UTF-8 */
type ByteChange =
  | { op: 'none' }
  | { op: 'truncate'; at: number }
  | { op: 'flip'; at: number[]; bytes: number[] }
  | { op: 'insert'; at: number; bytes: readonly number[] }
  | { op: 'prefix'; bytes: readonly number[] };

const byteChange: fc.Arbitrary<ByteChange> = fc.oneof(
  { weight: 12, arbitrary: fc.constant({ op: 'none' as const }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('flip' as const),
      at: fc.array(fc.nat(), { minLength: 1, maxLength: 4 }),
      bytes: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('insert' as const),
      at: fc.nat(),
      bytes: fc.oneof(
        fc.constantFrom(
          [0xff],
          [0xc0, 0x80],
          [0xed, 0xa0, 0x80],
          [0xf4, 0x90, 0x80, 0x80],
          [0x00],
          [0xe2, 0x80, 0xae],
        ),
        fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 16 }),
      ),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('prefix' as const),
      bytes: fc.constantFrom([0xef, 0xbb, 0xbf], [0xfe, 0xff], [0x20, 0x0a], [0x00]),
    }),
  },
);

function changeBytes(bytes: Buffer, c: ByteChange): Buffer {
  switch (c.op) {
    case 'none':
      return bytes;
    case 'truncate':
      return bytes.subarray(0, bytes.length === 0 ? 0 : c.at % bytes.length);
    case 'flip': {
      const out = Buffer.from(bytes);
      if (out.length > 0)
        c.at.forEach((i, j) => {
          out[i % out.length] = c.bytes[j]!;
        });
      return out;
    }
    case 'insert': {
      const at = bytes.length === 0 ? 0 : c.at % (bytes.length + 1);
      return Buffer.concat([bytes.subarray(0, at), Buffer.from(c.bytes), bytes.subarray(at)]);
    }
    case 'prefix':
      return Buffer.concat([Buffer.from(c.bytes), bytes]);
  }
}

/**
 * Payloads built from a valid message: as it is, with mutations (values replaced by hostile ones,
 * keys deleted or added, the whole wrapped), and with its bytes changed; or no message at all
 * (random bytes, a bare hostile value, a deep nesting).
 */
export function hostilePayload(valid: fc.Arbitrary<Doc>): fc.Arbitrary<Buffer> {
  const mutated = fc
    .tuple(valid, fc.array(mutation, { maxLength: 4 }), byteChange)
    .map(([doc, mutations, change]) => {
      let d = doc;
      for (const m of mutations) d = applyMutation(d, m);
      return changeBytes(Buffer.from(docText(d), 'utf8'), change);
    });
  return fc.oneof(
    { weight: 12, arbitrary: mutated },
    { weight: 1, arbitrary: hostileValue.map((v) => Buffer.from(docText(v), 'utf8')) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 2048 }).map((a) => Buffer.from(a)) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(Buffer.alloc(0), Buffer.from('null'), Buffer.from('{}'), Buffer.from('[]')),
    },
  );
}
