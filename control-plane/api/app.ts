import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyBaseLogger, LogController } from 'fastify';
import { ArgusError } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import type { Access } from './access.ts';
import type { ApiContext, App } from './context.ts';
import { boundedJsonBodies, boundedServer, clientErrorHandler } from './http-limits.ts';
import { commandRoutes } from './routes/commands.ts';
import { deviceRoutes } from './routes/devices.ts';
import { eventRoutes, type StreamRegistry } from './routes/events.ts';
import { opsRoutes } from './routes/ops.ts';
import { snapshotRoutes } from './routes/snapshots.ts';

/** a route as registered: what the fuzzers and the access tests walk */
export interface RouteInfo {
  method: string;
  url: string;
  access: Access | undefined;
}

export interface Api {
  app: App;
  /** every route registered, HEAD routes and the docs' own included */
  routes: readonly RouteInfo[];
  /** ends the live streams, then closes the server */
  close(): Promise<void>;
}

/** the REST API, the live event stream, /metrics, /healthz, the console page and the OpenAPI docs */
export async function buildApi(ctx: ApiContext, log: Logger): Promise<Api> {
  const app: App = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    // an unknown query parameter (a misspelt filter) is an error, not silently ignored
    ajv: { customOptions: { removeAdditional: false } },
    bodyLimit: ctx.limits.bodyBytes,
    serverFactory: (handler) => boundedServer(ctx.limits, ctx.metrics, handler),
    clientErrorHandler: clientErrorHandler(ctx.metrics),
  }).withTypeProvider<TypeBoxTypeProvider>();
  const routes: RouteInfo[] = [];
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat())
      routes.push({ method, url: route.url, access: route.config?.access });
  });
  boundedJsonBodies(app, ctx.limits, ctx.metrics);
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'Argus control plane',
        version: '1',
        description: 'Devices, events, snapshots and commands of an Argus fleet.',
      },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.setErrorHandler((err, _req, reply) => {
    if (err instanceof ArgusError) return reply.code(502).send({ error: err.message, hint: err.hint });
    const status = (err as { statusCode?: number }).statusCode ?? 500;
    if ((err as { code?: string }).code === 'FST_ERR_CTP_BODY_TOO_LARGE')
      ctx.metrics.countHttpLimited('body_size');
    if (status >= 500) log.error({ err }, 'request failed');
    return reply.code(status).send({ error: err instanceof Error ? err.message : String(err) });
  });
  const streams: StreamRegistry = new Set();
  deviceRoutes(app, ctx);
  eventRoutes(app, ctx, streams);
  snapshotRoutes(app, ctx);
  commandRoutes(app, ctx);
  opsRoutes(app, ctx);
  await app.ready();
  return {
    app,
    routes,
    async close() {
      for (const end of [...streams]) end();
      await app.close();
    },
  };
}
