import type { Readable } from 'node:stream';
import Type from 'typebox';
import {
  HARVEST_CONTENT_TYPE,
  HARVEST_REASON_NAMES,
  HarvestUploadQuerySchema,
  MAX_HARVEST_BYTES,
} from '../../../contract/index.ts';
import { LABEL_VALUE_PATTERN } from '../../rollouts/spec.ts';
import { HARVEST_CURSOR, type HarvestedFrame } from '../../storage/harvest.ts';
import type { ApiContext, App } from '../context.ts';
import { iso } from '../context.ts';
import { deviceUploadRate } from '../device-uploads.ts';
import { refusals } from '../refusals.ts';
import { DeviceId, ErrorBody, SnapshotId } from '../schemas.ts';

const FrameView = Type.Object({
  device: Type.String(),
  id: Type.String(),
  site: Type.String({ description: "the device's `site` label when it uploaded the frame ('' without one)" }),
  camera: Type.String(),
  capturedAt: Type.String({ format: 'date-time' }),
  receivedAt: Type.String({ format: 'date-time' }),
  reasons: Type.Array(Type.Enum(HARVEST_REASON_NAMES)),
  model: Type.String(),
  modelVersion: Type.Integer(),
  sha256: Type.String(),
  bytes: Type.Integer(),
  width: Type.Integer(),
  height: Type.Integer(),
});

const Stored = Type.Object({ frame: FrameView, created: Type.Boolean() });

const ListQuery = Type.Object(
  {
    site: Type.String({ pattern: LABEL_VALUE_PATTERN, description: "the devices' `site` label" }),
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
    cursor: Type.Optional(
      Type.String({ pattern: HARVEST_CURSOR.source, description: 'nextCursor of the previous page' }),
    ),
  },
  { additionalProperties: false },
);

const FrameList = Type.Object({
  frames: Type.Array(FrameView, { description: 'newest received first' }),
  nextCursor: Type.Union([Type.String(), Type.Null()], {
    description: 'pass as `cursor` for the next page; null on the last',
  }),
});

const view = (f: HarvestedFrame) => ({
  ...f,
  capturedAt: iso(f.capturedAt),
  receivedAt: iso(f.receivedAt),
});

/**
 * Harvested frames (issue 18): a box uploads the frames its HarvestSelector kept with its own
 * credential, for itself only (the auth plugin checks `:device`); operators list a site's frames
 * and fetch one. The content-type parser of image/jpeg is the snapshots' (the same bound).
 */
export function harvestRoutes(app: App, ctx: ApiContext): void {
  app.put(
    '/api/v1/devices/:device/harvest/:id',
    {
      config: { access: 'device', rateLimit: deviceUploadRate(ctx, 'harvest') },
      schema: {
        tags: ['harvest'],
        summary: 'upload a harvested frame (by the device, with its token); idempotent',
        description: `Content-Type ${HARVEST_CONTENT_TYPE}, at most ${MAX_HARVEST_BYTES} bytes, a JPEG whose header is checked; what the box knows of it in the query string. The frame is filed under the device's \`site\` label at this moment. The same id with the same bytes answers 200; with other bytes 409. At most \`limits.http.deviceUploadsPerMinute\` uploads a minute per device: 429 with Retry-After beyond.`,
        params: Type.Object({ device: DeviceId, id: SnapshotId }),
        querystring: HarvestUploadQuerySchema,
        headers: Type.Object({ authorization: Type.Optional(Type.String()) }),
        response: {
          200: Stored,
          201: Stored,
          400: ErrorBody,
          401: ErrorBody,
          409: ErrorBody,
          413: ErrorBody,
          429: ErrorBody,
        },
      },
    },
    async (req, reply) =>
      refusals(reply, async () => {
        const body = req.body as unknown;
        if (!Buffer.isBuffer(body))
          return reply
            .code(400)
            .send({ error: 'the body is not a JPEG', hint: `send Content-Type ${HARVEST_CONTENT_TYPE}` });
        const { device, id } = req.params;
        const { outcome, frame } = await ctx.harvest.accept(device, id, req.query, body);
        if (outcome === 'conflict')
          return reply.code(409).send({
            error: `harvested frame ${id} is already stored with other content`,
            hint: 'use a new frame id',
          });
        return reply
          .code(outcome === 'created' ? 201 : 200)
          .send({ frame: view(frame), created: outcome === 'created' });
      }),
  );

  app.get(
    '/api/v1/harvest',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['harvest'],
        summary: "a site's harvested frames, newest first",
        description: "Pass the previous page's `nextCursor` as `cursor`.",
        querystring: ListQuery,
        response: { 200: FrameList, 400: ErrorBody },
      },
    },
    async (req) => {
      const { site, limit, cursor } = req.query;
      const page = await ctx.harvest.list(site, limit, cursor);
      return { frames: page.frames.map(view), nextCursor: page.next };
    },
  );

  app.get(
    '/api/v1/harvest/:device/:id',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['harvest'],
        summary: 'the JPEG of a harvested frame',
        params: Type.Object({ device: DeviceId, id: SnapshotId }),
        response: {
          200: Type.Unsafe<Readable>({ type: 'string', format: 'binary', description: HARVEST_CONTENT_TYPE }),
          404: ErrorBody,
        },
      },
    },
    async (req, reply) => {
      const { device, id } = req.params;
      const frame = await ctx.harvest.store.get(device, id);
      const stream = frame && (await ctx.harvest.open(frame));
      if (!frame || !stream)
        return reply.code(404).send({
          error: `device "${device}" has no harvested frame ${id}`,
          hint: 'list the site’s frames with GET /api/v1/harvest?site=…; retention deletes old ones',
        });
      return reply
        .header('content-type', HARVEST_CONTENT_TYPE)
        .header('content-length', String(frame.bytes))
        .header('cache-control', 'private, max-age=31536000, immutable')
        .send(stream);
    },
  );
}
