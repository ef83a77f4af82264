import { createServer, type IncomingMessage, type Server, STATUS_CODES } from 'node:http';
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

/** a request whose body is still coming */
interface Receiving {
  startedAt: number;
  /** a streamed upload: timed from the last byte that came, not from its start */
  streamed: boolean;
  /** the socket's bytes read at the last check that saw some come */
  bytesRead: number;
  progressAt: number;
}

/**
 * The node HTTP(S) server of the API with the bounds of `limits.http`: header, request, idle and
 * keep-alive timeouts, open connections in all and per remote address. Connections past a bound are
 * closed at once and counted.
 *
 * The request time-out is the server's own (node's is off; its header time-out stays): a request
 * must have its whole body within `requestTimeoutMs` of its headers, except a streamed upload
 * (`streamedUpload`: a bundle of up to artifacts.maxUploadBytes over a slow link), which may take
 * as long as it keeps sending and is ended only once no byte came for `requestTimeoutMs`. Either
 * way the answer is a 408 and the connection is closed, so the handler's read of the body fails
 * and nothing of it is stored.
 */
export function boundedServer(
  limits: HttpLimitSettings,
  metrics: Metrics,
  handler: Parameters<typeof createServer>[1],
  /** serve HTTPS with this certificate and key */
  tls?: ServerTlsMaterial,
  streamedUpload: (req: IncomingMessage) => boolean = () => false,
): Server {
  const options = {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: 0,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
  };
  const receiving = new Map<IncomingMessage, Receiving>();
  const timed: Parameters<typeof createServer>[1] = (req, res) => {
    if (!req.complete) {
      const now = performance.now();
      receiving.set(req, {
        startedAt: now,
        streamed: streamedUpload(req),
        bytesRead: req.socket.bytesRead,
        progressAt: now,
      });
      const done = () => receiving.delete(req);
      req.once('end', done);
      req.once('close', done);
    }
    handler!(req, res);
  };
  const server: Server = tls
    ? createHttpsServer({ ...options, ...tls }, timed)
    : createServer(options, timed);
  const checker = setInterval(() => {
    const now = performance.now();
    for (const [req, r] of receiving) {
      if (req.complete || req.socket.destroyed) {
        receiving.delete(req);
        continue;
      }
      if (req.socket.bytesRead > r.bytesRead) {
        r.bytesRead = req.socket.bytesRead;
        r.progressAt = now;
      }
      const since = r.streamed ? r.progressAt : r.startedAt;
      if (now - since <= limits.requestTimeoutMs) continue;
      receiving.delete(req);
      // answered as node's own time-out is: 408 by the client error handler, connection closed
      server.emit(
        'clientError',
        Object.assign(
          new Error(
            r.streamed
              ? `no byte of the upload came for ${limits.requestTimeoutMs} ms`
              : `the request was not received within ${limits.requestTimeoutMs} ms`,
          ),
          { code: 'ERR_HTTP_REQUEST_TIMEOUT' },
        ),
        req.socket,
      );
    }
  }, TIMEOUT_CHECK_INTERVAL_MS);
  checker.unref();
  server.once('close', () => clearInterval(checker));
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
    // (a socket destroyed already was answered: its destruction's error comes here once more)
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    if (status === 408) metrics.countHttpLimited('request_timeout');
    if (status === 431) metrics.countHttpLimited('header_size');
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
