import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyBaseLogger, LogController } from 'fastify';
import { ArgusError } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { LiveRelay } from '../live/relay.ts';
import type { ServerTlsMaterial } from '../tls.ts';
import { DOCS_PREFIX, installAuth, type RouteAccess, SECURITY_SCHEMES } from './auth-plugin.ts';
import type { ApiContext, App } from './context.ts';
import { boundedJsonBodies, boundedServer, clientErrorHandler } from './http-limits.ts';
import { artifactRoutes, isBundleUpload } from './routes/artifacts.ts';
import { auditRoutes } from './routes/audit.ts';
import { commandRoutes } from './routes/commands.ts';
import { consoleRoutes } from './routes/console.ts';
import { deviceRoutes } from './routes/devices.ts';
import { enrollmentRoutes } from './routes/enrollment.ts';
import { eventRoutes, type StreamRegistry } from './routes/events.ts';
import { harvestRoutes } from './routes/harvest.ts';
import { historyRoutes } from './routes/history.ts';
import { liveRoutes } from './routes/live.ts';
import { loopRoutes } from './routes/loop.ts';
import { operatorRoutes } from './routes/operators.ts';
import { opsRoutes } from './routes/ops.ts';
import { quarantineRoutes } from './routes/quarantine.ts';
import { rolloutRoutes } from './routes/rollouts.ts';
import { sceneRoutes } from './routes/scenes.ts';
import { snapshotRoutes } from './routes/snapshots.ts';

export interface Api {
  app: App;
  /** every route, with its access level */
  routes: readonly RouteAccess[];
  /** ends the live streams, then closes the server */
  close(): Promise<void>;
}

/** the REST API, the live event stream, /metrics, /healthz, the console page and the OpenAPI docs */
export async function buildApi(ctx: ApiContext, log: Logger, https?: ServerTlsMaterial): Promise<Api> {
  const options = {
    loggerInstance: log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    // an unknown query parameter (a misspelt filter) is an error, not silently ignored
    ajv: { customOptions: { removeAdditional: false } },
    bodyLimit: ctx.limits.bodyBytes,
    // the bounded server, which speaks HTTPS itself when given `https` (the routes do not depend
    // on the transport: fastify sees the server as its HTTP one)
    serverFactory: (handler: Parameters<typeof boundedServer>[2]) =>
      boundedServer(ctx.limits, ctx.metrics, handler, https, isBundleUpload),
    clientErrorHandler: clientErrorHandler(ctx.metrics),
  };
  const app: App = Fastify(options).withTypeProvider<TypeBoxTypeProvider>();
  // before any route: refuses a route without an access level, then enforces and audits each
  const routes = await installAuth(app, ctx, log);
  boundedJsonBodies(app, ctx.limits, ctx.metrics);
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'Argus control plane',
        version: '1',
        description:
          'Devices, events, snapshots and commands of an Argus fleet. Every route but login, logout, ' +
          '/healthz and the page at / needs a credential: a browser session (POST /api/v1/login) or an API ' +
          "token for operators, a device's own token for its uploads.",
      },
      components: { securitySchemes: SECURITY_SCHEMES },
    },
  });
  await app.register(swaggerUi, { routePrefix: DOCS_PREFIX });
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
  historyRoutes(app, ctx);
  eventRoutes(app, ctx, streams);
  snapshotRoutes(app, ctx);
  harvestRoutes(app, ctx);
  loopRoutes(app, ctx);
  commandRoutes(app, ctx);
  enrollmentRoutes(app, ctx);
  opsRoutes(app, ctx);
  quarantineRoutes(app, ctx);
  operatorRoutes(app, ctx, log);
  auditRoutes(app, ctx);
  artifactRoutes(app, ctx);
  rolloutRoutes(app, ctx);
  sceneRoutes(app, ctx);
  const live = new LiveRelay(
    (device, name, args) => ctx.commands.send(device, name, args),
    log.child({ part: 'live' }),
  );
  await liveRoutes(app, live);
  consoleRoutes(app);
  await app.ready();
  return {
    app,
    routes,
    async close() {
      for (const end of [...streams]) end();
      live.close();
      await app.close();
    },
  };
}
