import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A plain HTTP server that serves artifacts the way the control plane's download route does
 * (Bearer credential, `Range` with `If-Range`, an ETag per artifact), and can cut an answer after
 * a number of bytes (the connection is destroyed mid-body), for the updater's tests and benchmark.
 */
export class ArtifactServer {
  readonly requests: { path: string; range: string | undefined; ifRange: string | undefined }[] = [];
  /**
   * offsets in the artifact at which an answer is cut (the connection destroyed mid-body), each
   * used once, by the first answer that passes it
   */
  readonly cuts: number[] = [];
  private readonly artifacts = new Map<string, { data: Buffer; etag: string }>();
  private server!: Server;
  url = '';

  private readonly credentials = new Set<string>();

  constructor(credential: string) {
    this.credentials.add(credential);
  }

  /** accepts another device's credential too */
  allow(credential: string): void {
    this.credentials.add(credential);
  }

  /** serves `data` as artifact `id` of every device */
  put(id: string, data: Buffer, etag = `"${id.slice(0, 16)}"`): void {
    this.artifacts.set(id, { data, etag });
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => this.handle(req, res));
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = req.url ?? '';
    const range = req.headers.range;
    const ifRange = typeof req.headers['if-range'] === 'string' ? req.headers['if-range'] : undefined;
    this.requests.push({ path, range, ifRange });
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!bearer || !this.credentials.has(bearer)) {
      res.writeHead(401).end('credential refused');
      return;
    }
    const id = /\/artifacts\/([0-9a-f]{64})$/.exec(path)?.[1];
    const artifact = id ? this.artifacts.get(id) : undefined;
    if (!artifact) {
      res.writeHead(404).end('no such artifact for this device');
      return;
    }
    const { data, etag } = artifact;
    let start = 0;
    let status = 200;
    const m = range ? /^bytes=(\d+)-$/.exec(range) : null;
    if (m && (!ifRange || ifRange === etag)) {
      start = Number(m[1]);
      if (start >= data.length) {
        res.writeHead(416, { 'content-range': `bytes */${data.length}` }).end();
        return;
      }
      status = 206;
    }
    const body = data.subarray(start);
    res.writeHead(status, {
      'content-length': String(body.length),
      etag,
      'accept-ranges': 'bytes',
      ...(status === 206 ? { 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` } : {}),
    });
    const next = Math.min(...this.cuts.filter((c) => c > start && c < data.length));
    const i = this.cuts.indexOf(next);
    if (i < 0) {
      res.end(body);
      return;
    }
    const [cut] = this.cuts.splice(i, 1);
    // the bytes before the cut reach the client, then the connection ends without the rest
    res.write(body.subarray(0, cut! - start), () => req.socket.end());
  }
}
