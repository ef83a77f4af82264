import { timingSafeEqual } from 'node:crypto';
import cookie from '@fastify/cookie';
import rateLimit from '@fastify/rate-limit';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { errorMessage } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { type ActorKind, type AuditEntry, outcomeOf } from '../storage/audit.ts';
import { ACCESS_LEVELS, type Access, type Role, roleAllows } from './access.ts';
import type { ApiContext, App } from './context.ts';

export const SESSION_COOKIE = 'argus_session';
export const CSRF_HEADER = 'x-csrf-token';
/** the OpenAPI security schemes, by name */
export const SECURITY_SCHEMES = {
  session: {
    type: 'apiKey',
    in: 'cookie',
    name: SESSION_COOKIE,
    description: `browser session from POST /api/v1/login; state-changing requests also send the session's CSRF token in ${CSRF_HEADER}`,
  },
  apiToken: { type: 'http', scheme: 'bearer', description: 'an API token (POST /api/v1/tokens)' },
  deviceToken: { type: 'http', scheme: 'bearer', description: "the device's own token" },
} as const;
/** routes of @fastify/swagger-ui, which declare no access: the API's documentation is for operators */
export const DOCS_PREFIX = '/docs';
const DOCS_ACCESS: Access = 'viewer';
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
/** longer credentials are not looked up (a session id is 43 characters, an API token 49) */
const MAX_CREDENTIAL_LENGTH = 128;

/** a registered route and who may call it */
export interface RouteAccess {
  method: string;
  url: string;
  access: Access;
}

/** who sent a request, once authenticated */
export interface Principal {
  kind: Exclude<ActorKind, 'anonymous'>;
  name: string;
  /** absent for a device */
  role?: Role;
  /** present when authenticated by the session cookie */
  session?: { id: string; csrfToken: string; expiresAt: number };
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
    /**
     * what a state-changing request acted on when its path does not name it (e.g. the site of a
     * queued loop run and the run's id), set by the route from its validated body and answer:
     * written to the audit entry beside the path parameters
     */
    auditSubject?: Record<string, string>;
  }
}

function refuse(reply: FastifyReply, ctx: ApiContext, status: 401 | 403, error: string, hint: string) {
  ctx.metrics.count(ctx.metrics.apiRefused, status);
  return reply.code(status).send({ error, hint });
}

/** true when the CSRF header holds the session's token (compared in constant time) */
export function csrfMatches(req: FastifyRequest, expected: string): boolean {
  const sent = req.headers[CSRF_HEADER];
  if (typeof sent !== 'string') return false;
  const a = Buffer.from(sent);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** the operator behind a request: an API token (`Authorization: Bearer`) or else the session cookie */
async function authenticate(req: FastifyRequest, ctx: ApiContext): Promise<Principal | undefined> {
  const authorization = req.headers.authorization;
  if (authorization !== undefined) {
    const secret = /^Bearer\s+(\S+)$/i.exec(authorization)?.[1];
    if (!secret || secret.length > MAX_CREDENTIAL_LENGTH) return undefined;
    const token = await ctx.auth.tokens.authenticate(secret);
    return token ? { kind: 'token', name: token.name, role: token.role } : undefined;
  }
  const id = req.cookies[SESSION_COOKIE];
  if (!id || id.length > MAX_CREDENTIAL_LENGTH) return undefined;
  const session = await ctx.auth.sessions.find(id);
  return session
    ? {
        kind: 'user',
        name: session.user,
        role: session.role,
        session: { id, csrfToken: session.csrfToken, expiresAt: session.expiresAt },
      }
    : undefined;
}

/** writes an audit entry; a failure is logged and counted, never fails the request */
export async function audit(ctx: ApiContext, log: Logger, entry: Omit<AuditEntry, 'at' | 'outcome'>) {
  try {
    await ctx.auth.audit.append({ ...entry, at: Date.now(), outcome: outcomeOf(entry.status) });
  } catch (err) {
    ctx.metrics.auditWriteFailures++;
    log.error({ err: errorMessage(err), action: entry.action }, 'audit entry not written');
  }
}

/**
 * Authentication, authorization and audit for every route, from the access level it declares
 * (`config: { access }`, see access.ts); installed before any route is added:
 *
 * - a route without an access level stops the API from starting (the routes of the swagger UI
 *   under /docs get `viewer`); each route's OpenAPI `security` follows its level
 * - `public`: anyone. `device`: `Authorization: Bearer <the token of :device>`, else 401
 * - `viewer` < `operator` < `admin`: an API token (`Authorization: Bearer`) or the session cookie,
 *   else 401; a role too low answers 403, so does a state-changing request by cookie without the
 *   session's CSRF token in `x-csrf-token`
 * - every state-changing request by an authenticated caller on a route above `public` is written
 *   to the audit log with its outcome (requests refused with 401 are only counted: an anonymous
 *   flood must not become database writes)
 */
export async function installAuth(app: App, ctx: ApiContext, log: Logger): Promise<RouteAccess[]> {
  const routes: RouteAccess[] = [];
  await app.register(cookie);
  await app.register(rateLimit, { global: false });

  app.addHook('onRoute', (route) => {
    const declared = route.config?.access;
    const access = declared ?? (route.url.startsWith(DOCS_PREFIX) ? DOCS_ACCESS : undefined);
    if (!access || !ACCESS_LEVELS.includes(access))
      throw new Error(
        `route ${route.method} ${route.url} declares no access level: add config: { access: ${ACCESS_LEVELS.map((a) => `'${a}'`).join(' | ')} } beside its schema`,
      );
    if (access === 'device' && !route.url.includes(':device'))
      throw new Error(`route ${route.method} ${route.url} has access 'device' but no :device parameter`);
    route.config = { ...route.config, access };
    for (const method of [route.method].flat()) routes.push({ method, url: route.url, access });
    const security: Record<string, string[]>[] =
      access === 'public'
        ? []
        : access === 'device'
          ? [{ deviceToken: [] }]
          : [{ session: [] }, { apiToken: [] }];
    route.schema = {
      ...route.schema,
      security,
      ...(access === 'public' || access === 'device'
        ? {}
        : { description: `${route.schema?.description ?? ''}\n\nRole: ${access} or above.`.trim() }),
    };
  });

  app.addHook('onRequest', async (req, reply) => {
    const access = req.routeOptions.config.access;
    // no access level: no route matched (the 404 handler)
    if (access === undefined || access === 'public') return;
    if (access === 'device') {
      const { device } = req.params as { device: string };
      if (!(await ctx.credentials.verify(device, req.headers.authorization)))
        return refuse(
          reply,
          ctx,
          401,
          `missing or wrong credential for device "${device}"`,
          'send Authorization: Bearer <token> with the token listed for the device in the control-plane config',
        );
      req.principal = { kind: 'device', name: device };
      return;
    }
    const principal = await authenticate(req, ctx);
    if (!principal)
      return refuse(
        reply,
        ctx,
        401,
        'not logged in, or the session or API token is wrong, expired or revoked',
        'log in with POST /api/v1/login, or send Authorization: Bearer <API token>',
      );
    req.principal = principal;
    if (!roleAllows(principal.role!, access))
      return refuse(
        reply,
        ctx,
        403,
        `this needs the role ${access}; ${principal.name} has ${principal.role}`,
        'ask an admin for a higher role',
      );
    if (principal.session && !SAFE_METHODS.has(req.method) && !csrfMatches(req, principal.session.csrfToken))
      return refuse(
        reply,
        ctx,
        403,
        `missing or wrong ${CSRF_HEADER} header`,
        `send the csrfToken the login answered (also in GET /api/v1/me) in ${CSRF_HEADER}`,
      );
  });

  app.addHook('onResponse', async (req, reply) => {
    const access = req.routeOptions.config.access;
    if (!req.principal || !access || access === 'public' || SAFE_METHODS.has(req.method)) return;
    await audit(ctx, log, {
      actor: req.principal.name,
      actorKind: req.principal.kind,
      action: `${req.method} ${req.routeOptions.url}`,
      params: { ...(req.params as Record<string, string>), ...req.auditSubject },
      // a connection closed with the answer (e.g. a refused upload) has no address left to read
      address: req.ip ?? 'unknown',
      status: reply.statusCode,
    });
  });
  return routes;
}
