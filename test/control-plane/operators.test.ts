import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import Fastify from 'fastify';
import { createLogger } from '../../common/logger.ts';
import type { Role } from '../../control-plane/api/access.ts';
import { installAuth, type RouteAccess } from '../../control-plane/api/auth-plugin.ts';
import type { ApiContext, App } from '../../control-plane/api/context.ts';
import type { ControlPlane } from '../../control-plane/index.ts';
import { ApiTokens } from '../../control-plane/storage/api-tokens.ts';
import { Sessions } from '../../control-plane/storage/sessions.ts';
import { Users } from '../../control-plane/storage/users.ts';
import { eventually } from '../helpers/eventually.ts';
import { metric, startTestControlPlane, TOKEN, tokenFor } from './setup.ts';

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);
const PASSWORDS: Record<Role, string> = {
  admin: 'admin-password-for-tests',
  operator: 'operator-password-for-tests',
  viewer: 'viewer-password-for-tests',
};

/** a concrete path for a route: each parameter gets a value of its kind */
function pathOf(url: string): string {
  return url
    .replace(':device', 'box-1')
    .replace(':name', 'snapshot')
    .replace(/:[a-z]+/gi, 'abcdefgh-1')
    .replace('*', 'index.html');
}

interface Call {
  method: string;
  headers?: Record<string, string>;
  body?: string;
}

async function call(cp: ControlPlane, path: string, c: Call): Promise<Response> {
  const res = await fetch(`${cp.httpUrl}${path}`, {
    method: c.method,
    headers: { ...(c.body !== undefined ? { 'content-type': 'application/json' } : {}), ...c.headers },
    body: c.body ?? null,
  });
  // the live stream never ends by itself
  if (res.headers.get('content-type')?.startsWith('text/event-stream')) await res.body?.cancel();
  return res;
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function login(cp: ControlPlane, name: string, password: string) {
  const res = await call(cp, '/api/v1/login', { method: 'POST', body: JSON.stringify({ name, password }) });
  const cookie = res.headers.get('set-cookie') ?? '';
  const body = (await res.json().catch(() => ({}))) as { csrfToken?: string; role?: string; error?: string };
  return { status: res.status, setCookie: cookie, cookie: cookie.split(';')[0]!, body };
}

interface AuditPage {
  entries: {
    id: number;
    at: string;
    actor: string;
    actorKind: string;
    action: string;
    params: Record<string, string>;
    address: string;
    status: number;
    outcome: string;
  }[];
  nextCursor: string | null;
}

describe('operators: accounts, roles, sessions, API tokens, audit', () => {
  let dir: string;
  let cp: ControlPlane;
  const tokens = {} as Record<Role, string>;
  let routes: readonly RouteAccess[];
  const audit = async (query = '') =>
    (await (
      await call(cp, `/api/v1/audit?${query}`, { method: 'GET', headers: bearer(tokenFor(cp.httpUrl)) })
    ).json()) as AuditPage;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-operators-'));
    // the address limit has its own test below; here many logins come from 127.0.0.1
    cp = await startTestControlPlane({ dir, auth: { loginsPerAddress: 1000 } });
    const users = new Users(cp.repository.sql);
    const apiTokens = new ApiTokens(cp.repository.sql);
    for (const role of ['admin', 'operator', 'viewer'] as const) {
      assert.equal(await users.add(`${role}-1`, role, PASSWORDS[role]), true);
      tokens[role] = (await apiTokens.create(`${role} script`, role, 'tests')).secret;
    }
    routes = cp.routes;
  });
  after(async () => {
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('knows every route with its access level: the operators’ routes among them', () => {
    const names = new Set(routes.map((r) => `${r.method} ${r.url}`));
    for (const r of [
      'POST /api/v1/login',
      'POST /api/v1/logout',
      'GET /api/v1/me',
      'GET /api/v1/users',
      'POST /api/v1/users',
      'PATCH /api/v1/users/:name',
      'PUT /api/v1/users/:name/password',
      'DELETE /api/v1/users/:name',
      'GET /api/v1/tokens',
      'POST /api/v1/tokens',
      'DELETE /api/v1/tokens/:id',
      'GET /api/v1/audit',
      'GET /docs/json',
      // the data–model loop's: harvested frames (a device's upload, an operator's reading) and runs
      'PUT /api/v1/devices/:device/harvest/:id',
      'GET /api/v1/harvest',
      'GET /api/v1/harvest/:device/:id',
      'POST /api/v1/loop/runs',
      'GET /api/v1/loop/runs',
      'GET /api/v1/loop/runs/:id',
      'POST /api/v1/loop/runs/:id/cancel',
    ])
      assert.ok(names.has(r), r);
    const publicRoutes = routes.filter((r) => r.access === 'public').map((r) => `${r.method} ${r.url}`);
    assert.deepEqual(
      new Set(publicRoutes),
      new Set([
        'GET /healthz',
        'HEAD /healthz',
        // the console's static shell: index.html and its hashed assets (its data comes through the API)
        'GET /',
        'HEAD /',
        'GET /assets/:file',
        'HEAD /assets/:file',
        'POST /api/v1/login',
        'POST /api/v1/logout',
        // a box's one-time claim token in exchange for its credential (rate-limited)
        'POST /api/v1/devices/:device/enroll',
        // the live view's page and player script (the stream itself needs a login)
        'GET /live/:device/:camera',
        'HEAD /live/:device/:camera',
        'GET /live/player.js',
        'HEAD /live/player.js',
      ]),
    );
  });

  it('anonymous: 401 on every route but the public ones (device routes included)', async () => {
    for (const r of routes) {
      const res = await call(cp, pathOf(r.url), { method: r.method });
      if (r.access === 'public') assert.notEqual(res.status, 401, `${r.method} ${r.url}`);
      else assert.equal(res.status, 401, `${r.method} ${r.url} (${r.access})`);
    }
  });

  it("device routes take only the device's own token, not an operator's", async () => {
    for (const r of routes.filter((x) => x.access === 'device')) {
      assert.equal(
        (await call(cp, pathOf(r.url), { method: r.method, headers: bearer(tokens.admin) })).status,
        401,
      );
      const own = await call(cp, pathOf(r.url), { method: r.method, headers: bearer(TOKEN) });
      assert.notEqual(own.status, 401, `${r.method} ${r.url}`);
    }
  });

  it('each role: 403 exactly on the routes above it, by API token and by session', async () => {
    const rank = { viewer: 0, operator: 1, admin: 2 } as const;
    for (const role of ['viewer', 'operator', 'admin'] as const) {
      const session = await login(cp, `${role}-1`, PASSWORDS[role]);
      assert.equal(session.status, 200);
      for (const r of routes) {
        if (r.access === 'public' || r.access === 'device') continue;
        const above = rank[r.access] > rank[role];
        for (const [via, headers] of [
          ['token', bearer(tokens[role])],
          ['session', { cookie: session.cookie, 'x-csrf-token': session.body.csrfToken! }],
        ] as const) {
          const res = await call(cp, pathOf(r.url), { method: r.method, headers });
          const what: string = `${role} ${via}: ${r.method} ${r.url} (${r.access})`;
          if (above) assert.equal(res.status, 403, what);
          else assert.ok(res.status !== 401 && res.status !== 403, `${what}: ${res.status}`);
        }
      }
    }
    // the classes the issue names: a viewer changes nothing, an operator administers nothing
    for (const r of routes.filter(
      (x) => !SAFE.has(x.method) && (x.access === 'operator' || x.access === 'admin'),
    ))
      assert.equal(
        (await call(cp, pathOf(r.url), { method: r.method, headers: bearer(tokens.viewer) })).status,
        403,
      );
  });

  it('refuses wrong, expired and revoked credentials with 401 (any string as a credential, seed 1401)', async () => {
    const me = (headers: Record<string, string>) => call(cp, '/api/v1/me', { method: 'GET', headers });
    assert.equal((await me(bearer(tokens.viewer))).status, 200);
    const apiTokens = new ApiTokens(cp.repository.sql);
    const { token, secret } = await apiTokens.create('soon revoked', 'admin', 'tests');
    assert.equal((await me(bearer(secret))).status, 200);
    const revoke = await call(cp, `/api/v1/tokens/${token.id}`, {
      method: 'DELETE',
      headers: bearer(tokens.admin),
    });
    assert.equal(revoke.status, 204);
    assert.equal((await me(bearer(secret))).status, 401, 'revoked');
    const listed = (await (
      await call(cp, '/api/v1/tokens', { method: 'GET', headers: bearer(tokens.admin) })
    ).json()) as { tokens: { id: string; revokedAt: string | null; lastUsedAt: string | null }[] };
    const row = listed.tokens.find((t) => t.id === token.id)!;
    assert.ok(row.revokedAt && row.lastUsedAt, 'revoked, and its last use recorded');
    assert.ok(!JSON.stringify(listed).includes(secret), 'the list holds no secret');

    const expired = await new Sessions(cp.repository.sql).create('admin-1', 1000, Date.now() - 2000);
    assert.equal((await me({ cookie: `argus_session=${expired.id}` })).status, 401, 'expired session');
    assert.equal((await me(bearer(`${secret}x`))).status, 401);
    assert.equal((await me({ authorization: tokens.admin })).status, 401, 'without "Bearer"');
    // a token that is right but sent beside a wrong bearer is not looked at: the header decides
    assert.equal((await me({ cookie: 'argus_session=nonsense', ...bearer(tokens.admin) })).status, 200);

    await fc.assert(
      fc.asyncProperty(fc.stringMatching(/^[\x21-\x7e]{0,200}$/), async (junk) => {
        assert.equal((await me(bearer(junk))).status, 401);
        assert.equal((await me({ cookie: `argus_session=${encodeURIComponent(junk)}` })).status, 401);
      }),
      { seed: 1401, numRuns: 100 },
    );
  });

  it('sets an HttpOnly SameSite=Strict cookie and wants the CSRF token for state changes by cookie', async () => {
    const s = await login(cp, 'operator-1', PASSWORDS.operator);
    assert.equal(s.status, 200);
    assert.match(s.setCookie, /HttpOnly/i);
    assert.match(s.setCookie, /SameSite=Strict/i);
    assert.doesNotMatch(s.setCookie, /Secure/i, 'plain HTTP here; Secure over TLS');
    const command = (headers: Record<string, string>) =>
      call(cp, '/api/v1/devices/nobody/commands/snapshot', { method: 'POST', headers, body: '{}' });
    assert.equal((await command({ cookie: s.cookie })).status, 403, 'no CSRF token');
    assert.equal(
      (await command({ cookie: s.cookie, 'x-csrf-token': 'x'.repeat(43) })).status,
      403,
      'a wrong one',
    );
    // as many characters as the token but more bytes (a header is latin1)
    assert.equal((await command({ cookie: s.cookie, 'x-csrf-token': 'é'.repeat(43) })).status, 403);
    assert.equal((await command({ cookie: s.cookie, 'x-csrf-token': s.body.csrfToken! })).status, 404);
    assert.equal((await command(bearer(tokens.operator))).status, 404, 'a bearer token needs none');
    const me = await call(cp, '/api/v1/me', { method: 'GET', headers: { cookie: s.cookie } });
    assert.deepEqual(
      { ...((await me.json()) as object), expiresAt: undefined },
      {
        name: 'operator-1',
        role: 'operator',
        via: 'session',
        csrfToken: s.body.csrfToken,
        expiresAt: undefined,
      },
    );
    const logout = (headers: Record<string, string>) =>
      call(cp, '/api/v1/logout', { method: 'POST', headers });
    assert.equal((await logout({ cookie: s.cookie })).status, 403, 'logout too wants the CSRF token');
    assert.equal((await logout({ cookie: s.cookie, 'x-csrf-token': s.body.csrfToken! })).status, 204);
    assert.equal(
      (await call(cp, '/api/v1/me', { method: 'GET', headers: { cookie: s.cookie } })).status,
      401,
    );
  });

  it('manages accounts over the API: add, role, password (ending sessions), remove; never the last admin', async () => {
    const admin = bearer(tokens.admin);
    const json = (method: string, path: string, body?: unknown) =>
      call(cp, path, {
        method,
        headers: admin,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    assert.equal(
      (await json('POST', '/api/v1/users', { name: 'carol', role: 'viewer', password: 'short' })).status,
      400,
    );
    assert.equal(
      (await json('POST', '/api/v1/users', { name: 'carol', role: 'viewer', password: 'carol-password-1' }))
        .status,
      201,
    );
    assert.equal(
      (await json('POST', '/api/v1/users', { name: 'carol', role: 'admin', password: 'carol-password-1' }))
        .status,
      409,
    );
    const s = await login(cp, 'carol', 'carol-password-1');
    assert.equal(s.body.role, 'viewer');
    assert.equal((await json('PATCH', '/api/v1/users/carol', { role: 'operator' })).status, 200);
    const me = await call(cp, '/api/v1/me', { method: 'GET', headers: { cookie: s.cookie } });
    assert.equal(((await me.json()) as { role: string }).role, 'operator', 'the new role applies at once');
    assert.equal(
      (await json('PUT', '/api/v1/users/carol/password', { password: 'carol-password-2' })).status,
      204,
    );
    assert.equal(
      (await call(cp, '/api/v1/me', { method: 'GET', headers: { cookie: s.cookie } })).status,
      401,
    );
    assert.equal((await login(cp, 'carol', 'carol-password-2')).status, 200);
    assert.equal((await json('DELETE', '/api/v1/users/carol')).status, 204);
    assert.equal((await json('DELETE', '/api/v1/users/carol')).status, 404);
    assert.equal((await json('DELETE', '/api/v1/users/admin-1')).status, 409, 'the only admin');
    assert.equal((await json('PATCH', '/api/v1/users/admin-1', { role: 'viewer' })).status, 409);
    const list = (await (await json('GET', '/api/v1/users')).json()) as { users: { name: string }[] };
    assert.deepEqual(
      list.users.map((u) => u.name),
      ['admin-1', 'operator-1', 'viewer-1'],
    );
    assert.ok(!JSON.stringify(list).includes('scrypt'), 'no password hash in the answer');
  });

  it('throttles logins per account (429, counted) whatever the password, and a success clears the count', async () => {
    const users = new Users(cp.repository.sql);
    await users.add('dave', 'viewer', 'dave-password-123');
    const before = await metric(cp.httpUrl, 'argus_logins_throttled_total{by="account"}');
    for (let i = 0; i < 4; i++) assert.equal((await login(cp, 'dave', `wrong-${i}`)).status, 401);
    assert.equal((await login(cp, 'dave', 'dave-password-123')).status, 200, 'under the limit');
    for (let i = 0; i < 5; i++) assert.equal((await login(cp, 'dave', `wrong-${i}`)).status, 401);
    const throttled = await login(cp, 'dave', 'dave-password-123');
    assert.equal(throttled.status, 429, 'the right password no longer helps');
    assert.match(throttled.body.error ?? '', /too many failed logins/);
    assert.equal(await metric(cp.httpUrl, 'argus_logins_throttled_total{by="account"}'), before + 1);
    assert.equal((await login(cp, 'viewer-1', PASSWORDS.viewer)).status, 200, 'other accounts are not held');
  });

  it('audits logins and every state change with who, when, what, from where and the result; no secret', async () => {
    const t0 = Date.now();
    await login(cp, 'admin-1', 'not the password');
    await login(cp, 'admin-1', PASSWORDS.admin);
    await call(cp, '/api/v1/devices/box-1/commands/snapshot', {
      method: 'POST',
      headers: bearer(tokens.viewer),
      body: '{}',
    });
    await call(cp, '/api/v1/devices/nobody/commands/snapshot', {
      method: 'POST',
      headers: bearer(tokens.operator),
      body: '{}',
    });
    const entries = await eventually(
      async () => {
        const page = await audit(`from=${new Date(t0).toISOString()}&limit=500`);
        return page.entries.length >= 4 ? page.entries : undefined;
      },
      5000,
      'the audit entries',
    );
    const find = (action: string, actor: string, status: number) =>
      entries.find((e) => e.action === action && e.actor === actor && e.status === status);
    const failed = find('login', 'admin-1', 401);
    assert.ok(failed, 'the failed login');
    assert.equal(failed.outcome, 'denied');
    assert.equal(failed.address, '127.0.0.1');
    assert.ok(Date.parse(failed.at) >= t0 - 1000);
    assert.equal(find('login', 'admin-1', 200)?.outcome, 'ok');
    const denied = find('POST /api/v1/devices/:id/commands/:name', 'viewer script', 403);
    assert.deepEqual(denied?.params, { id: 'box-1', name: 'snapshot' });
    assert.equal(denied?.actorKind, 'token');
    assert.equal(find('POST /api/v1/devices/:id/commands/:name', 'operator script', 404)?.outcome, 'failed');
    // the earlier tests' changes are there too: a revoked token, accounts changed, a snapshot upload
    const all = await audit('limit=500');
    for (const action of [
      'DELETE /api/v1/tokens/:id',
      'POST /api/v1/users',
      'PATCH /api/v1/users/:name',
      'PUT /api/v1/users/:name/password',
      'DELETE /api/v1/users/:name',
      'logout',
    ])
      assert.ok(
        all.entries.some((e) => e.action === action && e.outcome === 'ok'),
        action,
      );
    const upload = all.entries.find((e) => e.action === 'PUT /api/v1/devices/:device/snapshots/:id');
    assert.deepEqual(
      upload && { actor: upload.actor, actorKind: upload.actorKind, params: upload.params },
      { actor: 'box-1', actorKind: 'device', params: { device: 'box-1', id: 'abcdefgh-1' } },
      'a device route is audited too',
    );
    const text = JSON.stringify(all);
    for (const secret of [...Object.values(PASSWORDS), ...Object.values(tokens), TOKEN, 'carol-password'])
      assert.ok(!text.includes(secret), 'no password or token in the audit log');
    // paging and filters
    const first = await audit('limit=2');
    assert.equal(first.entries.length, 2);
    const second = await audit(`limit=2&cursor=${first.nextCursor}`);
    assert.ok(second.entries[0]!.id < first.entries[1]!.id);
    const logins = await audit('action=login&outcome=denied&limit=500');
    assert.ok(
      logins.entries.length >= 1 &&
        logins.entries.every((e) => e.action === 'login' && e.outcome === 'denied'),
    );
    const byActor = await audit('actor=viewer%20script&limit=500');
    assert.ok(byActor.entries.length >= 1 && byActor.entries.every((e) => e.actor === 'viewer script'));
  });

  it('documents the security schemes, each route’s security and the request bodies in OpenAPI', async () => {
    const res = await call(cp, '/docs/json', { method: 'GET', headers: bearer(tokens.viewer) });
    const spec = (await res.json()) as {
      components: { securitySchemes: Record<string, { type: string }> };
      paths: Record<string, Record<string, { security?: unknown[]; requestBody?: unknown }>>;
    };
    assert.deepEqual(Object.keys(spec.components.securitySchemes).sort(), [
      'apiToken',
      'deviceToken',
      'session',
    ]);
    assert.deepEqual(spec.paths['/api/v1/login']!.post!.security, []);
    assert.deepEqual(spec.paths['/api/v1/users']!.post!.security, [{ session: [] }, { apiToken: [] }]);
    assert.deepEqual(spec.paths['/api/v1/devices/{device}/snapshots/{id}']!.put!.security, [
      { deviceToken: [] },
    ]);
    assert.ok(spec.paths['/api/v1/login']!.post!.requestBody, 'the login body');
    assert.ok(spec.paths['/api/v1/users']!.post!.requestBody);
  });
});

describe('login throttling per address', () => {
  let dir: string;
  let cp: ControlPlane;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-throttle-'));
    cp = await startTestControlPlane({ dir, auth: { loginsPerAddress: 3, addressWindowS: 60 } });
  });
  after(async () => {
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers 429 past the limit, for any account, and counts it', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await login(cp, `someone-${i}`, 'guess')).status, 401);
    const res = await login(cp, 'someone-else', 'guess');
    assert.equal(res.status, 429);
    assert.equal(await metric(cp.httpUrl, 'argus_logins_throttled_total{by="address"}'), 1);
  });
});

describe('the auth plugin', () => {
  it('refuses to start with a route that declares no access level', async () => {
    const app: App = Fastify();
    await installAuth(app, {} as ApiContext, createLogger('test'));
    assert.throws(() => app.get('/unguarded', async () => 'open'), /declares no access level/);
    assert.throws(
      () => app.put('/api/v1/things/:id', { config: { access: 'device' } }, async () => 'x'),
      /no :device parameter/,
    );
    await app.close();
  });
});
