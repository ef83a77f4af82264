import { createServer, type Server, STATUS_CODES } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import { JsonBoundsError, parseBoundedJson } from '../../common/bounded-json.ts';
import { ConnectionsPerAddress } from '../../common/connections-per-address.ts';
import type { HttpLimitSettings } from '../config.ts';
import type { Metrics } from '../metrics.ts';
import type { ServerTlsMaterial } from '../tls.ts';
import type { App } from './context.ts';

/** how often node checks the header and request timeouts of open connections */
const TIMEOUT_CHECK_INTERVAL_MS = 1000;

/** an HTTP error with the status the API answers */
function httpError(statusCode: number, message: string): Error {
  return Object.assign(new Error(message), { statusCode });
}

/**
 * The node HTTP(S) server of the API with the bounds of `limits.http`: header, request, idle and
 * keep-alive timeouts, open connections in all and per remote address. Connections past a bound are
 * closed at once and counted.
 */
export function boundedServer(
  limits: HttpLimitSettings,
  metrics: Metrics,
  handler: Parameters<typeof createServer>[1],
  /** serve HTTPS with this certificate and key */
  tls?: ServerTlsMaterial,
): Server {
  const options = {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
  };
  const server: Server = tls
    ? createHttpsServer({ ...options, ...tls }, handler)
    : createServer(options, handler);
  server.setTimeout(limits.idleTimeoutMs);
  server.maxConnections = limits.connections;
  server.on('drop', () => metrics.countHttpLimited('connections'));
  const perAddress = new ConnectionsPerAddress(limits.connectionsPerAddress);
  server.on('connection', (socket: Socket) => {
    const refuse = () => {
      metrics.countHttpLimited('connections_per_address');
      socket.destroy();
    };
    const now = perAddress.admit(socket, (admitted) => (admitted ? socket.resume() : refuse()));
    if (now === 'refused') refuse();
    // nothing is read (no request parsed) until it is admitted
    else if (now === 'waiting') socket.pause();
  });
  return server;
}

/**
 * Answers a request the HTTP parser refused (408 too slow, 431 headers too large, 400 not HTTP) with
 * its status line, closes the connection and counts the bounds among them; fastify's
 * `clientErrorHandler`.
 */
export function clientErrorHandler(metrics: Metrics) {
  return (err: Error & { code?: string }, socket: Socket): void => {
    const status =
      err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    if (status === 408) metrics.countHttpLimited('request_timeout');
    if (status === 431) metrics.countHttpLimited('header_size');
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    // no body: the request's method is unknown here, and the answer to a HEAD must have none
    if (socket.writable)
      socket.write(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`,
      );
    socket.destroy(err);
  };
}

/** a key that would reach an object's prototype if the value were merged into another */
function prototypeKey(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  if (Array.isArray(value)) {
    for (const item of value) {
      const key = prototypeKey(item);
      if (key) return key;
    }
    return undefined;
  }
  for (const [key, item] of Object.entries(value)) {
    if (key === '__proto__') return key;
    if (key === 'constructor' && typeof item === 'object' && item !== null && 'prototype' in item)
      return 'constructor.prototype';
    const inner = prototypeKey(item);
    if (inner) return inner;
  }
  return undefined;
}

/**
 * JSON request bodies parsed by `parseBoundedJson`: at most `bodyBytes` (413) and `jsonDepth`
 * levels (400), and no `__proto__` / `constructor.prototype` keys (400), so that no later code that
 * walks a body (validation, JSON.stringify, a driver) can overflow its stack.
 */
export function boundedJsonBodies(app: App, limits: HttpLimitSettings, metrics: Metrics): void {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    try {
      const value = parseBoundedJson(body as string, {
        maxBytes: limits.bodyBytes,
        maxDepth: limits.jsonDepth,
      });
      const key = prototypeKey(value);
      if (key) return done(httpError(400, `the JSON body holds the key "${key}", which is refused`));
      done(null, value);
    } catch (err) {
      if (!(err instanceof JsonBoundsError)) return done(err as Error);
      if (err.reason === 'oversized') metrics.countHttpLimited('body_size');
      if (err.reason === 'too_deep') metrics.countHttpLimited('json_depth');
      const status = err.reason === 'oversized' ? 413 : 400;
      done(httpError(status, `the JSON body is refused: ${err.message}`));
    }
  });
}
