/**
 * npm run bench:rollout — a rollout of an 8 MB signed model bundle to 1,000 simulated devices over
 * loopback, through the control plane's real registry, rollout engine, embedded broker and ingest.
 *
 * The control plane runs as `argus control-plane run` in its own process (SQLite, embedded
 * broker), its RSS read from /proc. The devices live in a few child processes of a few hundred
 * each; every device has its own credential, its own MQTT connection (its identity retained, its
 * command topic, its update statuses with QoS 1), its own state directory and the real device
 * updater (ota/updater: download with its credential, verify the signature and every hash, unpack
 * into a slot, health window, commit) with the real command processor of the agent. What a device
 * lacks is cameras: its host (BenchHost below) checks a model directory the way the camera-less
 * recorded-events host does (descriptor read, the ONNX file's sha256 against it) and reports no
 * detector figures; the rollout asks for no shadow step (`shadow: false`), as a rollout to boxes
 * without cameras must.
 *
 * Each device connects from its own loopback address (127.10.x.y; Linux routes 127.0.0.0/8 to lo),
 * its MQTT socket and its downloads bound to it, so the control plane's per-address limits
 * (limits.http.connectionsPerAddress, mqtt.embedded.maxConnectionsPerAddress) stay as shipped.
 *
 * 1. baseline: a rollout of the same artifact to the same 1,000 devices in one wave, the devices
 *    answering its assignment with a plain HTTP GET of the bytes (read and dropped), all at once —
 *    the raw transfer time is from the first request to the last byte; the rollout is canceled;
 * 2. the rollout: a canary, then waves growing exponentially, each device's updater taking it
 *    through every state to committed; the time from the create request until the control plane
 *    counts every device committed.
 *
 * The devices' state directories are on tmpfs (/dev/shm) when it has room: a thousand boxes each
 * write to their own flash; on one machine their 16 GB of writes would measure this disk. Set
 * ARGUS_BENCH_STATE_DIR to put them elsewhere. The last line is one JSON object with every figure.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { subscribe } from 'node:diagnostics_channel';
import { readFileSync, statfsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { MqttClient } from 'mqtt';
import type Type from 'typebox';
import { timeOrderedId } from '../common/ids.ts';
import { createLogger } from '../common/logger.ts';
import {
  CONTRACT_VERSION,
  type CommandName,
  httpPaths,
  type Identity,
  otaValidators,
  type ShadowFigures,
  topics,
  type UpdateAssignment,
  type UpdateState,
  type UpdateStatus,
} from '../contract/index.ts';
import type { RolloutDetailView } from '../control-plane/api/routes/rollouts.ts';
import { type CommandHandler, CommandProcessor } from '../device/commands.ts';
import { readDescriptor } from '../inference/descriptor.ts';
import { DESCRIPTOR_FILE, loadModel, resolveModelDir } from '../inference/model-dir.ts';
import { buildBundle } from '../models/bundle/build.ts';
import { DEFAULT_BUNDLE_LIMITS } from '../models/bundle/container.ts';
import { generateSigningKey, loadSigningKey } from '../models/bundle/keys.ts';
import { DEFAULT_GATE } from '../models/index.ts';
import { type HealthSample, type UpdateHost, Updater } from '../ota/updater/index.ts';
import { loadScene } from '../pipelines/scene/load.ts';
import { apiFetch, createAdminTokenInFile, getJson, useToken } from '../test/control-plane/setup.ts';
import { ensureCatalogModels } from '../test/helpers/models.ts';
import { addressOf, simulatedDeviceClient } from './simulated-devices.ts';
import { machine, round } from './stats.ts';

const ROOT = resolve(import.meta.dirname, '..');
const DEVICES = Number(process.env.ARGUS_BENCH_DEVICES ?? 1000);
const PROCESSES = Number(process.env.ARGUS_BENCH_PROCESSES ?? 4);
/** the rollout's waves: a canary of this many devices, then first × factor^i of the target */
const CANARY = Number(process.env.ARGUS_BENCH_CANARY ?? 10);
const RATE = { kind: 'exponential', first: 0.2, factor: 2 } as const;
const HARDWARE_CLASS = 'x86_64-bench';
const MODEL = 'centernet';
const GOAL_S = 180;
const TIMEOUT_S = 600;
/** the device config's defaults (device/config.ts, `ota`) */
const OTA = { progressS: 5, sampleS: 1, retryMaxS: 30 };
const HEALTH = { windowS: 1, minDetectFpsRatio: 0.8, maxDetectLatencyRatio: 1.5, maxDetectorRestarts: 0 };

const log = (line: string) => process.stderr.write(`${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- the devices (child processes) -------------------------------------------------------------

interface ChildSpec {
  devices: { id: string; token: string; address: string }[];
  httpUrl: string;
  mqttUrl: string;
  stateRoot: string;
  keyring: string;
}

type ChildMessage =
  | { type: 'ready'; devices: number }
  | { type: 'baseline'; starts: number[]; ends: number[]; bytes: number; failures: string[] }
  | { type: 'baseline-reported' }
  | { type: 'updater-mode' }
  | { type: 'final'; device: string; state: UpdateState; at: number; reason?: string | undefined }
  | { type: 'stopped'; httpBytesReceived: number; rssMiB: number };

const send = (m: ChildMessage) => process.stdout.write(`${JSON.stringify(m)}\n`);

/**
 * A camera host without cameras: a model swap checks the model directory as the recorded-events
 * host does (descriptor, the ONNX file against its sha256) and a scene is parsed; there is no
 * detector, so no shadow validation and no detector figures (the health window judges ratios only
 * against figures above 0, and counts restarts: none).
 */
class BenchHost implements UpdateHost {
  model: string | undefined;

  async shadowModel(): Promise<ShadowFigures> {
    throw new Error('this simulated box has no cameras: a model cannot be validated in shadow here');
  }
  async swapModel(modelDir: string): Promise<void> {
    const { descriptor } = await loadModel(modelDir);
    this.model = `${descriptor.name} v${descriptor.version}`;
  }
  async applyScene(_cameras: readonly string[], sceneFile: string): Promise<void> {
    await loadScene(sceneFile);
  }
  healthSample(): HealthSample {
    return { detectFps: 0, detectLatencyMs: 0, detectorRestarts: 0, events: 0 };
  }
}

/** a plain GET of `url` with the device's credential from its address: the bytes, read and dropped */
function plainDownload(url: string, token: string, localAddress: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      { headers: { authorization: `Bearer ${token}`, 'accept-encoding': 'identity' }, localAddress },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`${url} answered ${res.statusCode}`));
          return;
        }
        let bytes = 0;
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
        });
        res.once('end', () => resolve(bytes));
        res.once('error', reject);
      },
    );
    req.once('error', reject);
    req.end();
  });
}

async function devicesProcess(spec: ChildSpec): Promise<void> {
  const deviceLog = createLogger('bench-device');
  const http = new URL(spec.httpUrl);
  const mqtt = new URL(spec.mqttUrl);
  const factoryModelDir = resolveModelDir(MODEL);
  const d = await readDescriptor(join(factoryModelDir, DESCRIPTOR_FILE));
  let mode: 'baseline' | 'updater' = 'baseline';

  // what the devices' HTTP sockets received (the artifact bytes and the answers' headers)
  let httpBytes = 0;
  const httpSockets = new Set<Socket>();
  subscribe('net.client.socket', (message) => {
    const socket = (message as { socket: Socket }).socket;
    socket.once('connect', () => {
      if (socket.remotePort !== Number(http.port)) return;
      httpSockets.add(socket);
      socket.once('close', () => {
        httpBytes += socket.bytesRead;
        httpSockets.delete(socket);
      });
    });
  });

  const baseline = { starts: [] as number[], ends: [] as number[], bytes: 0, failures: [] as string[] };
  const reportBaseline = () => {
    if (baseline.ends.length + baseline.failures.length === spec.devices.length)
      send({ type: 'baseline', ...baseline });
  };

  const clients: MqttClient[] = [];
  const updaters: Updater[] = [];
  /** the baseline's assignments, each answered `failed` (downloaded, not installed) once every download ended */
  const baselineAnswers: (() => Promise<void>)[] = [];
  const startDevice = async ({ id, token, address }: ChildSpec['devices'][number]) => {
    const client = simulatedDeviceClient(mqtt, { id, token, address });
    client.on('error', (err) => deviceLog.warn({ device: id, err: err.message }, 'mqtt'));
    const publish = (topic: string, payload: string, retain = false) =>
      void client
        .publishAsync(topic, payload, { qos: 1, retain })
        .catch((err: Error) => deviceLog.warn({ device: id, err: err.message }, 'publish failed'));
    const updater = await Updater.open({
      device: id,
      hardwareClass: HARDWARE_CLASS,
      otaDir: join(spec.stateRoot, id, 'ota'),
      artifactUrl: (artifact) => new URL(httpPaths.artifact(id, artifact), spec.httpUrl).toString(),
      credential: () => token,
      localAddress: address,
      settings: { maxBytesPerS: 0, keyring: spec.keyring, limits: DEFAULT_BUNDLE_LIMITS, ...OTA },
      factory: { modelDir: factoryModelDir, cameras: [] },
      report: (status) => {
        publish(topics.update(id), JSON.stringify(otaValidators.update.parse(status, 'update status')));
        if (['committed', 'failed', 'rolled-back', 'canceled'].includes(status.state))
          send({ type: 'final', device: id, state: status.state, at: Date.now(), reason: status.reason });
      },
      log: deviceLog,
    });
    const host = new BenchHost();
    await updater.start(() => host);
    updaters.push(updater);
    const refuse: CommandHandler = async () => ({
      ok: false,
      message: 'this simulated box takes updates only',
    });
    const handlers: Record<CommandName, CommandHandler> = {
      'reload-config': refuse,
      snapshot: refuse,
      'restart-camera': refuse,
      'rotate-credential': refuse,
      update: (args) => updater.assign(args),
      'update-cancel': (args) => updater.cancel(args),
      'live-start': refuse,
      'live-stop': refuse,
    };
    const commands = new CommandProcessor(
      id,
      handlers,
      (result) => publish(topics.commandResult(id), JSON.stringify(result)),
      deviceLog,
    );
    client.on('message', (topic, payload) => {
      if (mode === 'updater') {
        commands.handle(topic, payload);
        return;
      }
      if (topic !== topics.command(id, 'update')) return;
      const { args } = JSON.parse(payload.toString()) as { args: UpdateAssignment };
      const started = Date.now();
      baselineAnswers.push(async () => {
        const status: UpdateStatus = {
          v: CONTRACT_VERSION,
          id: timeOrderedId(),
          device: id,
          assignment: args.assignment,
          rollout: args.rollout,
          artifact: args.artifact,
          seq: 0,
          state: 'failed',
          at: new Date().toISOString(),
          reason: 'the benchmark baseline: downloaded by a plain HTTP client, not installed',
        };
        await client.publishAsync(topics.update(id), JSON.stringify(status), { qos: 1 });
      });
      plainDownload(
        new URL(httpPaths.artifact(id, args.artifact.id), spec.httpUrl).toString(),
        token,
        address,
      )
        .then((bytes) => {
          baseline.starts.push(started);
          baseline.ends.push(Date.now());
          baseline.bytes += bytes;
        })
        .catch((err: Error) => baseline.failures.push(`${id}: ${err.message}`))
        .finally(reportBaseline);
    });
    if (!client.connected)
      await new Promise<void>((resolve, reject) => {
        client.once('connect', () => resolve());
        client.once('error', reject);
      });
    await client.subscribeAsync(topics.commandFilter(id), { qos: 1 });
    const identity: Identity = {
      v: CONTRACT_VERSION,
      device: id,
      hardwareClass: HARDWARE_CLASS,
      executionProviders: ['cpu'],
      software: { version: 'bench', node: process.version },
      models: [{ name: d.name, version: d.version, sha256: d.sha256 }],
      cameras: [],
      startedAt: new Date().toISOString(),
    };
    publish(topics.identity(id), JSON.stringify(identity), true);
    publish(
      topics.available(id),
      JSON.stringify({ v: CONTRACT_VERSION, state: 'online', at: new Date().toISOString() }),
      true,
    );
    clients.push(client);
  };
  for (let i = 0; i < spec.devices.length; i += 25)
    await Promise.all(spec.devices.slice(i, i + 25).map(startDevice));
  send({ type: 'ready', devices: clients.length });

  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'baseline-end') {
      await Promise.all(baselineAnswers.map((answer) => answer()));
      send({ type: 'baseline-reported' });
    }
    if (line === 'updater') {
      mode = 'updater';
      send({ type: 'updater-mode' });
    }
    if (line === 'stop') break;
  }
  await Promise.all(updaters.map((u) => u.stop()));
  await Promise.all(clients.map((c) => c.endAsync()));
  for (const s of httpSockets) httpBytes += s.bytesRead;
  send({ type: 'stopped', httpBytesReceived: httpBytes, rssMiB: process.memoryUsage.rss() / 2 ** 20 });
  process.exit(0);
}

// ---- the bench (parent) ------------------------------------------------------------------------

interface Child {
  child: ChildProcess;
  messages: ChildMessage[];
  stderrTail: string;
}

function spawnChild(spec: ChildSpec): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/rollout.ts'), '--devices'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, ARGUS_LOG_LEVEL: 'warn', ARGUS_BENCH_CHILD: JSON.stringify(spec) },
  });
  const out: Child = { child, messages: [], stderrTail: '' };
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (line.startsWith('{')) out.messages.push(JSON.parse(line) as ChildMessage);
  });
  child.stderr!.on('data', (b: Buffer) => {
    out.stderrTail = (out.stderrTail + b.toString()).slice(-4000);
  });
  return out;
}

async function waitFor<T>(check: () => T | undefined | Promise<T | undefined>, ms: number, what: string) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
    await sleep(100);
  }
}

function procStatus(pid: number): { rssMiB: number; hwmMiB: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
    return { rssMiB: kib('VmRSS') / 1024, hwmMiB: kib('VmHWM') / 1024 };
  } catch {
    return { rssMiB: 0, hwmMiB: 0 };
  }
}

function procCpuS(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(stat[11]) + Number(stat[12])) / 100;
}

/** a free tmpfs for the devices' state when it holds twice the bytes the fleet writes there */
function stateDirBase(bundleBytes: number): { base: string; kind: string } {
  if (process.env.ARGUS_BENCH_STATE_DIR) return { base: process.env.ARGUS_BENCH_STATE_DIR, kind: 'as set' };
  try {
    const s = statfsSync('/dev/shm');
    if (s.bavail * s.bsize > 2 * DEVICES * bundleBytes) return { base: '/dev/shm', kind: 'tmpfs' };
  } catch {
    // no /dev/shm
  }
  return { base: tmpdir(), kind: 'disk' };
}

type RolloutDetail = Type.Static<typeof RolloutDetailView>;

async function createRollout(httpUrl: string, body: unknown): Promise<RolloutDetail> {
  // the devices' identities are stored as ingest takes them: retry until every one is there
  return waitFor(
    async () => {
      const res = await apiFetch(`${httpUrl}/api/v1/rollouts`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      if (res.status === 201) return (await res.json()) as RolloutDetail;
      const text = await res.text();
      if (res.status !== 400) throw new Error(`POST /api/v1/rollouts: ${res.status} ${text}`);
      return undefined;
    },
    60_000,
    'the control plane to take the rollout (every identity stored)',
  );
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'argus-bench-rollout-'));
  let stateRoot: string | undefined;
  let cp: ChildProcess | undefined;
  const children: Child[] = [];
  const cleanUp = async () => {
    for (const c of children) if (c.child.exitCode === null) c.child.kill('SIGKILL');
    if (cp && cp.exitCode === null) {
      const exited = new Promise((r) => cp!.once('exit', r));
      cp.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000)]);
      if (cp.exitCode === null) cp.kill('SIGKILL');
    }
    if (stateRoot) await rm(stateRoot, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  };
  // interrupted: the processes it started stop and the devices' state (gigabytes on tmpfs) goes
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.once(signal, () => void cleanUp().finally(() => process.exit(130)));
  try {
    await ensureCatalogModels();
    await generateSigningKey('bench-rollout', join(dir, 'keys'));
    const key = await loadSigningKey('bench-rollout', join(dir, 'keys'));
    const keyring = join(dir, 'keys', 'trusted');
    const factory = await readDescriptor(join(resolveModelDir(MODEL), DESCRIPTOR_FILE));
    const bundleFile = join(dir, `${MODEL}.bundle`);
    const version = factory.version + 1;
    await buildBundle({
      modelDir: resolveModelDir(MODEL),
      out: bundleFile,
      version,
      evaluations: [],
      gate: DEFAULT_GATE,
      targets: [{ executionProvider: 'cpu', hardwareClass: HARDWARE_CLASS }],
      expiresInDays: 30,
      signWith: key,
    });
    const bundle = await readFile(bundleFile);
    const state = stateDirBase(bundle.length);
    stateRoot = await mkdtemp(join(state.base, 'argus-bench-rollout-devices-'));

    const devices = Array.from({ length: DEVICES }, (_, i) => ({
      id: `sim-${String(i).padStart(4, '0')}`,
      token: randomBytes(16).toString('hex'),
      address: addressOf(i),
    }));
    const configFile = join(dir, 'control-plane.yaml');
    await writeFile(
      configFile,
      `http: { port: 0 }\nmqtt:\n  embedded: { port: 0 }\nstorage:\n  sqlite: { path: cp.db }\n` +
        `artifacts: { keyring: ${keyring} }\ndevices:\n${devices.map((d) => `  - { id: ${d.id}, token: ${d.token} }\n`).join('')}`,
    );
    const token = await createAdminTokenInFile(join(dir, 'cp.db'));
    cp = spawn(
      process.execPath,
      [join(ROOT, 'bin/argus.mjs'), 'control-plane', 'run', '--config', configFile],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: { ...process.env, ARGUS_LOG_LEVEL: 'info' },
      },
    );
    let cpLog = '';
    cp.stderr!.on('data', (b: Buffer) => {
      cpLog = (cpLog + b.toString()).slice(-20_000);
    });
    const urls = await waitFor(
      () => {
        if (cp!.exitCode !== null) throw new Error(`the control plane exited: ${cpLog}`);
        return /"http":"(http:[^"]+)","mqtt":"([^"]+)"/.exec(cpLog) ?? undefined;
      },
      120_000,
      'the control plane',
    );
    const httpUrl = urls[1]!;
    const mqttUrl = urls[2]!;
    useToken(httpUrl, token);
    const cpPid = cp.pid!;
    let peakSampledMiB = 0;
    const sampler = setInterval(() => {
      peakSampledMiB = Math.max(peakSampledMiB, procStatus(cpPid).rssMiB);
    }, 100);
    const idleRss = procStatus(cpPid).rssMiB;

    const published = await apiFetch(`${httpUrl}/api/v1/artifacts`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: bundle,
    });
    if (published.status !== 201) throw new Error(`publish: ${published.status} ${await published.text()}`);
    log(
      `bench:rollout — ${DEVICES} devices in ${PROCESSES} processes, ${MODEL} v${version} bundle of ${bundle.length} bytes, device state on ${state.kind} (${stateRoot})`,
    );

    const t0 = Date.now();
    // a wave takes devices in target order: dealt round-robin, each wave spreads over every process
    for (let p = 0; p < PROCESSES; p++)
      children.push(
        spawnChild({
          devices: devices.filter((_, i) => i % PROCESSES === p),
          httpUrl,
          mqttUrl,
          stateRoot,
          keyring,
        }),
      );
    const allOf = <T extends ChildMessage['type']>(type: T) =>
      children.map((c) => c.messages.find((m) => m.type === type) as Extract<ChildMessage, { type: T }>);
    const childrenAlive = () => {
      for (const c of children)
        if (c.child.exitCode !== null && !c.messages.some((m) => m.type === 'stopped'))
          throw new Error(`a device process exited (${c.child.exitCode}): ${c.stderrTail}`);
    };
    await waitFor(
      () => {
        childrenAlive();
        return allOf('ready').every(Boolean) ? true : undefined;
      },
      // not measured; on a loaded machine a thousand connections and updater starts take minutes
      900_000,
      'the devices to connect',
    ).catch((err: Error) => {
      throw new Error(
        `${err.message}; device processes said: ${children.map((c) => c.stderrTail).join('\n')}`,
      );
    });
    log(`  ${DEVICES} devices connected in ${round((Date.now() - t0) / 1000, 1)} s`);

    const artifact = { kind: 'model', name: MODEL, version };
    const target = { devices: devices.map((d) => d.id) };
    const devicesCpuS = () => children.reduce((sum, c) => sum + procCpuS(c.child.pid!), 0);
    const rawCpuBefore = { devices: devicesCpuS(), cp: procCpuS(cpPid) };
    const base = await createRollout(httpUrl, {
      name: 'bench baseline: plain downloads',
      artifact,
      target,
      waves: { rate: { kind: 'constant', share: 1 } },
      deviceTimeoutS: TIMEOUT_S,
      health: HEALTH,
    });
    const baseline = await waitFor(
      () => {
        childrenAlive();
        const all = allOf('baseline');
        return all.every(Boolean) ? all : undefined;
      },
      TIMEOUT_S * 1000,
      'the plain downloads',
    );
    const rawStart = Math.min(...baseline.flatMap((b) => b.starts));
    const rawEnd = Math.max(...baseline.flatMap((b) => b.ends));
    const rawS = (rawEnd - rawStart) / 1000;
    const rawBytes = baseline.reduce((s, b) => s + b.bytes, 0);
    const rawFailures = baseline.flatMap((b) => b.failures);
    const rawCpu = { devices: devicesCpuS() - rawCpuBefore.devices, cp: procCpuS(cpPid) - rawCpuBefore.cp };
    const baselinePeak = peakSampledMiB;
    if (rawFailures.length > 0) log(`  plain downloads that failed: ${rawFailures.slice(0, 5).join(' | ')}`);
    log(
      `  baseline: ${DEVICES - rawFailures.length} plain downloads, ${round(rawBytes / 2 ** 30, 2)} GiB in ${round(rawS, 2)} s (${round(rawBytes / 2 ** 20 / rawS)} MiB/s), control plane RSS peak ${round(baselinePeak)} MiB`,
    );
    // each device answers the baseline's assignment `failed` (not installed): its wave fails and
    // the rollout pauses, then it is canceled; no assignment stays active
    for (const c of children) c.child.stdin!.write('baseline-end\n');
    await waitFor(
      async () => {
        const d = await getJson<RolloutDetail>(`${httpUrl}/api/v1/rollouts/${base.id}`);
        return (d.counts.failed ?? 0) === DEVICES ? d : undefined;
      },
      120_000,
      'the baseline assignments to end',
    );
    const canceled = await apiFetch(`${httpUrl}/api/v1/rollouts/${base.id}/cancel`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ rollback: false }),
    });
    if (canceled.status !== 200) throw new Error(`cancel: ${canceled.status} ${await canceled.text()}`);
    // every device process hands its commands to the updater before the rollout can send one: an
    // assignment arriving before that would be taken for a baseline one and never answered
    for (const c of children) c.child.stdin!.write('updater\n');
    await waitFor(
      () => (allOf('updater-mode').every(Boolean) ? true : undefined),
      60_000,
      'the device processes to switch to their updaters',
    );

    peakSampledMiB = 0;
    const cpuBefore = procCpuS(cpPid);
    const devicesCpuBefore = devicesCpuS();
    const started = Date.now();
    const rollout = await createRollout(httpUrl, {
      name: 'bench rollout',
      artifact,
      target,
      waves: { canary: { devices: CANARY }, rate: RATE },
      success: { share: 1, healthS: 0 },
      error: { share: 0.2 },
      onError: 'pause',
      deviceTimeoutS: TIMEOUT_S,
      shadow: false,
      health: HEALTH,
    });
    let detail = rollout;
    let allCommittedS: number | undefined;
    /** from the request to the moment the bench first saw no canary assignment `pending` */
    let canarySentS: number | undefined;
    let lastLog = 0;
    while (Date.now() - started < TIMEOUT_S * 1000) {
      childrenAlive();
      detail = await getJson<RolloutDetail>(`${httpUrl}/api/v1/rollouts/${rollout.id}`);
      if (canarySentS === undefined && detail.waves[0] && (detail.waves[0].counts.pending ?? 0) === 0)
        canarySentS = (Date.now() - started) / 1000;
      if (allCommittedS === undefined && (detail.counts.committed ?? 0) === DEVICES)
        allCommittedS = (Date.now() - started) / 1000;
      if (Date.now() - lastLog > 5000) {
        lastLog = Date.now();
        log(
          `  ${round((Date.now() - started) / 1000, 1)} s: wave ${detail.waves.findIndex((w) => w.state === 'running' || w.state === 'pending')} ${JSON.stringify(detail.counts)}`,
        );
      }
      if (detail.state !== 'running') break;
      await sleep(200);
    }
    const endedS = (Date.now() - started) / 1000;
    const rolloutCpuS = procCpuS(cpPid) - cpuBefore;
    const rolloutDevicesCpuS = devicesCpuS() - devicesCpuBefore;
    const rolloutPeak = peakSampledMiB;
    const finals = children.flatMap((c) => c.messages.filter((m) => m.type === 'final')) as Extract<
      ChildMessage,
      { type: 'final' }
    >[];
    const lastCommitAt = Math.max(...finals.filter((f) => f.state === 'committed').map((f) => f.at));
    const metrics = await (await apiFetch(`${httpUrl}/metrics`)).text();
    const limited = [...metrics.matchAll(/^argus_http_limited_total\{limit="([^"]+)"\} (\d+)$/gm)]
      .filter((m) => Number(m[2]) > 0)
      .map((m) => `${m[1]}=${m[2]}`);

    for (const c of children) c.child.stdin!.write('stop\n');
    const stopped = await waitFor(
      () => {
        const all = allOf('stopped');
        return all.every(Boolean) ? all : undefined;
      },
      60_000,
      'the device processes to stop',
    );
    clearInterval(sampler);
    const cpPeak = procStatus(cpPid).hwmMiB;
    const httpBytes = stopped.reduce((s, m) => s + m.httpBytesReceived, 0);
    const rolloutS = allCommittedS ?? endedS;
    const ratio = rolloutS / rawS;

    const waves = detail.waves.map((w) => ({
      size: w.size,
      state: w.state,
      s: w.startedAt && w.endedAt ? round((Date.parse(w.endedAt) - Date.parse(w.startedAt)) / 1000, 2) : null,
      counts: w.counts,
    }));
    log(
      `  rollout: ${detail.state}, ${JSON.stringify(detail.counts)} in ${round(rolloutS, 2)} s (${round(ratio, 2)} × raw); waves ${waves.map((w) => `${w.size}:${w.s}s`).join(' ')}`,
    );
    log(
      `  control plane: peak RSS ${round(cpPeak)} MiB (idle ${round(idleRss)}), ${round((rolloutCpuS / endedS) * 100)} % CPU during the rollout`,
    );
    if (detail.failures.length > 0)
      log(
        `  failures: ${detail.failures
          .slice(0, 5)
          .map((f) => `${f.device} ${f.state}: ${f.reason}`)
          .join(' | ')}`,
      );

    const summary = {
      bench: 'rollout',
      machine: machine(),
      load1_at_start: loadAtStart,
      devices: DEVICES,
      device_processes: PROCESSES,
      device_state_dirs: state.kind,
      bundle_bytes: bundle.length,
      rollout_state: detail.state,
      // null: not every device committed within the bench's timeout (rollout_elapsed_s says how long it ran)
      rollout_1000_s: allCommittedS === undefined ? null : round(allCommittedS, 2),
      rollout_elapsed_s: round(endedS, 2),
      rollout_goal_s: GOAL_S,
      raw_transfer_s: round(rawS, 2),
      raw_transfer_mib_per_s: round(rawBytes / 2 ** 20 / rawS),
      raw_concurrency: DEVICES,
      raw_failures: rawFailures.length,
      rollout_over_raw_transfer: allCommittedS === undefined ? null : round(ratio, 3),
      canary_sent_s: canarySentS === undefined ? null : round(canarySentS, 2),
      last_device_commit_s: round((lastCommitAt - started) / 1000, 2),
      control_plane_peak_rss_mib: round(cpPeak, 1),
      control_plane_rollout_peak_rss_mib: round(rolloutPeak, 1),
      control_plane_baseline_peak_rss_mib: round(baselinePeak, 1),
      control_plane_idle_rss_mib: round(idleRss, 1),
      control_plane_rollout_cpu_percent: round((rolloutCpuS / endedS) * 100, 1),
      // CPU time (user + system), which the wall-clock figures above spread over two shared cores:
      // the devices' per device, the control plane's in all, in the plain downloads and in the rollout
      device_cpu_ms_per_device_raw: round((rawCpu.devices / DEVICES) * 1000, 1),
      device_cpu_ms_per_device_rollout: round((rolloutDevicesCpuS / DEVICES) * 1000, 1),
      control_plane_cpu_s_raw: round(rawCpu.cp, 1),
      control_plane_cpu_s_rollout: round(rolloutCpuS, 1),
      waves,
      counts: detail.counts,
      failures: detail.failures.length,
      bytes_served_baseline: rawBytes,
      bytes_received_by_devices_http: httpBytes - rawBytes,
      http_limited: limited,
      device_process_rss_mib: stopped.map((m) => round(m.rssMiB)),
      limits: 'as shipped: each device connects from its own loopback address',
      rollout_engine_tick_s: 2,
      health_window_s: HEALTH.windowS,
    };
    console.log(JSON.stringify(summary));
  } finally {
    await cleanUp();
  }
}

const loadAtStart = Number((await readFile('/proc/loadavg', 'utf8')).split(' ')[0]);
if (process.argv[2] === '--devices')
  await devicesProcess(JSON.parse(process.env.ARGUS_BENCH_CHILD!) as ChildSpec);
else await main();
