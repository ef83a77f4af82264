import type { ApiContext, App } from '../context.ts';
import { Health } from '../schemas.ts';

export function opsRoutes(app: App, ctx: ApiContext): void {
  app.get(
    '/healthz',
    {
      config: { access: 'public' },
      schema: {
        tags: ['operations'],
        summary: 'liveness: the process runs; degraded while messages cannot be stored',
        description:
          'Always 200 while the process serves (a liveness probe must not restart a control plane ' +
          'that waits for its database): `status` is `degraded`, with `reasons`, while writes fail ' +
          'because the database does not answer; received messages then wait unacknowledged.',
        response: { 200: Health },
      },
    },
    async () => {
      const reasons = ctx.degradedReasons();
      return {
        status: reasons.length > 0 ? ('degraded' as const) : ('ok' as const),
        reasons,
        storage: ctx.repo.backend,
        mqtt: ctx.mqttUrl(),
        pendingMessages: ctx.pendingMessages(),
      };
    },
  );

  app.get(
    '/metrics',
    {
      config: { access: 'viewer' },
      schema: { tags: ['operations'], summary: 'Prometheus metrics (text format 0.0.4)' },
    },
    async (_req, reply) => {
      const text = ctx.metrics.render({
        devicesOnline: await ctx.repo.countDevicesOnline(ctx.health.reportingSince()),
        devicesSilent: await ctx.health.countSilent(),
        retentionLeader: ctx.retentionLeader(),
        pending: ctx.pendingMessages(),
        streamsCut: ctx.bus.streamsCut,
      });
      return reply.header('content-type', 'text/plain; version=0.0.4; charset=utf-8').send(text);
    },
  );
}
