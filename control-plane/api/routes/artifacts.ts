import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import Type from 'typebox';
import { ARTIFACT_KINDS } from '../../../contract/ota.ts';
import { parseRange } from '../../artifacts/range.ts';
import { PublishRefused } from '../../artifacts/registry.ts';
import type { ArtifactRecord } from '../../storage/artifacts.ts';
import type { ApiContext, App } from '../context.ts';
import { iso } from '../context.ts';
import { DeviceId, ErrorBody } from '../schemas.ts';

/** the content types a bundle may be uploaded as: it is a tar, gzip-compressed or not */
export const BUNDLE_CONTENT_TYPES = ['application/octet-stream', 'application/x-tar', 'application/gzip'];
const PUBLISH_PATH = '/api/v1/artifacts';

/**
 * a bundle upload, which may take longer than limits.http.requestTimeoutMs over a slow link: the
 * server ends it only once it stalls for that long (http-limits.ts)
 */
export function isBundleUpload(req: IncomingMessage): boolean {
  return req.method === 'POST' && req.url?.split('?')[0] === PUBLISH_PATH;
}

/** seconds a client is told to wait when the uploads or downloads are at their limit */
const RETRY_AFTER_S = 5;

const ArtifactIdParam = Type.String({ pattern: '^[0-9a-f]{64}$', description: "the bundle file's sha256" });
const Kind = Type.Enum(ARTIFACT_KINDS);

const Target = Type.Object({ hardwareClass: Type.String(), executionProvider: Type.String() });

export const ArtifactSummary = Type.Object({
  id: ArtifactIdParam,
  kind: Kind,
  name: Type.String(),
  version: Type.Integer(),
  bytes: Type.Integer(),
  variant: Type.String({
    description: "the bundle's targets, `provider:class` sorted and comma-separated; empty for a scene",
  }),
  targets: Type.Array(Target, {
    description: 'a model: what it was built for; a scene: none (fits every device)',
  }),
  keyId: Type.String({ description: 'the factory key that signed it' }),
  expires: Type.String({ format: 'date-time' }),
  publishedAt: Type.String({ format: 'date-time' }),
  publishedBy: Type.String(),
});

export const ArtifactDetail = Type.Object({
  ...ArtifactSummary.properties,
  manifest: Type.Unknown({ description: "the bundle's signed manifest.json (models/bundle/manifest.ts)" }),
  lineage: Type.Unknown({ description: 'a model: where it came from (factory steps); null for a scene' }),
  metrics: Type.Unknown({
    description: 'a model: what its evaluation measured, by hardware class; null for a scene',
  }),
});

const Published = Type.Object({
  artifact: ArtifactSummary,
  created: Type.Boolean({ description: 'false: the same bundle was already published; nothing changed' }),
});

const Refusal = Type.Object({
  error: Type.String(),
  hint: Type.Optional(Type.String()),
  reason: Type.Optional(
    Type.String({
      description:
        'why the bundle was refused: malformed, too-large, unsigned, unknown-key, tampered-manifest, tampered-file, expired, out-of-bounds, conflict, overlap, busy, incomplete',
    }),
  ),
});

const ListQuery = Type.Object(
  {
    kind: Type.Optional(Kind),
    name: Type.Optional(Type.String({ pattern: '^[a-z0-9][a-z0-9._-]*$', maxLength: 128 })),
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
    cursor: Type.Optional(
      Type.String({
        pattern: '^[0-9]{1,16}\\.[0-9a-f]{64}$',
        description: 'nextCursor of the previous page',
      }),
    ),
  },
  { additionalProperties: false },
);

export const ArtifactList = Type.Object({
  artifacts: Type.Array(ArtifactSummary, { description: 'newest published first' }),
  nextCursor: Type.Union([Type.String(), Type.Null()]),
});

export function summaryOf(a: ArtifactRecord) {
  return {
    id: a.id,
    kind: a.kind,
    name: a.name,
    version: a.version,
    bytes: a.bytes,
    variant: a.variant,
    targets: a.targets,
    keyId: a.keyId,
    expires: iso(a.expiresAt),
    publishedAt: iso(a.publishedAt),
    publishedBy: a.publishedBy,
  };
}

const notFound = (id: string) => ({
  error: `no artifact ${id}`,
  hint: 'GET /api/v1/artifacts lists the published artifacts',
});

/**
 * The artifact registry's routes (control-plane/artifacts/registry.ts): operators publish, list,
 * show and delete bundles; a device downloads the bytes of an artifact assigned to it, resumable
 * with `Range`. Uploads are authenticated before their body is read (auth-plugin.ts) and streamed
 * to a staging file within `artifacts.maxUploadBytes`; downloads are streamed from the BlobStore
 * with backpressure, within `artifacts.downloadsPerDevice` and `artifacts.downloads` at once.
 */
export function artifactRoutes(app: App, ctx: ApiContext): void {
  const registry = ctx.artifacts;
  const settings = ctx.artifactSettings;

  // in a scope of its own: only this route takes a bundle's body, and takes it as a stream
  app.register(async (scope: App) => {
    scope.addContentTypeParser(BUNDLE_CONTENT_TYPES, (_req, payload, done) => done(null, payload));
    scope.post(
      PUBLISH_PATH,
      {
        config: { access: 'operator' },
        schema: {
          tags: ['artifacts'],
          summary: 'publish a signed model or scene bundle (the body is the bundle file)',
          description:
            `Content-Type ${BUNDLE_CONTENT_TYPES.join(', ')}; at most artifacts.maxUploadBytes ` +
            `(${settings.maxUploadBytes} bytes here; 413 beyond, checked as it streams). The upload may take ` +
            'longer than limits.http.requestTimeoutMs while it keeps sending; one that sends nothing for that ' +
            'long is answered 408, the connection closed, and nothing of it is stored. The bundle is ' +
            "verified as a box verifies it: signed by a key of the control plane's trusted factory " +
            'keyring (artifacts.keyring), every file matching its sha256 and size, not expired, within ' +
            'the container limits; a refusal (422, 413) names its `reason` and what to fix. The same ' +
            'bundle again answers 200 with `created: false`; another bundle of the same kind, name, ' +
            'version and targets, or one sharing a target with another variant of its version, 409.',
          response: {
            200: Published,
            201: Published,
            400: Refusal,
            401: ErrorBody,
            403: ErrorBody,
            409: Refusal,
            413: Refusal,
            415: ErrorBody,
            422: Refusal,
            503: Refusal,
          },
        },
      },
      async (req, reply) => {
        if (!(req.body instanceof Readable))
          return reply.code(415).send({
            error: `the body of an upload is the bundle file, not ${req.headers['content-type'] ?? 'nothing'}`,
            hint: `send the file with Content-Type ${BUNDLE_CONTENT_TYPES[0]}`,
          });
        const declared = Number(req.headers['content-length']);
        if (Number.isFinite(declared) && declared > settings.maxUploadBytes) {
          ctx.metrics.countHttpLimited('body_size');
          return reply
            .code(413)
            .header('connection', 'close')
            .send({
              error: `the bundle is ${declared} bytes, more than the control plane's limit of ${settings.maxUploadBytes} (artifacts.maxUploadBytes)`,
              hint: 'make the bundle smaller (e.g. `argus models quantize`) or raise artifacts.maxUploadBytes',
              reason: 'too-large',
            });
        }
        try {
          const published = await registry.publish(req.body, req.principal!.name);
          return reply
            .code(published.created ? 201 : 200)
            .send({ artifact: summaryOf(published.artifact), created: published.created });
        } catch (err) {
          if (!(err instanceof PublishRefused)) throw err;
          if (err.status === 413) {
            ctx.metrics.countHttpLimited('body_size');
            // the rest of the body is not read: the connection ends with the answer
            reply.header('connection', 'close');
          }
          if (err.status === 503) reply.header('retry-after', String(RETRY_AFTER_S));
          return reply.code(err.status).send({ error: err.message, hint: err.hint, reason: err.reason });
        }
      },
    );
  });

  app.get(
    '/api/v1/artifacts',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['artifacts'],
        summary: 'published artifacts, newest first; filter by kind and name',
        description: "Pass the previous page's `nextCursor` as `cursor`.",
        querystring: ListQuery,
        response: { 200: ArtifactList, 400: ErrorBody },
      },
    },
    async (req) => {
      const { kind, name, limit, cursor } = req.query;
      const page = await registry.list({ kind, name, limit, after: cursor });
      return { artifacts: page.artifacts.map(summaryOf), nextCursor: page.next };
    },
  );

  app.get(
    '/api/v1/artifacts/:id',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['artifacts'],
        summary: "one artifact: its manifest, and a model's lineage and metrics",
        params: Type.Object({ id: ArtifactIdParam }),
        response: { 200: ArtifactDetail, 404: ErrorBody },
      },
    },
    async (req, reply) => {
      const a = await registry.get(req.params.id);
      if (!a) return reply.code(404).send(notFound(req.params.id));
      const m = a.manifest;
      return {
        ...summaryOf(a),
        manifest: m,
        lineage: m.kind === 'model' ? m.lineage : null,
        metrics: m.kind === 'model' ? m.metrics : null,
      };
    },
  );

  app.delete(
    '/api/v1/artifacts/:id',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['artifacts'],
        summary: 'delete an artifact, bytes and metadata; refused while a rollout references it',
        params: Type.Object({ id: ArtifactIdParam }),
        response: { 204: Type.Null(), 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (req, reply) => {
      const outcome = await registry.delete(req.params.id);
      if (outcome === 'missing') return reply.code(404).send(notFound(req.params.id));
      if (outcome === 'referenced')
        return reply.code(409).send({
          error: `artifact ${req.params.id} is referenced by a rollout`,
          hint: 'cancel or finish the rollouts of this artifact first',
        });
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/api/v1/devices/:device/artifacts/:id',
    {
      config: { access: 'device' },
      schema: {
        tags: ['artifacts'],
        summary: 'the bytes of an artifact assigned to the device (by the device, with its token)',
        description:
          'Authorization: Bearer <device token>; a device downloads only as itself and only what a ' +
          'rollout assigned to it (404 otherwise). One byte range in `Range` (206 with ' +
          'Content-Range; 416 past the end; If-Range honoured); ETag is the sha256. At most ' +
          'artifacts.downloadsPerDevice downloads per device (429) and artifacts.downloads in all ' +
          '(503) at once, with Retry-After.',
        params: Type.Object({ device: DeviceId, id: ArtifactIdParam }),
        headers: Type.Object({
          authorization: Type.Optional(Type.String()),
          range: Type.Optional(Type.String({ maxLength: 100 })),
          'if-range': Type.Optional(Type.String({ maxLength: 100 })),
        }),
        response: {
          200: Type.Unsafe<Readable>({ type: 'string', format: 'binary', description: 'the bundle file' }),
          206: Type.Unsafe<Readable>({
            type: 'string',
            format: 'binary',
            description: 'the range asked for',
          }),
          401: ErrorBody,
          404: ErrorBody,
          416: ErrorBody,
          429: ErrorBody,
          503: ErrorBody,
        },
      },
    },
    async (req, reply) => {
      const { device, id } = req.params;
      const slot = registry.downloadSlot(device);
      if (slot === 'device-busy' || slot === 'busy') {
        ctx.metrics.countHttpLimited(slot === 'busy' ? 'downloads' : 'downloads_per_device');
        return reply
          .code(slot === 'busy' ? 503 : 429)
          .header('retry-after', String(RETRY_AFTER_S))
          .send({
            error:
              slot === 'busy'
                ? `the control plane serves ${settings.downloads} downloads at once, its limit (artifacts.downloads)`
                : `device "${device}" has ${settings.downloadsPerDevice} downloads open, its limit (artifacts.downloadsPerDevice)`,
            hint: `retry after ${RETRY_AFTER_S} s, resuming with Range`,
          });
      }
      // released when the answer ends, sent whole or cut off
      reply.raw.once('close', () => slot.release());
      try {
        const found = await registry.download(device, id);
        if (!found)
          return reply.code(404).send({
            error: `no artifact ${id} is assigned to device "${device}"`,
            hint: 'a device downloads what a rollout assigned to it, named in its update command',
          });
        const size = found.artifact.bytes;
        const etag = `"${id}"`;
        const answer = parseRange(req.headers.range, size, req.headers['if-range'], etag);
        reply
          .header('etag', etag)
          .header('accept-ranges', 'bytes')
          .header('cache-control', 'private, max-age=31536000, immutable');
        if (answer.kind === 'unsatisfiable')
          return reply
            .code(416)
            .header('content-range', `bytes */${size}`)
            .send({
              error: `the range ${req.headers.range} is not within the artifact's ${size} bytes`,
              hint: 'resume from an offset below the size, or download it whole',
            });
        if (answer.kind === 'full') {
          const stream = await found.open();
          return reply
            .code(200)
            .header('content-type', 'application/octet-stream')
            .header('content-length', String(size))
            .send(stream);
        }
        const { start, end } = answer.range;
        const stream = await found.open(answer.range);
        return reply
          .code(206)
          .header('content-type', 'application/octet-stream')
          .header('content-range', `bytes ${start}-${end}/${size}`)
          .header('content-length', String(end - start + 1))
          .send(stream);
      } catch (err) {
        slot.release();
        throw err;
      }
    },
  );
}
