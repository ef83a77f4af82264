import type { ApiContext, App } from '../context.ts';
import { iso } from '../context.ts';
import { AuditPage, AuditQuery } from '../operator-schemas.ts';
import { ErrorBody } from '../schemas.ts';

export function auditRoutes(app: App, ctx: ApiContext): void {
  app.get(
    '/api/v1/audit',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['operators'],
        summary: 'the audit log, newest first: logins and every state-changing request',
        description:
          'Who (actor and its kind: user, token, device), when, what (method and route with its path parameters, ' +
          "never a body), from where (address) and the result (status, outcome). Pass the previous page's " +
          '`nextCursor` as `cursor`.',
        querystring: AuditQuery,
        response: { 200: AuditPage, 400: ErrorBody },
      },
    },
    async (req, reply) => {
      const q = req.query;
      const from = q.from === undefined ? undefined : Date.parse(q.from);
      const to = q.to === undefined ? undefined : Date.parse(q.to);
      if (from !== undefined && to !== undefined && from >= to)
        return reply.code(400).send({ error: '`from` must be before `to`' });
      const entries = await ctx.auth.audit.query({
        actor: q.actor,
        action: q.action,
        outcome: q.outcome,
        from,
        to,
        before: q.cursor === undefined ? undefined : Number(q.cursor),
        limit: q.limit,
      });
      const last = entries.at(-1);
      return {
        entries: entries.map((e) => ({ ...e, at: iso(e.at) })),
        nextCursor: entries.length === q.limit && last ? String(last.id) : null,
      };
    },
  );
}
