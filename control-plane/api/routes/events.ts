import { eventView } from '../../event-bus.ts';
import type { EventFilter, StoredEvent } from '../../storage/repository.ts';
import type { ApiContext, App } from '../context.ts';
import { ErrorBody, EventsPage, EventsQuery, StreamQuery } from '../schemas.ts';

const KEEPALIVE_MS = 15_000;
/** what a client refused for too many live streams is told to wait (Retry-After) */
const LIVE_STREAM_RETRY_S = 5;

const STREAM_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  connection: 'keep-alive',
  'x-accel-buffering': 'no',
};

interface Selection {
  device?: string | undefined;
  camera?: string | undefined;
  rule?: string | undefined;
  class?: string | undefined;
}

function matches(q: Selection, e: StoredEvent): boolean {
  return (
    (q.device === undefined || e.event.device === q.device) &&
    (q.camera === undefined || e.event.camera === q.camera) &&
    (q.rule === undefined || e.event.rule === q.rule) &&
    (q.class === undefined || e.event.label === q.class)
  );
}

/** open live streams, ended when the control plane stops */
export type StreamRegistry = Set<() => void>;

export function eventRoutes(app: App, ctx: ApiContext, streams: StreamRegistry): void {
  app.get(
    '/api/v1/events',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['events'],
        summary: 'stored event messages (every lifecycle phase), filtered, newest ingested first',
        description:
          'Pages follow ingestion order, so events stored while a client pages through do not shift later pages: ' +
          "pass the previous page's `nextCursor` as `cursor`. `class` is the object label.",
        querystring: EventsQuery,
        response: { 200: EventsPage, 400: ErrorBody },
      },
    },
    async (req, reply) => {
      const q = req.query;
      const filter: EventFilter = { limit: q.limit };
      if (q.device) filter.device = q.device;
      if (q.camera) filter.camera = q.camera;
      if (q.rule) filter.rule = q.rule;
      if (q.class) filter.label = q.class;
      if (q.from) filter.from = Date.parse(q.from);
      if (q.to) filter.to = Date.parse(q.to);
      if (q.cursor) filter.before = Number(q.cursor);
      if (filter.from !== undefined && filter.to !== undefined && filter.from >= filter.to)
        return reply.code(400).send({ error: '`from` must be before `to`' });
      const events = await ctx.repo.queryEvents(filter);
      const last = events.at(-1);
      return {
        events: events.map(eventView),
        nextCursor: events.length === q.limit && last ? String(last.cursor) : null,
      };
    },
  );

  app.get(
    '/api/v1/events/stream',
    {
      config: { access: 'viewer' },
      // a HEAD of the stream would never end (its headers wait for a body that HEAD drops)
      schema: {
        tags: ['events'],
        summary:
          'live stream of newly stored events (Server-Sent Events, `event: event`) and status changes (`event: status`)',
        description:
          "Each `event` message's data is a StoredEvent as in GET /api/v1/events; the SSE id is its cursor. " +
          'Each `status` message is an entry as in GET /api/v1/devices/{id}/status-history: a camera status, or a ' +
          'device going offline or online (also when the control plane sees it fall silent); `device` and `camera` ' +
          'select them too (device changes pass a camera filter), `rule` and `class` do not. ' +
          `A client that stops reading is disconnected once ${ctx.limits.streamBacklogBytes} bytes wait for it. ` +
          `At most ${ctx.limits.liveStreams} streams are open at once: past that, 503 with Retry-After.`,
        querystring: StreamQuery,
        response: { 503: ErrorBody },
      },
    },
    (req, reply) => {
      const q = req.query;
      if (ctx.metrics.sseClients >= ctx.limits.liveStreams) {
        ctx.metrics.countHttpLimited('live_streams');
        reply
          .code(503)
          .header('retry-after', String(LIVE_STREAM_RETRY_S))
          .send({
            error: `${ctx.limits.liveStreams} live streams are open, the most this control plane serves`,
            hint: `retry in ${LIVE_STREAM_RETRY_S} s, or raise limits.http.liveStreams`,
          });
        return;
      }
      // a HEAD gets the head of a stream and its end: node sends no head for a HEAD until it ends
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, STREAM_HEADERS);
      if (req.method === 'HEAD') {
        res.end();
        return;
      }
      const stream = ctx.bus.openStream(
        res,
        (e) => matches(q, e),
        (c) =>
          (q.device === undefined || c.device === q.device) &&
          (q.camera === undefined || c.camera === null || c.camera === q.camera),
      );
      stream.send(': argus live events\n\n');
      const keepalive = setInterval(() => stream.send(': keepalive\n\n'), KEEPALIVE_MS);
      ctx.metrics.sseClients++;
      const end = () => {
        if (!streams.delete(end)) return;
        clearInterval(keepalive);
        stream.close();
        ctx.metrics.sseClients--;
        res.end();
      };
      streams.add(end);
      req.raw.once('close', end);
      res.once('error', end);
    },
  );
}
