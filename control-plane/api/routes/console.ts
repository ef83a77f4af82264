import { readFile } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import Type from 'typebox';
import type { App } from '../context.ts';
import { ErrorBody } from '../schemas.ts';

/** where `console/build.mjs` writes the console (index.html and assets/ with content-hashed names) */
export const CONSOLE_DIST = resolve(import.meta.dirname, '../../../console/dist');

/** a built asset's name: its content hash is part of it, so the same name always has the same bytes */
const ASSET_NAME = '^[A-Za-z0-9_-]{1,80}\\.(js|css|map|woff2|svg)$';
const CONTENT_TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.woff2': 'font/woff2',
  '.svg': 'image/svg+xml',
};

/**
 * The page may load only what this control plane serves: its own scripts and styles (no inline
 * script), images from the API (snapshots) and blob: URLs, media from blob: (the live view's Media
 * Source), and talk only to this origin (fetch, the SSE stream, the live view's WebSocket).
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob: data:",
  "media-src 'self' blob:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join('; ');

const FileBody = Type.Unsafe<Buffer>({ type: 'string', format: 'binary' });

const NOT_BUILT = {
  error: 'the console is not built',
  hint: 'run `sh scripts/bootstrap.sh` (or `npm run build:console`) in the repository, then reload',
};

/**
 * The console's static files (the shell only: every figure it shows comes through the
 * authenticated API): `/` is index.html, `no-cache` so that a new build is picked up at once;
 * `/assets/<name>-<hash>.<ext>` are immutable for a year. Files are read per request from
 * CONSOLE_DIST, so rebuilding needs no restart.
 */
export function consoleRoutes(app: App, dist = CONSOLE_DIST): void {
  app.get(
    '/',
    {
      config: { access: 'public' },
      schema: { hide: true, response: { 200: FileBody, 503: ErrorBody } },
    },
    async (_req, reply) => {
      const html = await readFile(join(dist, 'index.html')).catch(() => undefined);
      if (!html) return reply.code(503).send(NOT_BUILT);
      return reply
        .header('content-type', 'text/html; charset=utf-8')
        .header('cache-control', 'no-cache')
        .header('content-security-policy', CONTENT_SECURITY_POLICY)
        .header('x-content-type-options', 'nosniff')
        .header('referrer-policy', 'same-origin')
        .send(html);
    },
  );

  app.get(
    '/assets/:file',
    {
      config: { access: 'public' },
      schema: {
        hide: true,
        params: Type.Object({ file: Type.String({ pattern: ASSET_NAME }) }),
        response: { 200: FileBody, 404: ErrorBody },
      },
    },
    async (req, reply) => {
      const { file } = req.params;
      const bytes = await readFile(join(dist, 'assets', file)).catch(() => undefined);
      if (!bytes)
        return reply
          .code(404)
          .header('cache-control', 'no-store')
          .send({ error: `no asset ${file}`, hint: 'reload the page: the console was rebuilt' });
      return reply
        .header('content-type', CONTENT_TYPES[extname(file)]!)
        .header('cache-control', 'public, max-age=31536000, immutable')
        .header('x-content-type-options', 'nosniff')
        .send(bytes);
    },
  );
}
