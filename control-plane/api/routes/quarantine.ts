import type { ApiContext, App } from '../context.ts';
import { iso } from '../context.ts';
import { QuarantinePage, QuarantineQuery } from '../schemas.ts';

export function quarantineRoutes(app: App, ctx: ApiContext): void {
  app.get(
    '/api/v1/quarantine',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['operations'],
        summary: 'messages that followed the contract but could not be stored, newest first',
        description:
          'Each was acknowledged and counted in `argus_ingest_quarantined_total` by its reason: ' +
          '`refused_by_database` (a value the database cannot store), `conflicting_duplicate` (an ' +
          'event whose (device, id, seq) is stored with other content), `write_failed` (any other ' +
          "error while the database answered). Pass the previous page's `nextCursor` as `cursor`.",
        querystring: QuarantineQuery,
        response: { 200: QuarantinePage },
      },
    },
    async (req) => {
      const { limit, cursor } = req.query;
      const messages = await ctx.quarantine.list({
        limit,
        before: cursor === undefined ? undefined : Number(cursor),
      });
      const last = messages.at(-1);
      return {
        messages: messages.map((m) => ({ ...m, id: String(m.id), receivedAt: iso(m.receivedAt) })),
        nextCursor: messages.length === limit && last ? String(last.id) : null,
      };
    },
  );
}
