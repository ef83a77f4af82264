import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type Type from 'typebox';
import { parse, stringify } from 'yaml';
import { freeTcpPort } from '../../common/net.ts';
import { cacheDir } from '../../common/paths.ts';
import type { CameraTelemetry } from '../../contract/index.ts';
import type { RolloutDetailView } from '../../control-plane/api/routes/rollouts.ts';
import { hardwareClass } from '../../inference/hardware-class.ts';
import type { LoadedModel } from '../../inference/model-dir.ts';
import { generateSigningKey, loadSigningKey, type SigningKey } from '../../models/bundle/keys.ts';
import type { GateConfig } from '../../models/evaluate/gate.ts';
import { RtspServer } from '../../video/rtsp-test-server.ts';
import {
  apiFetch,
  createAdminTokenInFile,
  getJson,
  TEST_DEVICES,
  tokenOf,
  useToken,
} from '../control-plane/setup.ts';
import { signedBundle } from './candidates.ts';
import { type ControlPlaneProcess, startControlPlaneProcess } from './control-plane-process.ts';
import { AgentProcess, writeAgentConfig } from './device-setup.ts';
import { eventually } from './eventually.ts';

/**
 * A fleet on real processes for the end-to-end OTA tests: the control plane as `argus control-plane
 * run` (embedded broker, SQLite, the artifact registry trusting a test factory key), and boxes as
 * `argus device run`, each with one live RTSP camera (scripts/rtsp-server.py looping vtest.avi)
 * and the real detector (the catalog's nanodet), its updater trusting the same key. The control
 * plane's ports are fixed at the start, so a SIGKILLed one comes back where the boxes look for it.
 */

const ROOT = resolve(import.meta.dirname, '..', '..');
const CAMPUS = join(ROOT, 'scenes', 'vtest-campus.yaml');

/** the campus scene's counting line as the boxes start with it */
export const LINE_RULE = 'road-crossing';

/**
 * The campus scene with every sampled frame detected (no motion gate, so detect fps is steady for
 * the health window), no snapshots (four boxes on a shared machine) and its counting line `rule`
 * at x = `x`
 */
export async function campusScene(file: string, o: { rule: string; x: number }): Promise<void> {
  const scene = parse(await readFile(CAMPUS, 'utf8'));
  scene.motion = { enabled: false };
  scene.snapshots = { enabled: false };
  scene.rules = scene.rules.map((r: { id: string }) =>
    r.id === LINE_RULE
      ? {
          ...r,
          id: o.rule,
          line: [
            [o.x, 0.28],
            [o.x, 0.56],
          ],
        }
      : r,
  );
  await writeFile(file, stringify(scene));
}

/**
 * The fleet tests' factory key and the candidate bundles it signed, kept in the cache like the
 * candidates themselves: evaluating a candidate for its bundle takes a minute on a busy machine
 */
const FLEET_CACHE = () => join(cacheDir(), 'test-fleet');
/** a cached bundle older than this is built again (bundles expire after 30 days) */
const BUNDLE_REUSE_MS = 20 * 86_400_000;

async function fleetKey(): Promise<SigningKey> {
  const dir = join(FLEET_CACHE(), 'keys');
  try {
    return await loadSigningKey('factory', dir);
  } catch {
    await generateSigningKey('factory', dir);
    return loadSigningKey('factory', dir);
  }
}

export interface FleetOptions {
  devices: string[];
  /** frames a second each camera detects (default 3) */
  detectFps?: number;
  /** the control plane's `rollouts` section (default: a tick of 0.3 s, resend every 2 s) */
  rollouts?: Record<string, number>;
  /** the boxes' `ota` section besides the keyring */
  ota?: Record<string, number>;
}

/** the states an assignment ends in */
const FINAL = ['committed', 'failed', 'rolled-back', 'canceled', 'timed-out'];

/** a rollout as GET /api/v1/rollouts/:id shows it, as far as the tests read it */
export type RolloutDetail = Type.Static<typeof RolloutDetailView>;

export interface AssignmentView {
  id: string;
  device: string;
  wave: number;
  purpose: 'install' | 'rollback';
  state: string;
  version: number;
  reason: string | null;
  figures: Record<string, unknown> | null;
  sentAt: string | null;
  updatedAt: string;
}

/** a stored event as GET /api/v1/events gives it */
export interface StoredEventView {
  receivedAt: string;
  event: { device: string; camera: string; rule: string; phase: string; at: string };
}

/** what one box's health endpoint said of its cameras at a moment */
export interface CameraSample {
  device: string;
  at: number;
  cameras: CameraTelemetry[];
}

/** stops a control plane's process with `signal` and waits for its exit */
async function stopControlPlane(cp: ControlPlaneProcess, signal: NodeJS.Signals): Promise<void> {
  if (cp.child.exitCode !== null || cp.child.signalCode !== null) return;
  const exited = once(cp.child, 'exit');
  cp.child.kill(signal);
  await exited;
}

export class Fleet {
  readonly agents = new Map<string, AgentProcess>();
  /** every agent process started, running or not yet up */
  private readonly spawned = new Set<ChildProcess>();
  readonly configs = new Map<string, string>();
  /** every sample of the boxes' health endpoints while `watchCameras` runs */
  readonly samples: CameraSample[] = [];
  private cp!: ControlPlaneProcess;
  private watching: Promise<void> | undefined;
  private stopWatching = false;

  private constructor(
    readonly dir: string,
    readonly key: SigningKey,
    readonly hardwareClass: string,
    readonly rtsp: RtspServer,
    readonly httpUrl: string,
    private readonly cpConfig: string,
  ) {
    // a test that fails (the runner's --test-force-exit) or whose file the runner ends at its
    // time-out (SIGTERM) leaves no box, control plane or camera behind
    process.once('exit', this.killAll);
    process.once('SIGTERM', this.terminated);
  }

  private readonly terminated = () => {
    this.killAll();
    process.exit(143);
  };

  private readonly killAll = () => {
    for (const child of this.spawned) child.kill('SIGKILL');
    this.cp?.child.kill('SIGKILL');
    if (this.rtsp.pid) {
      try {
        process.kill(-this.rtsp.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  };

  static async start(o: FleetOptions): Promise<Fleet> {
    for (const d of o.devices)
      if (!TEST_DEVICES.includes(d)) throw new Error(`${d} is not one of the test devices ${TEST_DEVICES}`);
    const dir = await mkdtemp(join(tmpdir(), 'argus-fleet-'));
    const key = await fleetKey();
    const keyring = join(FLEET_CACHE(), 'keys', 'trusted');
    const rollouts = { tickS: 0.3, resendS: 2, ...o.rollouts };
    const cpConfig = join(dir, 'control-plane.yaml');
    const token = await createAdminTokenInFile(join(dir, 'argus.db'));
    const rtsp = await RtspServer.create({ paths: o.devices });
    // the ports are free when picked, but another test's process may take one before the control
    // plane binds it: then it starts again on others
    let started: { cp: ControlPlaneProcess; httpPort: number; mqttPort: number } | undefined;
    for (let attempt = 1; !started; attempt++) {
      const [httpPort, mqttPort] = [await freeTcpPort(), await freeTcpPort()];
      await writeFile(
        cpConfig,
        [
          `http: { port: ${httpPort} }`,
          `mqtt: { embedded: { port: ${mqttPort} } }`,
          'storage: { sqlite: { path: argus.db, synchronous: normal } }',
          `rollouts: { ${Object.entries(rollouts)
            .map(([k, v]) => `${k}: ${v}`)
            .join(', ')} }`,
          `artifacts: { keyring: ${keyring} }`,
          'devices:',
          ...TEST_DEVICES.map((id) => `  - { id: ${id}, token: ${tokenOf(id)} }`),
          '',
        ].join('\n'),
      );
      try {
        started = { cp: await startControlPlaneProcess(cpConfig), httpPort, mqttPort };
      } catch (err) {
        if (attempt < 3 && String(err).includes('EADDRINUSE')) continue;
        await rtsp.stop();
        await rm(dir, { recursive: true, force: true });
        throw err;
      }
    }
    const { httpPort, mqttPort } = started;
    const httpUrl = `http://127.0.0.1:${httpPort}`;
    useToken(httpUrl, token);
    const fleet = new Fleet(dir, key, hardwareClass(), rtsp, httpUrl, cpConfig);
    fleet.cp = started.cp;
    await mkdir(join(dir, 'scenes'), { recursive: true });
    await campusScene(join(dir, 'scenes', 'cam-1.yaml'), { rule: LINE_RULE, x: 0.25 });
    for (const device of o.devices) {
      const file = await writeAgentConfig(dir, {
        device,
        brokerUrl: `mqtt://127.0.0.1:${mqttPort}`,
        controlPlaneUrl: httpUrl,
        cameras: ['cam-1'],
        cameraUrls: { 'cam-1': rtsp.url(device) },
        spool: { sync: 'normal' },
        heartbeatS: 2,
        live: {
          detector: { model: 'nanodet', sessions: 1, intraOpThreads: 1, maxBatch: 1, shadowCpuShare: 1 },
          // a stall this long under a shared machine's load is not taken for a camera outage
          camera: { detectFps: o.detectFps ?? 3, stallTimeoutS: 20 },
        },
        ota: { keyring, sampleS: 0.25, progressS: 0.3, retryMaxS: 1, ...o.ota },
      });
      fleet.configs.set(device, file);
    }
    return fleet;
  }

  /**
   * `model` packed as the factory packs it (evaluated against the catalog's fp32 `reference`),
   * signed by the fleet's key for this machine's hardware class, as model line "nanodet" at
   * `version`; built once and kept in the cache
   */
  async candidateBundle(
    model: LoadedModel,
    reference: LoadedModel,
    version: number,
    gate?: GateConfig,
  ): Promise<string> {
    const dir = join(FLEET_CACHE(), 'bundles');
    const file = join(
      dir,
      `${model.descriptor.name}-${model.descriptor.sha256.slice(0, 16)}-v${version}-${this.hardwareClass}-${this.key.keyId}.argus-model`,
    );
    const made = await stat(file).then(
      (s) => Date.now() - s.mtimeMs < BUNDLE_REUSE_MS,
      () => false,
    );
    if (made) return file;
    await mkdir(dir, { recursive: true });
    const partial = `${file}.${process.pid}.partial`;
    await signedBundle({
      model,
      reference,
      out: partial,
      name: 'nanodet',
      version,
      key: this.key,
      hardwareClass: this.hardwareClass,
      ...(gate ? { gate } : {}),
    });
    await rename(partial, file);
    return file;
  }

  /** starts every box and waits until each camera detects */
  async startBoxes(): Promise<void> {
    const devices = [...this.configs.keys()];
    await Promise.all(devices.map((d) => this.startAgent(d)));
    await this.eachDetecting(devices);
  }

  /** starts the box's agent (again); resolves once it runs */
  async startAgent(device: string): Promise<AgentProcess> {
    const agent = await AgentProcess.start(this.configs.get(device)!, 240_000, (child) =>
      this.spawned.add(child),
    );
    this.agents.set(device, agent);
    return agent;
  }

  async killAgent(device: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.agents.get(device)?.terminate(signal);
    this.agents.delete(device);
  }

  async killControlPlane(): Promise<void> {
    await stopControlPlane(this.cp, 'SIGKILL');
  }

  async restartControlPlane(): Promise<void> {
    this.cp = await startControlPlaneProcess(this.cpConfig);
  }

  /** waits until every camera of `devices` is online and detecting, as the control plane's telemetry says */
  async eachDetecting(devices: readonly string[]): Promise<void> {
    await eventually(
      async () => {
        const cams = await this.cameras();
        return devices.every((d) => cams.get(d)?.every((c) => c.state === 'online' && c.fpsDetect > 0))
          ? true
          : undefined;
      },
      180_000,
      `the cameras of ${devices.join(', ')} online and detecting`,
    );
  }

  /** the cameras of each device in its latest telemetry at the control plane */
  async cameras(): Promise<Map<string, CameraTelemetry[]>> {
    const page = await getJson<{
      devices: { id: string; telemetry: { cameras: CameraTelemetry[] } | null }[];
    }>(`${this.httpUrl}/api/v1/devices?limit=100`);
    return new Map(page.devices.filter((d) => d.telemetry).map((d) => [d.id, d.telemetry!.cameras]));
  }

  /** publishes a bundle file through the registry's API; its artifact id */
  async publish(file: string): Promise<string> {
    const res = await apiFetch(`${this.httpUrl}/api/v1/artifacts`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: await readFile(file),
    });
    if (res.status !== 201) throw new Error(`publishing ${file}: ${res.status} ${await res.text()}`);
    return ((await res.json()) as { artifact: { id: string } }).artifact.id;
  }

  /**
   * alters the stored bytes of a published artifact in place (one byte in its middle, the size
   * kept), the way a corrupted disk or an intruder on the registry's store would
   */
  async tamper(id: string): Promise<void> {
    const file = join(this.dir, 'artifacts', 'sha256', id.slice(0, 2), id);
    const handle = await open(file, 'r+');
    try {
      const { size } = await handle.stat();
      const byte = Buffer.alloc(1);
      await handle.read(byte, 0, 1, Math.floor(size / 2));
      byte[0] = byte[0]! ^ 0xff;
      await handle.write(byte, 0, 1, Math.floor(size / 2));
    } finally {
      await handle.close();
    }
  }

  /** creates a rollout through the API; its id */
  async createRollout(spec: Record<string, unknown>): Promise<string> {
    const res = await apiFetch(`${this.httpUrl}/api/v1/rollouts`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(spec),
    });
    if (res.status !== 201) throw new Error(`creating a rollout: ${res.status} ${await res.text()}`);
    return ((await res.json()) as { id: string }).id;
  }

  async action(id: string, verb: 'pause' | 'resume' | 'cancel', body?: unknown): Promise<RolloutDetail> {
    const res = await apiFetch(`${this.httpUrl}/api/v1/rollouts/${id}/${verb}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body ?? {}),
    });
    if (res.status !== 200) throw new Error(`${verb} ${id}: ${res.status} ${await res.text()}`);
    return (await res.json()) as RolloutDetail;
  }

  rollout(id: string): Promise<RolloutDetail> {
    return getJson<RolloutDetail>(`${this.httpUrl}/api/v1/rollouts/${id}`);
  }

  async assignments(id: string): Promise<AssignmentView[]> {
    return (
      await getJson<{ assignments: AssignmentView[] }>(`${this.httpUrl}/api/v1/rollouts/${id}/assignments`)
    ).assignments;
  }

  /** waits until the rollout is in one of `states`; its detail then */
  async settled(id: string, states: readonly string[], timeoutMs: number): Promise<RolloutDetail> {
    let last: RolloutDetail | undefined;
    let rows: AssignmentView[] = [];
    try {
      return await eventually(
        async () => {
          last = await this.rollout(id);
          if (states.includes(last.state)) return last;
          rows = await this.assignments(id);
          return undefined;
        },
        timeoutMs,
        `rollout ${id} ${states.join(' or ')}`,
      );
    } catch (err) {
      const busy = rows.filter((a) => !FINAL.includes(a.state) && a.state !== 'pending');
      throw new Error(
        `${(err as Error).message}; last: ${JSON.stringify({ state: last?.state, waves: last?.waves })}; assignments: ${JSON.stringify(rows.map((a) => [a.device, a.state, a.reason]))}${busy
          .map((a) => `\n--- the last log lines of ${a.device}:\n${this.logTail(a.device)}`)
          .join('')}`,
      );
    }
  }

  /** the last lines a box's agent logged */
  logTail(device: string, lines = 15): string {
    return (this.agents.get(device)?.stderr ?? '').trimEnd().split('\n').slice(-lines).join('\n');
  }

  /** stored events at the control plane matching `query` (device, rule, from …), newest first */
  async events(query: Record<string, string>): Promise<StoredEventView[]> {
    const q = new URLSearchParams({ limit: '500', ...query });
    return (await getJson<{ events: StoredEventView[] }>(`${this.httpUrl}/api/v1/events?${q}`)).events;
  }

  /** samples every running box's health endpoint every `everyMs` until `unwatch` */
  watchCameras(everyMs = 250): void {
    this.stopWatching = false;
    this.watching = (async () => {
      while (!this.stopWatching) {
        await Promise.all(
          [...this.agents].map(async ([device, agent]) => {
            try {
              const h = await agent.health();
              this.samples.push({ device, at: Date.now(), cameras: h.cameras });
            } catch {
              // an agent killed by the test answers no more; the next sample goes to the new one
            }
          }),
        );
        await new Promise((r) => setTimeout(r, everyMs));
      }
    })();
  }

  async unwatch(): Promise<void> {
    this.stopWatching = true;
    await this.watching;
  }

  async close(): Promise<void> {
    await this.unwatch();
    await Promise.all([...this.agents.keys()].map((d) => this.killAgent(d, 'SIGTERM')));
    if (this.cp) await stopControlPlane(this.cp, 'SIGTERM');
    await this.rtsp.stop();
    process.off('exit', this.killAll);
    process.off('SIGTERM', this.terminated);
    await rm(this.dir, { recursive: true, force: true });
  }
}
