import Type from 'typebox';
import type { DeviceAssessment } from '../../device-health.ts';
import type { DeviceRecord } from '../../storage/repository.ts';
import { type ApiContext, type App, iso, isoOrNull } from '../context.ts';
import { Device, DeviceId, ErrorBody } from '../schemas.ts';

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
        summary: 'every device seen, with status, last seen, identity and latest telemetry',
        response: { 200: Type.Object({ devices: Type.Array(Device) }) },
      },
    },
    async () => {
      const devices = await ctx.repo.listDevices();
      const health = await ctx.health.assess(devices);
      return { devices: devices.map((d, i) => view(d, health[i]!)) };
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
