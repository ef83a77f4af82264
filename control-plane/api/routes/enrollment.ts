import Type from 'typebox';
import { httpPaths } from '../../../contract/index.ts';
import { claimRefusalMessage, EXCHANGE_RETRY_WINDOW_MS, MAX_CLAIM_TTL_S } from '../../enrollment.ts';
import { type ApiContext, type App, iso } from '../context.ts';
import { DeviceId, ErrorBody } from '../schemas.ts';

const secret = (description?: string) =>
  Type.String({
    minLength: 16,
    maxLength: 128,
    pattern: '^[A-Za-z0-9_-]+$',
    ...(description ? { description } : {}),
  });
const RETRY_MINUTES = EXCHANGE_RETRY_WINDOW_MS / 60_000;
const CredentialAnswer = Type.Object({ device: DeviceId, credential: Type.String() });
/** the bodies of the device routes are tiny */
const SMALL_BODY = 1024;

/**
 * Enrollment and the device credential life cycle: admins make claim tokens, rotate and revoke;
 * a box exchanges its claim token for its own credential (public, bounded and rate-limited per
 * address) and fetches a rotated credential with its current one.
 */
export function enrollmentRoutes(app: App, ctx: ApiContext): void {
  const rateLimit = { max: ctx.enrollmentSettings.exchangesPerMinute, timeWindow: 60_000 };

  app.post(
    '/api/v1/devices/:id/claims',
    {
      config: { access: 'admin' },
      bodyLimit: SMALL_BODY,
      schema: {
        tags: ['enrollment'],
        summary: 'make a one-time claim token with which a box gets its own credential (shown once)',
        params: Type.Object({ id: DeviceId }),
        body: Type.Object(
          { ttlS: Type.Optional(Type.Integer({ minimum: 60, maximum: MAX_CLAIM_TTL_S })) },
          { additionalProperties: false },
        ),
        response: {
          201: Type.Object({
            device: DeviceId,
            claimToken: Type.String(),
            expiresAt: Type.String({ format: 'date-time' }),
            deviceConfig: Type.String({ description: 'the line for the device config' }),
          }),
        },
      },
    },
    async (req, reply) => {
      const claim = await ctx.enrollment.createClaim(
        req.params.id,
        req.body.ttlS ?? ctx.enrollmentSettings.claimTtlS,
        `${req.principal?.kind ?? 'api'} ${req.principal?.name ?? req.ip}`,
      );
      return reply.code(201).send({
        device: claim.device,
        claimToken: claim.token,
        expiresAt: iso(claim.expiresAt),
        deviceConfig: `controlPlane: { claimToken: ${claim.token} }`,
      });
    },
  );

  app.post(
    '/api/v1/devices/:device/enroll',
    {
      config: { access: 'public', rateLimit },
      bodyLimit: SMALL_BODY,
      schema: {
        tags: ['enrollment'],
        summary: 'exchange a one-time claim token for the device credential (by the box)',
        description: `The path is httpPaths.enroll of the contract. 401: the token was not issued for this device; 410: it was used (by another exchange key, or more than ${RETRY_MINUTES} minutes ago) or has expired.`,
        params: Type.Object({ device: DeviceId }),
        body: Type.Object(
          {
            claimToken: secret(),
            exchangeKey: Type.Optional(
              secret(
                `the box's own random secret for this exchange: sent again with the same claim token within ${RETRY_MINUTES} minutes (the box never got the answer), it gets a new credential in place of the first`,
              ),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 201: CredentialAnswer, 401: ErrorBody, 410: ErrorBody },
      },
    },
    async (req, reply) => {
      const { device } = req.params;
      const outcome = await ctx.enrollment.exchange(device, req.body.claimToken, req.body.exchangeKey);
      if ('credential' in outcome) return reply.code(201).send({ device, credential: outcome.credential });
      return reply.code(outcome.reason === 'unknown' ? 401 : 410).send(claimRefusalMessage(device, outcome));
    },
  );

  app.post(
    '/api/v1/devices/:device/credential',
    {
      config: { access: 'device', rateLimit },
      bodyLimit: SMALL_BODY,
      schema: {
        tags: ['enrollment'],
        summary: 'a new credential for the device, which authenticates with its current one (by the box)',
        description:
          'The path is httpPaths.rotateCredential of the contract. The current credential stays valid until the device uses the new one.',
        params: Type.Object({ device: DeviceId }),
        headers: Type.Object({ authorization: Type.Optional(Type.String({ maxLength: 600 })) }),
        response: { 200: CredentialAnswer, 401: ErrorBody },
      },
    },
    async (req, reply) => {
      const { device } = req.params;
      const presented = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
      const credential =
        presented && (await ctx.credentials.verifyToken(device, presented))
          ? await ctx.enrollment.rotate(device, presented)
          : undefined;
      if (!credential)
        return reply.code(401).send({
          error: `missing, wrong or revoked credential for device "${device}"`,
          hint: 'send Authorization: Bearer <the device credential>',
        });
      return { device, credential };
    },
  );

  app.post(
    '/api/v1/devices/:id/rotate',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['enrollment'],
        summary: 'rotate the device credential: the box is sent rotate-credential and fetches a new one',
        params: Type.Object({ id: DeviceId }),
        response: {
          202: Type.Object({ device: DeviceId, command: Type.Union([Type.String(), Type.Null()]) }),
          404: ErrorBody,
        },
      },
    },
    async (req, reply) => {
      const { id } = req.params;
      if (!(await ctx.enrollment.requestRotation(id)))
        return reply.code(404).send({
          error: `device "${id}" has no valid credential to rotate`,
          hint: `enroll it: argus control-plane enroll ${id}`,
        });
      const [due] = await ctx.enrollment.takeRotationRequests([id]);
      const command = due ? await ctx.commands.send(id, 'rotate-credential', {}) : undefined;
      return reply
        .code(202)
        .send({ device: id, command: command ? httpPaths.commandResult(command.id) : null });
    },
  );

  app.post(
    '/api/v1/devices/:id/revoke',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['enrollment'],
        summary: 'revoke the device credential and its unused claim tokens; the box is disconnected',
        params: Type.Object({ id: DeviceId }),
        response: { 200: Type.Object({ device: DeviceId, revoked: Type.Literal(true) }), 404: ErrorBody },
      },
    },
    async (req, reply) => {
      const { id } = req.params;
      if (!(await ctx.enrollment.revoke(id)))
        return reply.code(404).send({ error: `device "${id}" has no credential that is not revoked` });
      return { device: id, revoked: true as const };
    },
  );
}
