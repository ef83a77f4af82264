import Type from 'typebox';
import type { Logger } from '../../../common/logger.ts';
import type { ApiToken } from '../../storage/api-tokens.ts';
import type { User } from '../../storage/users.ts';
import { audit, CSRF_HEADER, csrfMatches, SESSION_COOKIE } from '../auth-plugin.ts';
import { type ApiContext, type App, iso, isoOrNull } from '../context.ts';
import {
  CreatedToken,
  LoginAnswer,
  LoginRequest,
  Me,
  NewToken,
  NewUser,
  PasswordChange,
  TokenParams,
  TokenView,
  UserParams,
  UserPatch,
  UserView,
} from '../operator-schemas.ts';
import { ErrorBody } from '../schemas.ts';

const userView = (u: User) => ({
  name: u.name,
  role: u.role,
  createdAt: iso(u.createdAt),
  updatedAt: iso(u.updatedAt),
});
const tokenView = (t: ApiToken) => ({
  id: t.id,
  name: t.name,
  role: t.role,
  createdBy: t.createdBy,
  createdAt: iso(t.createdAt),
  lastUsedAt: isoOrNull(t.lastUsedAt),
  revokedAt: isoOrNull(t.revokedAt),
});
const LAST_ADMIN = {
  error: 'this is the only admin',
  hint: 'give another account the role admin first',
};

/** login and logout, the caller's own identity, accounts and API tokens */
export function operatorRoutes(app: App, ctx: ApiContext, log: Logger): void {
  const { settings, users, sessions, tokens, loginFailures } = ctx.auth;

  app.post(
    '/api/v1/login',
    {
      config: {
        access: 'public',
        rateLimit: {
          max: settings.loginsPerAddress,
          timeWindow: settings.addressWindowS * 1000,
          onExceeded: () => {
            ctx.metrics.count(ctx.metrics.loginsThrottled, 'address');
          },
        },
      },
      schema: {
        tags: ['operators'],
        summary: 'log in: sets the session cookie and answers the CSRF token of the session',
        description:
          `The cookie ${SESSION_COOKIE} is HttpOnly, SameSite=Strict (and Secure over HTTPS). Send the answered ` +
          `csrfToken in the ${CSRF_HEADER} header with every state-changing request. Throttled per address ` +
          `(${settings.loginsPerAddress} per ${settings.addressWindowS} s) and per account ` +
          `(${settings.failuresPerAccount} failures per ${settings.accountWindowS} s): 429.`,
        body: LoginRequest,
        response: { 200: LoginAnswer, 401: ErrorBody, 429: ErrorBody },
      },
    },
    async (req, reply) => {
      const { name, password } = req.body;
      const now = Date.now();
      const windowStart = now - settings.accountWindowS * 1000;
      const entry = { actor: name, actorKind: 'user' as const, action: 'login', params: {}, address: req.ip };
      if ((await loginFailures.count(name, windowStart)) >= settings.failuresPerAccount) {
        ctx.metrics.count(ctx.metrics.loginsThrottled, 'account');
        await audit(ctx, log, { ...entry, status: 429 });
        return reply
          .code(429)
          .header('retry-after', settings.accountWindowS)
          .send({
            error: `too many failed logins of "${name}"`,
            hint: `wait ${settings.accountWindowS} s, or have an admin set a new password (argus users passwd)`,
          });
      }
      const user = await users.authenticate(name, password);
      if (!user) {
        await loginFailures.record(name, now, windowStart);
        ctx.metrics.count(ctx.metrics.logins, 'denied');
        await audit(ctx, log, { ...entry, status: 401 });
        return reply.code(401).send({ error: 'wrong name or password' });
      }
      await loginFailures.clear(name);
      const session = await sessions.create(user.name, settings.sessionTtlS * 1000, now);
      reply.setCookie(SESSION_COOKIE, session.id, {
        path: '/',
        httpOnly: true,
        sameSite: 'strict',
        secure: req.protocol === 'https',
        expires: new Date(session.expiresAt),
      });
      ctx.metrics.count(ctx.metrics.logins, 'ok');
      await audit(ctx, log, { ...entry, status: 200 });
      return {
        name: user.name,
        role: user.role,
        csrfToken: session.csrfToken,
        expiresAt: iso(session.expiresAt),
      };
    },
  );

  app.post(
    '/api/v1/logout',
    {
      config: { access: 'public' },
      schema: {
        tags: ['operators'],
        summary: 'log out: ends the session of the cookie (with its CSRF token) and clears the cookie',
        response: { 204: Type.Null(), 403: ErrorBody },
      },
    },
    async (req, reply) => {
      const id = req.cookies[SESSION_COOKIE];
      const session = id ? await sessions.find(id) : undefined;
      if (id && session) {
        if (!csrfMatches(req, session.csrfToken))
          return reply.code(403).send({ error: `missing or wrong ${CSRF_HEADER} header` });
        await sessions.end(id);
        await audit(ctx, log, {
          actor: session.user,
          actorKind: 'user',
          action: 'logout',
          params: {},
          address: req.ip,
          status: 204,
        });
      }
      return reply.clearCookie(SESSION_COOKIE, { path: '/' }).code(204).send(null);
    },
  );

  app.get(
    '/api/v1/me',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['operators'],
        summary: "who the caller is: name, role, and a session's CSRF token",
        response: { 200: Me },
      },
    },
    async (req) => {
      const p = req.principal!;
      return p.session
        ? {
            name: p.name,
            role: p.role!,
            via: 'session' as const,
            csrfToken: p.session.csrfToken,
            expiresAt: iso(p.session.expiresAt),
          }
        : { name: p.name, role: p.role!, via: 'token' as const };
    },
  );

  app.get(
    '/api/v1/users',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['operators'],
        summary: "operators' accounts",
        response: { 200: Type.Object({ users: Type.Array(UserView) }) },
      },
    },
    async () => ({ users: (await users.list()).map(userView) }),
  );

  app.post(
    '/api/v1/users',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['operators'],
        summary: 'add an account',
        body: NewUser,
        response: { 201: UserView, 409: ErrorBody },
      },
    },
    async (req, reply) => {
      const { name, role, password } = req.body;
      if (!(await users.add(name, role, password)))
        return reply.code(409).send({ error: `there is an account "${name}" already` });
      return reply.code(201).send(userView((await users.get(name))!));
    },
  );

  app.patch(
    '/api/v1/users/:name',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['operators'],
        summary: "change an account's role (effective at its next request)",
        params: UserParams,
        body: UserPatch,
        response: { 200: UserView, 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (req, reply) => {
      const outcome = await users.setRole(req.params.name, req.body.role);
      if (outcome === 'missing') return reply.code(404).send({ error: `no account "${req.params.name}"` });
      if (outcome === 'last-admin') return reply.code(409).send(LAST_ADMIN);
      return userView((await users.get(req.params.name))!);
    },
  );

  app.put(
    '/api/v1/users/:name/password',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['operators'],
        summary: "set an account's password; its sessions end",
        params: UserParams,
        body: PasswordChange,
        response: { 204: Type.Null(), 404: ErrorBody },
      },
    },
    async (req, reply) => {
      if (!(await users.setPassword(req.params.name, req.body.password)))
        return reply.code(404).send({ error: `no account "${req.params.name}"` });
      return reply.code(204).send(null);
    },
  );

  app.delete(
    '/api/v1/users/:name',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['operators'],
        summary: 'remove an account; its sessions end',
        params: UserParams,
        response: { 204: Type.Null(), 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (req, reply) => {
      const outcome = await users.remove(req.params.name);
      if (outcome === 'missing') return reply.code(404).send({ error: `no account "${req.params.name}"` });
      if (outcome === 'last-admin') return reply.code(409).send(LAST_ADMIN);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/api/v1/tokens',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['operators'],
        summary: 'API tokens (without their secrets), revoked ones included',
        response: { 200: Type.Object({ tokens: Type.Array(TokenView) }) },
      },
    },
    async () => ({ tokens: (await tokens.list()).map(tokenView) }),
  );

  app.post(
    '/api/v1/tokens',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['operators'],
        summary: 'create an API token with a role; its secret is in this answer only',
        description: 'Scripts send it as `Authorization: Bearer <secret>`; no CSRF token is needed then.',
        body: NewToken,
        response: { 201: CreatedToken },
      },
    },
    async (req, reply) => {
      const p = req.principal!;
      const { token, secret } = await tokens.create(req.body.name, req.body.role, `${p.kind}:${p.name}`);
      return reply.code(201).send({ token: tokenView(token), secret });
    },
  );

  app.delete(
    '/api/v1/tokens/:id',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['operators'],
        summary: 'revoke an API token (refused from its next request on)',
        params: TokenParams,
        response: { 204: Type.Null(), 404: ErrorBody },
      },
    },
    async (req, reply) => {
      if (!(await tokens.revoke(req.params.id)))
        return reply.code(404).send({ error: `no live token ${req.params.id}` });
      return reply.code(204).send(null);
    },
  );
}
