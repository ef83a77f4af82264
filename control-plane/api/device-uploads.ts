import type { FastifyRequest } from 'fastify';
import type { ApiContext } from './context.ts';

/**
 * The per-device rate of the uploads a box makes over HTTP (snapshots, harvested frames), as the
 * route's `config.rateLimit` of @fastify/rate-limit: `limits.http.deviceUploadsPerMinute` per
 * device and kind, so a harvest backlog never holds back the snapshots of events. The route's
 * onRequest hook runs after the auth plugin's, so only a request with the device's own credential
 * takes from its bucket: an anonymous flood on a device's path cannot use up its rate. Each
 * replica keeps its own buckets (a bound per replica, not a quota); past the rate, 429 with
 * Retry-After, counted in `argus_http_limited_total{limit="device_uploads"}`.
 */
export function deviceUploadRate(ctx: ApiContext, kind: 'snapshot' | 'harvest') {
  const max = ctx.limits.deviceUploadsPerMinute;
  return {
    max,
    timeWindow: 60_000,
    keyGenerator: (req: FastifyRequest) => `${kind}:${(req.params as { device: string }).device}`,
    onExceeded: () => ctx.metrics.countHttpLimited('device_uploads'),
    errorResponseBuilder: (req: FastifyRequest, context: { after: string }) =>
      Object.assign(
        new Error(
          `device "${(req.params as { device: string }).device}" sent more than ${max} ${kind} uploads in a minute (limits.http.deviceUploadsPerMinute); retry in ${context.after}, as Retry-After says`,
        ),
        { statusCode: 429 },
      ),
  };
}
