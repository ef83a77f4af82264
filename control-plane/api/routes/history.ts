import Type from 'typebox';
import { statusView } from '../../event-bus.ts';
import type { ApiContext, App } from '../context.ts';
import { iso } from '../context.ts';
import {
  DeviceId,
  ErrorBody,
  StatusHistoryPage,
  StatusHistoryQuery,
  TelemetryPage,
  TelemetryQuery,
} from '../schemas.ts';

/** `from`/`to` of a query as ms, or the message that they are the wrong way round */
function timeRange(q: { from?: string; to?: string }): { from?: number; to?: number } | string {
  const from = q.from === undefined ? undefined : Date.parse(q.from);
  const to = q.to === undefined ? undefined : Date.parse(q.to);
  if (from !== undefined && to !== undefined && from >= to) return '`from` must be before `to`';
  return { ...(from === undefined ? {} : { from }), ...(to === undefined ? {} : { to }) };
}

/** the status-history cursor: the last entry's receipt time and id (base64url, ids are any text) */
const encodeCursor = (receivedAt: number, id: string) =>
  `${receivedAt}~${Buffer.from(id).toString('base64url')}`;
function decodeCursor(cursor: string): { receivedAt: number; id: string } {
  const [at, id] = cursor.split('~');
  return { receivedAt: Number(at), id: Buffer.from(id!, 'base64url').toString() };
}

/** what a device reported over time: its telemetry, its camera statuses and availability changes */
export function historyRoutes(app: App, ctx: ApiContext): void {
  app.get(
    '/api/v1/devices/:id/telemetry',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['devices'],
        summary: "a device's telemetry history (every message, as long as retention keeps it), oldest first",
        description:
          "`from` and `to` select by the telemetry's own time; pass the previous page's `nextCursor` as `cursor`.",
        params: Type.Object({ id: DeviceId }),
        querystring: TelemetryQuery,
        response: { 200: TelemetryPage, 400: ErrorBody },
      },
    },
    async (req, reply) => {
      const q = req.query;
      const range = timeRange(q);
      if (typeof range === 'string') return reply.code(400).send({ error: range });
      const points = await ctx.history.telemetry({
        device: req.params.id,
        ...range,
        after: q.cursor === undefined ? undefined : Number(q.cursor),
        limit: q.limit,
      });
      const last = points.at(-1);
      return {
        telemetry: points.map((t) => ({
          at: iso(t.at),
          receivedAt: iso(t.receivedAt),
          telemetry: t.telemetry,
        })),
        nextCursor: points.length === q.limit && last ? String(last.at) : null,
      };
    },
  );

  app.get(
    '/api/v1/devices/:id/status-history',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['devices'],
        summary: "a device's camera status messages and availability changes, newest received first",
        description:
          'Availability changes come from the device (its availability messages and Last Will) and from the ' +
          'control plane (`source: control-plane`: no message for health.staleAfterS, and reporting again). ' +
          "`camera` selects one camera's statuses (the device's availability changes stay); `from` and `to` " +
          "select by time received; pass the previous page's `nextCursor` as `cursor`.",
        params: Type.Object({ id: DeviceId }),
        querystring: StatusHistoryQuery,
        response: { 200: StatusHistoryPage, 400: ErrorBody },
      },
    },
    async (req, reply) => {
      const q = req.query;
      const range = timeRange(q);
      if (typeof range === 'string') return reply.code(400).send({ error: range });
      const changes = await ctx.history.statuses({
        device: req.params.id,
        camera: q.camera,
        ...range,
        before: q.cursor === undefined ? undefined : decodeCursor(q.cursor),
        limit: q.limit,
      });
      const last = changes.at(-1);
      return {
        changes: changes.map(statusView),
        nextCursor: changes.length === q.limit && last ? encodeCursor(last.receivedAt, last.id) : null,
      };
    },
  );
}
