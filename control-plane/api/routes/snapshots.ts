import Type from 'typebox';
import { sha256Hex } from '../../../common/hash.ts';
import { MAX_SNAPSHOT_BYTES, SNAPSHOT_CONTENT_TYPE } from '../../../contract/index.ts';
import type { ApiContext, App } from '../context.ts';
import { deviceUploadRate } from '../device-uploads.ts';
import { DeviceId, ErrorBody, SnapshotId, SnapshotStored } from '../schemas.ts';

/**
 * Snapshots are stored in the database (a BLOB / BYTEA row each, at most MAX_SNAPSHOT_BYTES), so
 * that they are backed up and replicated with the events; retention keeps them within their own
 * limits. Each is keyed by its device and id: a box cannot take another's id.
 */
export function snapshotRoutes(app: App, ctx: ApiContext): void {
  app.addContentTypeParser(
    SNAPSHOT_CONTENT_TYPE,
    { parseAs: 'buffer', bodyLimit: MAX_SNAPSHOT_BYTES },
    (_req, body, done) => done(null, body),
  );

  app.put(
    '/api/v1/devices/:device/snapshots/:id',
    {
      config: { access: 'device', rateLimit: deviceUploadRate(ctx, 'snapshot') },
      schema: {
        tags: ['snapshots'],
        summary: 'upload a JPEG snapshot (by the device, with its token); idempotent',
        description: `Content-Type ${SNAPSHOT_CONTENT_TYPE}, at most ${MAX_SNAPSHOT_BYTES} bytes, Authorization: Bearer <device token>. Ids are the device's own: another device may use the same id. The same id with the same bytes answers 200; with other bytes 409. At most \`limits.http.deviceUploadsPerMinute\` uploads a minute per device: 429 with Retry-After beyond.`,
        params: Type.Object({ device: DeviceId, id: SnapshotId }),
        headers: Type.Object({ authorization: Type.Optional(Type.String()) }),
        response: {
          200: SnapshotStored,
          201: SnapshotStored,
          400: ErrorBody,
          401: ErrorBody,
          409: ErrorBody,
          429: ErrorBody,
        },
      },
      // authenticated by the device's token before the body is read (auth-plugin.ts), so an
      // unauthenticated upload costs nothing
    },
    async (req, reply) => {
      const body = req.body as unknown;
      if (!Buffer.isBuffer(body) || body.length < 3 || body[0] !== 0xff || body[1] !== 0xd8)
        return reply.code(400).send({ error: 'the body is not a JPEG (it must start with FF D8)' });
      const sha256 = sha256Hex(body);
      const { device, id } = req.params;
      const outcome = await ctx.repo.putSnapshot({
        id,
        device,
        contentType: SNAPSHOT_CONTENT_TYPE,
        sha256,
        bytes: body,
        createdAt: Date.now(),
      });
      if (outcome === 'conflict')
        return reply.code(409).send({
          error: `snapshot ${id} is already stored with other content`,
          hint: 'use a new snapshot id',
        });
      return reply
        .code(outcome === 'created' ? 201 : 200)
        .send({ id, device, bytes: body.length, sha256, created: outcome === 'created' });
    },
  );

  app.get(
    '/api/v1/devices/:device/snapshots/:id',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['snapshots'],
        summary: 'a snapshot the device stored (image/jpeg); an event names it by its device and snapshot.id',
        params: Type.Object({ device: DeviceId, id: SnapshotId }),
        response: {
          200: Type.Unsafe<Buffer>({ type: 'string', format: 'binary', description: SNAPSHOT_CONTENT_TYPE }),
          404: ErrorBody,
        },
      },
    },
    async (req, reply) => {
      const snapshot = await ctx.repo.getSnapshot(req.params.device, req.params.id);
      if (!snapshot)
        return reply.code(404).send({
          error: `device "${req.params.device}" has no snapshot ${req.params.id}`,
          hint: 'the device may not have uploaded it yet',
        });
      return reply
        .header('content-type', snapshot.contentType)
        .header('cache-control', 'public, max-age=31536000, immutable')
        .send(snapshot.bytes);
    },
  );
}
