/** an HTTP-date of Retry-After (RFC 9110 §10.2.3, IMF-fixdate), e.g. `Wed, 21 Oct 2026 07:28:00 GMT` */
const HTTP_DATE = /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/**
 * The wait a Retry-After header asks, in ms, bounded by `capMs`: delay-seconds or an HTTP-date
 * (0 once it has passed); `undefined` without the header or for anything else. A server, or
 * whatever stands between it and the box, cannot stall a client for longer than its own cap.
 */
export function retryAfterMs(header: unknown, nowMs: number, capMs: number): number | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (typeof value !== 'string' || value.length > 64) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Math.min(capMs, Number(text) * 1000);
  if (!HTTP_DATE.test(text)) return undefined;
  const at = Date.parse(text);
  if (!Number.isFinite(at)) return undefined;
  return Math.min(capMs, Math.max(0, at - nowMs));
}
