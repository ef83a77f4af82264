import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ArgusError } from '../common/errors.ts';
import type { CameraTelemetry, DetectorTelemetry } from '../contract/index.ts';
import type { SpoolStats } from './spool.ts';

export interface HealthReport {
  /** `ok` when the uplink is connected and every camera is online, else `degraded` */
  status: 'ok' | 'degraded';
  device: string;
  uptimeS: number;
  mqtt: { connected: boolean };
  spool: SpoolStats;
  cameras: CameraTelemetry[];
  /** absent when the box runs no detector */
  detector?: DetectorTelemetry;
}

export interface HealthServer {
  /** where it listens (the real port when 0 was configured) */
  address: { host: string; port: number };
  close(): Promise<void>;
}

/**
 * The local health endpoint: `GET /healthz` answers 200 with a HealthReport as long as the agent
 * runs. A lost uplink or an offline camera is reported as `degraded` but is not a reason for a
 * supervisor to restart the agent (the agent reconnects by itself), hence never an error status.
 */
export async function startHealthServer(
  host: string,
  port: number,
  report: () => HealthReport,
  configFile: string,
): Promise<HealthServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || path !== '/healthz') {
      res
        .writeHead(404, { 'content-type': 'application/json' })
        .end('{"error":"not found; try GET /healthz"}');
      return;
    }
    res
      .writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
      .end(JSON.stringify(report()));
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new ArgusError(
          `the health endpoint cannot listen on ${host}:${port}: ${err.code === 'EADDRINUSE' ? 'the port is in use' : err.message}`,
          `set health.port in ${configFile} to a free port (0 picks one)`,
        ),
      ),
    );
    server.listen(port, host, resolve);
  });
  const addr = server.address() as AddressInfo;
  return {
    address: { host, port: addr.port },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
