import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import type { HealthReport } from '../../device/health.ts';
import type { CameraSettings } from '../../pipelines/camera-settings.ts';

const ROOT = resolve(import.meta.dirname, '../..');
export const RECORDING = join(ROOT, 'test/fixtures/device/vtest-campus.events.jsonl');

/** a camera of the recorded-events host (its URL is never opened), with the scene `scene.yaml` of the host's config directory */
export const recordedCamera = (id: string): CameraSettings => ({
  id,
  url: `rtsp://127.0.0.1/${id}`,
  scene: 'scene.yaml',
  detectFps: 5,
  loop: false,
  stallTimeoutS: 5,
  rtspTransport: 'tcp',
  decoder: 'auto',
  enabled: true,
});

export interface AgentConfigOptions {
  device: string;
  brokerUrl: string;
  controlPlaneUrl: string;
  /** the pre-provisioned credential; default `token-of-<device>-for-tests` (tokenOf of the control-plane setup) unless `claimToken` is given */
  token?: string;
  /** enroll with this claim token instead of a pre-provisioned credential */
  claimToken?: string;
  cameras?: string[];
  /** the RTSP server the cameras' URLs point at (`rtsp://host:port/`), default rtsp://127.0.0.1:8554/ */
  rtspBase?: string;
  /** a camera's own URL instead, by camera id */
  cameraUrls?: Record<string, string>;
  eventsPerSecond?: number;
  /** the recording the cameras replay (default RECORDING) */
  recording?: string;
  /** replay the recording again at its end (default), else the cameras go offline there */
  loop?: boolean;
  heartbeatS?: number;
  spool?: {
    maxMessages?: number;
    maxBytes?: number;
    maxSnapshots?: number;
    maxSnapshotBytes?: number;
    resumeOpenEventsS?: number;
    sync?: 'full' | 'normal';
  };
  shutdownFlushS?: number;
  /** the config's `tls` section (absolute paths) */
  tls?: { ca: string; cert?: string; key?: string };
  /**
   * live cameras through the video pipeline with this `detector` section, instead of replaying
   * the recording; `camera` settings for each camera (e.g. detectFps)
   */
  live?: { detector: Record<string, string | number>; camera: Record<string, string | number> };
  /** the config's `ota` section */
  ota?: Record<string, string | number>;
}

/** a YAML section of scalar settings, or nothing when there are none */
const section = (name: string, values: Record<string, string | number> | undefined): string =>
  values
    ? `${name}:\n${Object.entries(values)
        .map(([k, v]) => `  ${k}: ${v}\n`)
        .join('')}`
    : '';

/** the YAML of a device config that replays the recorded fixture on each camera */
export function agentConfigYaml(o: AgentConfigOptions): string {
  const cameras = (o.cameras ?? ['cam-1', 'cam-2'])
    .map(
      (id) =>
        `  - id: ${id}\n    url: ${o.cameraUrls?.[id] ?? `${o.rtspBase ?? 'rtsp://127.0.0.1:8554/'}${id}`}\n    scene: scenes/${id}.yaml\n${Object.entries(
          o.live?.camera ?? {},
        )
          .map(([k, v]) => `    ${k}: ${v}\n`)
          .join('')}`,
    )
    .join('');
  const tls = section('tls', o.tls);
  const spool = Object.entries(o.spool ?? {})
    .map(([k, v]) => `  ${k}: ${v}\n`)
    .join('');
  return `device:
  id: ${o.device}
mqtt:
  url: ${o.brokerUrl}
  heartbeatS: ${o.heartbeatS ?? 1}
  reconnectS: 0.5
  shutdownFlushS: ${o.shutdownFlushS ?? 5}
controlPlane:
  url: ${o.controlPlaneUrl}
${o.claimToken ? `  claimToken: ${o.claimToken}` : `  token: ${o.token ?? `token-of-${o.device}-for-tests`}`}
${tls}spool:
  path: ${o.device}.spool.db
${spool}health:
  port: 0
${section('ota', o.ota)}cameras:
${cameras}${
  o.live
    ? section('detector', o.live.detector)
    : `recorded:
  events: ${o.recording ?? RECORDING}
  eventsPerSecond: ${o.eventsPerSecond ?? 10}
  loop: ${o.loop ?? true}
`
}`;
}

export async function writeAgentConfig(dir: string, o: AgentConfigOptions): Promise<string> {
  const file = join(dir, `${o.device}.yaml`);
  await writeFile(file, agentConfigYaml(o));
  return file;
}

export interface ReceivedSnapshot {
  device: string;
  bytes: number;
  contentType: string | undefined;
}

/** the control plane's snapshot upload endpoint, as far as devices see it */
export class SnapshotReceiver {
  readonly snapshots = new Map<string, ReceivedSnapshot>();
  readonly refused: string[] = [];
  /** answer uploads with this status instead (e.g. 503) */
  failWith: number | undefined;

  private constructor(
    private readonly server: Server,
    private readonly tokens: Map<string, string>,
  ) {}

  /** listens on `port` (default: a free one) */
  static async start(tokens: Record<string, string>, port = 0): Promise<SnapshotReceiver> {
    let self: SnapshotReceiver | undefined;
    const server = createServer((req, res) => self!.handle(req, res));
    self = new SnapshotReceiver(server, new Map(Object.entries(tokens)));
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    return self;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private handle(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const m = /^\/api\/v1\/devices\/([^/]+)\/snapshots\/([^/]+)$/.exec(req.url ?? '');
      if (req.method !== 'PUT' || !m) return void res.writeHead(404).end();
      const [, device, id] = m as unknown as [string, string, string];
      if (req.headers.authorization !== `Bearer ${this.tokens.get(device)}`) {
        this.refused.push(id);
        return void res.writeHead(401).end('bad token');
      }
      if (this.failWith) return void res.writeHead(this.failWith).end('failing on purpose');
      this.snapshots.set(id, {
        device,
        bytes: Buffer.concat(chunks).length,
        contentType: req.headers['content-type'],
      });
      res.writeHead(201).end();
    });
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** `argus device run` as a child process, the way a box runs it */
export class AgentProcess {
  stderr = '';
  healthUrl: string | undefined;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(readonly child: ChildProcess) {
    this.exited = once(child, 'exit').then(([code, signal]) => ({
      code: code as number | null,
      signal: signal as NodeJS.Signals | null,
    }));
    child.stderr?.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      this.healthUrl ??= /"health":"(http:[^"]+)"/.exec(this.stderr)?.[1];
    });
  }

  /** `onSpawn` gets the process at once, before it runs (e.g. to kill it if the test is ended first) */
  static async start(
    configFile: string,
    timeoutMs = 20_000,
    onSpawn?: (child: ChildProcess) => void,
  ): Promise<AgentProcess> {
    const child = spawn(
      process.execPath,
      [join(ROOT, 'bin/argus.mjs'), 'device', 'run', '--config', configFile],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: { ...process.env, ARGUS_LOG_LEVEL: 'info' },
      },
    );
    onSpawn?.(child);
    const agent = new AgentProcess(child);
    const deadline = Date.now() + timeoutMs;
    while (!agent.healthUrl) {
      if (child.exitCode !== null) throw new Error(`agent exited with ${child.exitCode}:\n${agent.stderr}`);
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`agent did not start within ${timeoutMs} ms:\n${agent.stderr}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return agent;
  }

  async health(): Promise<HealthReport> {
    return (await (await fetch(this.healthUrl!)).json()) as HealthReport;
  }

  /** sends `signal` and waits for the exit, at most `timeoutMs` */
  async terminate(
    signal: NodeJS.Signals,
    timeoutMs = 15_000,
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
    const started = performance.now();
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const result = await this.exited;
    clearTimeout(timer);
    return { ...result, ms: performance.now() - started };
  }
}
