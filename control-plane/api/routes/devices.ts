import Type from 'typebox';
import type { DeviceAssessment } from '../../device-health.ts';
import type { DeviceFilter, DeviceRecord } from '../../storage/repository.ts';
import { type ApiContext, type App, iso, isoOrNull } from '../context.ts';
import { Device, DeviceId, DevicesPage, DevicesQuery, ErrorBody } from '../schemas.ts';

function view(d: DeviceRecord, h: DeviceAssessment) {
  return {
    id: d.id,
    status: h.status,
    statusAt: isoOrNull(d.statusAt),
    firstSeen: iso(d.firstSeen),
    lastSeen: iso(d.lastSeen),
    identity: d.identity,
    telemetry: d.telemetry,
    telemetryAt: isoOrNull(d.telemetryAt),
    telemetryReceivedAt: isoOrNull(h.telemetryReceivedAt),
    telemetryStale: h.telemetryStale,
    health: h.health,
    cameras: h.cameras,
  };
}

export function deviceRoutes(app: App, ctx: ApiContext): void {
  app.get(
    '/api/v1/devices',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['devices'],
        summary:
          'the devices seen, with status, last seen, identity and latest telemetry, by id, a page at a time',
        description:
          "Filter by `status`, `hardwareClass`, `idPrefix`, `softwareVersion`, `modelVersion` and `sceneVersion` (all given must match); pass the previous page's `nextCursor` as `cursor`. " +
          `A page ends early, with its nextCursor, once its identities and telemetry pass ${ctx.limits.pageBytes} characters.`,
        querystring: DevicesQuery,
        response: { 200: DevicesPage, 400: ErrorBody },
      },
    },
    async (req) => {
      const q = req.query;
      const filter: DeviceFilter = { limit: q.limit, maxChars: ctx.limits.pageBytes };
      if (q.status) filter.status = q.status;
      if (q.hardwareClass) filter.hardwareClass = q.hardwareClass;
      if (q.idPrefix) filter.idPrefix = q.idPrefix;
      if (q.softwareVersion) filter.softwareVersion = q.softwareVersion;
      if (q.modelVersion !== undefined) filter.modelVersion = q.modelVersion;
      if (q.sceneVersion !== undefined) filter.sceneVersion = q.sceneVersion;
      if (q.cursor) filter.after = q.cursor;
      const page = await ctx.repo.listDevices(filter);
      if (page.cut) ctx.metrics.countHttpLimited('page_bytes');
      const health = await ctx.health.assess(page.devices);
      return { devices: page.devices.map((d, i) => view(d, health[i]!)), nextCursor: page.next };
    },
  );

  app.get(
    '/api/v1/devices/:id',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['devices'],
        summary: 'one device',
        params: Type.Object({ id: DeviceId }),
        response: { 200: Device, 404: ErrorBody },
      },
    },
    async (req, reply) => {
      const device = await ctx.repo.getDevice(req.params.id);
      if (!device) return reply.code(404).send({ error: `no device "${req.params.id}" has connected` });
      const [health] = await ctx.health.assess([device]);
      return view(device, health!);
    },
  );
}
