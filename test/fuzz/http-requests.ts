import { Agent, request } from 'node:http';
import fc from 'fast-check';
import type { RouteAccess } from '../../control-plane/api/auth-plugin.ts';
import { type Doc, docText, hostileString, hostileValue, nested } from './hostile.ts';
import { deviceId } from './messages.ts';
import { checkProperty, type FuzzRun, within } from './property.ts';
import { assertHealthy, STALL_MS } from './stalls.ts';
import { type FuzzTarget, LEGIT_DEVICE } from './target.ts';

/** requests sent at once per generated case */
const PER_CASE = 16;
/** the server errors the API documents: 502 (the broker link failed a command), 503 (live streams full) */
export const DOCUMENTED_5XX = new Set([502, 503]);

/** node's limit on a request's line and headers (431 and the connection closed past it) */
const MAX_HEADER_BYTES = 16 * 1024;

type Auth = 'anonymous' | 'admin' | 'device' | 'garbage';

export interface FuzzedRequest {
  route: number;
  method: string;
  path: string;
  query: string;
  headers: Record<string, string>;
  auth: Auth;
  body: Buffer | undefined;
}

/** percent-encoded, lone surrogates (which encodeURIComponent refuses) as U+FFFD */
const encode = (s: string) =>
  encodeURIComponent(
    s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd'),
  );

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE', 'PROPFIND', 'FOO'];
const QUERY_KEYS = [
  'limit',
  'cursor',
  'device',
  'camera',
  'rule',
  'class',
  'from',
  'to',
  'status',
  'hardwareClass',
  'idPrefix',
  't',
  '__proto__',
  'constructor',
];

/** one path segment for a `:param`: valid ids, ids of other devices, and hostile text (encoded or raw) */
const segment: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: deviceId },
  { weight: 2, arbitrary: fc.stringMatching(/^[A-Za-z0-9_-]{8,64}$/) },
  { weight: 1, arbitrary: fc.constantFrom('snapshot', 'reload-config', 'restart-camera', 'REBOOT') },
  { weight: 3, arbitrary: hostileString.map((s) => encode(s.slice(0, 20_000))) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '..',
      '.',
      '%',
      '%zz',
      '%00',
      '%2e%2e',
      '%2F',
      ';',
      '~',
      '%C0%AF',
      '%ED%A0%80',
      `${'a'.repeat(9000)}`,
    ),
  },
);

const queryValue: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '1',
    '0',
    '-1',
    '500',
    '501',
    '1e3',
    '99999999999999999999',
    'online',
    'true',
    '',
    '2026-05-01T10:00:00Z',
  ),
  deviceId,
  hostileString.map((s) => encode(s.slice(0, 5000))),
  fc.constantFrom('%', '%zz', '&', '=', '[]', '%00'),
);

const query: fc.Arbitrary<string> = fc.oneof(
  { weight: 2, arbitrary: fc.constant('') },
  {
    weight: 5,
    arbitrary: fc
      .array(
        fc.tuple(
          fc.oneof(fc.constantFrom(...QUERY_KEYS), fc.string({ maxLength: 10 }).map(encode)),
          queryValue,
        ),
        {
          maxLength: 6,
        },
      )
      .map((pairs) => pairs.map(([k, v]) => `${k}=${v}`).join('&')),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom('&&&', '=', '==', 'limit', 'limit[]=1&limit[]=2', 'a'.repeat(10_000)),
  },
);

const contentType = fc.constantFrom(
  'application/json',
  'application/json; charset=utf-8',
  'application/JSON',
  'application/json; charset=latin1',
  'application/problem+json',
  'text/plain',
  'image/jpeg',
  'application/octet-stream',
  'multipart/form-data; boundary=x',
  'application/x-www-form-urlencoded',
  '',
  ';;;',
  'application/json, text/plain',
);

/** a JSON text for the commands route and any other: valid, wrong types, deep, huge */
const jsonBody: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc
      .dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 3 }))
      .map((args) => JSON.stringify({ args })),
  },
  { weight: 3, arbitrary: hostileValue.map((v) => docText({ args: v } as Doc)) },
  { weight: 2, arbitrary: hostileValue.map(docText) },
  { weight: 1, arbitrary: fc.integer({ min: 10, max: 50_000 }).map((d) => nested(d, 'array')) },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 10, max: 20_000 }).map((d) => `{"args":${nested(d, 'object', '{}')}}`),
  },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: 60_000, max: 300_000 })
      .map((n) => JSON.stringify({ args: { pad: 'x'.repeat(n) } })),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '',
      '{',
      'null',
      '"args"',
      '{"args":null}',
      '{"args":[]}',
      '{"__proto__":{"args":{}}}',
    ),
  },
);

const body: fc.Arbitrary<Buffer | undefined> = fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  { weight: 5, arbitrary: jsonBody.map((t) => Buffer.from(t, 'utf8')) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 4096 }).map((a) => Buffer.from(a)) },
  // JPEG-like, mostly small, now and then past the snapshot limit (4 MiB)
  {
    weight: 1,
    arbitrary: fc
      .oneof(
        { weight: 19, arbitrary: fc.integer({ min: 0, max: 100_000 }) },
        { weight: 1, arbitrary: fc.constantFrom(4 * 1024 * 1024 - 4, 4 * 1024 * 1024 + 1) },
      )
      .map((n) => Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(n, 7)])),
  },
);

const extraHeaders = fc.dictionary(
  fc.constantFrom(
    'x-forwarded-for',
    'accept',
    'accept-encoding',
    'range',
    'if-none-match',
    'origin',
    'cookie',
    'x-request-id',
    'expect',
  ),
  fc.oneof(
    fc.constantFrom('*/*', 'gzip, br', 'bytes=0-1', 'bytes=9999999999-', '100-continue', 'text/event-stream'),
    fc.string({
      unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
      maxLength: 200,
    }),
  ),
  { maxKeys: 3 },
);

function fuzzedRequest(routes: readonly RouteAccess[]): fc.Arbitrary<FuzzedRequest> {
  return fc
    .record({
      route: fc.nat({ max: routes.length - 1 }),
      otherMethod: fc.option(fc.constantFrom(...METHODS), { freq: 4 }),
      params: fc.array(segment, { minLength: 4, maxLength: 4 }),
      tail: fc.array(segment, { maxLength: 3 }),
      query,
      contentType: fc.option(contentType, { freq: 6 }),
      extra: extraHeaders,
      auth: fc.constantFrom<Auth>('anonymous', 'admin', 'admin', 'device', 'garbage'),
      garbage: fc.oneof(
        fc.constantFrom('Bearer', 'Bearer ', 'Basic YTpi', 'bearer x', `Bearer ${'x'.repeat(8000)}`),
        fc.string({
          unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
          maxLength: 100,
        }),
      ),
      body,
    })
    .map((r) => {
      const route = routes[r.route]!;
      let i = 0;
      const path = route.url
        .split('/')
        .map((part) =>
          part.startsWith(':') ? r.params[i++ % r.params.length]! : part === '*' ? r.tail.join('/') : part,
        )
        .join('/');
      const method = r.otherMethod ?? route.method;
      const headers: Record<string, string> = { ...r.extra };
      if (r.contentType !== null) headers['content-type'] = r.contentType;
      return {
        route: r.route,
        method,
        path,
        query: r.query,
        headers,
        auth: r.auth,
        body: method === 'HEAD' ? undefined : r.body,
        garbage: r.garbage,
      };
    })
    .map(({ garbage, ...req }) => ({
      ...req,
      headers: { ...req.headers, ...(req.auth === 'garbage' ? { authorization: garbage } : {}) },
    }));
}

interface Answer {
  status: number;
  /** no answer within STALL_MS */
  stalled?: boolean;
  /** the connection ended before an answer */
  reset?: string;
}

function send(url: string, agent: Agent, r: FuzzedRequest, auth: Record<string, string>): Promise<Answer> {
  const { hostname, port } = new URL(url);
  return new Promise((settle) => {
    const timer = setTimeout(() => {
      req.destroy();
      settle({ status: 0, stalled: true });
    }, STALL_MS);
    const resolve = (a: Answer) => {
      clearTimeout(timer);
      settle(a);
    };
    const req = request(
      {
        host: hostname,
        port,
        agent,
        method: r.method,
        path: r.query ? `${r.path}?${r.query}` : r.path,
        headers: { ...r.headers, ...auth, ...(r.body ? { 'content-length': String(r.body.length) } : {}) },
      },
      (res) => {
        const status = res.statusCode ?? 0;
        // a live stream stays open: its head is the answer
        if ((res.headers['content-type'] ?? '').startsWith('text/event-stream')) {
          res.destroy();
          return resolve({ status });
        }
        res.on('data', () => {});
        res.on('end', () => resolve({ status }));
        res.on('error', (err) => resolve({ status, reset: err.message }));
      },
    );
    req.on('error', (err) =>
      resolve({ status: 0, reset: `${(err as NodeJS.ErrnoException).code ?? ''} ${err.message}` }),
    );
    if (r.body) req.end(r.body);
    else req.end();
  });
}

export interface HttpFuzzCount {
  requests: number;
  routes: number;
  byAuth: Record<Auth, number>;
  /** answers by status class, e.g. 4xx */
  byStatus: Record<string, number>;
  /** connections closed before a complete answer (bodies past the size limit, heads past 16 KiB) */
  resets: number;
  seed: number;
}

/**
 * Generated HTTP requests across every registered route (HEAD and the docs' own included): the
 * route's method or another, path parameters, query strings, content types, headers and bodies
 * (valid, deep, huge, of the wrong type), anonymous, as admin (`target.adminHeaders`), as the legit
 * device and with garbage credentials. Every answer must be below 500 or a documented 5xx; the
 * server may close a connection only for a body over its size limit or a head over 16 KiB; the legit device keeps being
 * acknowledged.
 */
export async function fuzzHttp(target: FuzzTarget, requests: number, run: FuzzRun): Promise<HttpFuzzCount> {
  const routes = target.cp.routes;
  const agent = new Agent({ keepAlive: true, maxSockets: 16 });
  const count: HttpFuzzCount = {
    requests: 0,
    routes: routes.length,
    byAuth: { anonymous: 0, admin: 0, device: 0, garbage: 0 },
    byStatus: {},
    resets: 0,
    seed: run.seed,
  };
  try {
    await checkProperty(
      'http',
      fc.array(fuzzedRequest(routes), { minLength: PER_CASE, maxLength: PER_CASE }),
      async (batch) => {
        const answers = await within(
          STALL_MS * 3,
          `the answers to ${batch.length} requests`,
          Promise.all(
            batch.map((r) => {
              const auth =
                r.auth === 'admin'
                  ? target.adminHeaders()
                  : r.auth === 'device'
                    ? target.deviceHeaders()
                    : {};
              return send(target.cp.httpUrl, agent, r, auth);
            }),
          ),
        );
        answers.forEach((a, i) => {
          const r = batch[i]!;
          const where = `${r.method} ${routes[r.route]!.url} (${r.path.slice(0, 80)}?${r.query.slice(0, 80)})`;
          if (a.stalled) throw new Error(`stall: no answer within ${STALL_MS} ms to ${where}`);
          if (a.reset) {
            const headBytes =
              r.path.length +
              r.query.length +
              Object.entries(r.headers).reduce((n, [k, v]) => n + k.length + v.length, 0);
            const large = (r.body?.length ?? 0) > target.bodyBytes || headBytes > MAX_HEADER_BYTES;
            if (!large) throw new Error(`the connection ended without an answer to ${where}: ${a.reset}`);
            count.resets++;
          } else if (a.status >= 500 && !DOCUMENTED_5XX.has(a.status)) {
            throw new Error(`${a.status} for ${where}`);
          } else {
            const cls = `${Math.floor(a.status / 100)}xx`;
            count.byStatus[cls] = (count.byStatus[cls] ?? 0) + 1;
          }
          count.byAuth[r.auth]++;
          count.requests++;
        });
        assertHealthy(target);
      },
      Math.ceil(requests / PER_CASE),
      run,
    );
  } finally {
    agent.destroy();
  }
  return count;
}

/** every page of a list, following nextCursor; each must answer 200 */
async function walk(target: FuzzTarget, url: string): Promise<number> {
  let items = 0;
  let cursor: string | null = null;
  do {
    const res = await fetch(`${url}${cursor ? `&cursor=${cursor}` : ''}`, { headers: target.adminHeaders() });
    if (res.status !== 200) throw new Error(`${url}: ${res.status} ${(await res.text()).slice(0, 200)}`);
    const page = (await res.json()) as { events?: unknown[]; devices?: unknown[]; nextCursor: string | null };
    items += (page.events ?? page.devices ?? []).length;
    cursor = page.nextCursor;
  } while (cursor);
  return items;
}

/**
 * The legit HTTP flows after fuzzing: the device's snapshot upload, its device and events listed,
 * and every page of every event and device stored (whatever the fuzzers got stored) served.
 */
export async function assertLegitHttp(target: FuzzTarget): Promise<void> {
  const base = target.cp.httpUrl;
  const snapshotId = `legit-${Date.now()}`;
  const upload = await fetch(`${base}/api/v1/devices/${LEGIT_DEVICE}/snapshots/${snapshotId}`, {
    method: 'PUT',
    headers: { 'content-type': 'image/jpeg', ...target.deviceHeaders() },
    body: Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]),
  });
  if (upload.status !== 201) throw new Error(`the legit snapshot upload answered ${upload.status}`);
  const devices = await fetch(`${base}/api/v1/devices?idPrefix=${LEGIT_DEVICE}`, {
    headers: target.adminHeaders(),
  });
  const list = (await devices.json()) as { devices?: { id: string }[] };
  if (!list.devices?.some((d) => d.id === LEGIT_DEVICE))
    throw new Error(`GET /api/v1/devices: ${devices.status}`);
  if ((await walk(target, `${base}/api/v1/events?device=${LEGIT_DEVICE}&limit=500`)) === 0)
    throw new Error(`no event of ${LEGIT_DEVICE} is served`);
  await walk(target, `${base}/api/v1/events?limit=500`);
  await walk(target, `${base}/api/v1/devices?limit=500`);
}
