/**
 * npm run bench:ingest — MQTT ingest throughput and latency of the control plane.
 *
 * 1. raw broker: N QoS 1 event messages published to a private Mosquitto and received by a plain
 *    mqtt.js QoS 1 subscriber in its own process (publish → subscribe rate);
 * 2. the same N messages through the same Mosquitto into `argus control-plane run` (its own
 *    process, external broker, PUBACK after commit) storing into SQLite, then into PostgreSQL (a
 *    private server started here, fsync on): publish → stored rate, from the control plane's
 *    /metrics. Raw, SQLite and PostgreSQL runs alternate for five rounds, each control plane
 *    on a fresh database; the rates are the medians, the ratios the medians of each round's own;
 * 3. publish → queryable latency: messages at a steady rate into the SQLite control plane, each
 *    timed until its event arrives on the live stream (sent after the commit);
 * 4. 2,000 simulated devices (mqtt.js clients, MQTT v5, Last Will, retained availability,
 *    telemetry heartbeats) on the control plane's embedded broker: its RSS and CPU.
 *
 * The last line is one JSON object with every figure.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connect, type MqttClient } from 'mqtt';
import { ingestWildcard, topics } from '../contract/index.ts';
import { loadControlPlaneConfig, openRepository } from '../control-plane/index.ts';
import { apiFetch, createAdminToken, useToken } from '../test/control-plane/setup.ts';
import { MosquittoBroker } from '../test/helpers/mosquitto-broker.ts';
import { PostgresServer } from '../test/helpers/postgres.ts';
import { telemetry } from '../test/helpers/telemetry.ts';
import { eventPayload } from './simulated-devices.ts';
import { machine, percentile, round } from './stats.ts';

const ROOT = resolve(import.meta.dirname, '..');
const MESSAGES = Number(process.env.ARGUS_BENCH_MESSAGES ?? 100_000);
/** when set, each control plane writes a V8 CPU profile of its main thread there (`<run>.cpuprofile`) */
const PROFILE_DIR = process.env.ARGUS_BENCH_PROFILE_DIR;
/**
 * rounds of raw, SQLite and PostgreSQL rates, back to back; the rates are their medians, the ratios
 * the medians of each round's own ratios (the raw rate moves by ±15 % between rounds here)
 */
const ROUNDS = 5;
const LATENCY_RATE = 1000;
const LATENCY_SECONDS = 5;
const DEVICES = 2000;
const HEARTBEAT_S = 5;
const SAMPLE_S = 15;
/** the broker's window of unacknowledged QoS 1 messages per client */
const INFLIGHT = 5000;

const log = (line: string) => process.stderr.write(`${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function client(url: string, options: Parameters<typeof connect>[1] = {}): Promise<MqttClient> {
  const c = connect(url, { protocolVersion: 5, reconnectPeriod: 1000, ...options });
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve());
    c.once('error', reject);
  });
  return c;
}

/** publishes `payloads` with QoS 1, at most `window` awaiting their PUBACK */
async function publishAll(c: MqttClient, topic: string, payloads: string[], window = 500): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < payloads.length) {
      const p = payloads[next++]!;
      await c.publishAsync(topic, p, { qos: 1 });
    }
  };
  await Promise.all(Array.from({ length: window }, worker));
}

/** child mode: a plain QoS 1 subscriber that prints the time of its N-th message */
async function rawSubscriber(url: string, n: number): Promise<void> {
  const c = await client(url, { clientId: `bench-raw-${randomUUID().slice(0, 8)}` });
  await c.subscribeAsync(ingestWildcard(), { qos: 1 });
  let received = 0;
  c.on('message', () => {
    if (++received === n) {
      process.stdout.write(`${Date.now()}\n`);
      void c.endAsync().then(() => process.exit(0));
    }
  });
  process.stdout.write('ready\n');
}

interface Child {
  child: ChildProcess;
  stdout: string;
  stderr: string;
}

function spawnNode(args: string[]): Child {
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ARGUS_LOG_LEVEL: 'info', UV_THREADPOOL_SIZE: '16' },
  });
  const out: Child = { child, stdout: '', stderr: '' };
  child.stdout!.on('data', (d: Buffer) => {
    out.stdout += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    out.stderr += d.toString();
  });
  return out;
}

async function waitFor<T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

async function rawRate(brokerUrl: string): Promise<number> {
  const sub = spawnNode([
    '--import',
    'tsx',
    join(ROOT, 'bench/ingest.ts'),
    '--raw-subscriber',
    brokerUrl,
    String(MESSAGES),
  ]);
  await waitFor(() => (sub.stdout.includes('ready') ? true : undefined), 20_000, 'the raw subscriber');
  const pub = await client(brokerUrl);
  const payloads = Array.from({ length: MESSAGES }, (_, i) => JSON.stringify(eventPayload('raw-box', i)));
  const t0 = Date.now();
  await publishAll(pub, topics.events('raw-box'), payloads);
  const done = await waitFor(
    () => /^(\d{13})$/m.exec(sub.stdout)?.[1],
    60_000,
    'the raw subscriber to finish',
  );
  await pub.endAsync();
  return MESSAGES / ((Number(done) - t0) / 1000);
}

interface RunningControlPlane extends Child {
  httpUrl: string;
  mqttUrl: string;
}

async function startControlPlane(dir: string, name: string, yaml: string): Promise<RunningControlPlane> {
  const file = join(dir, `${name}.yaml`);
  await writeFile(file, yaml);
  // an admin API token in its database, for /metrics and the live stream
  const repo = await openRepository((await loadControlPlaneConfig(file)).storage);
  const token = await createAdminToken(repo.sql).finally(() => repo.close());
  const profile = PROFILE_DIR
    ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`, `--cpu-prof-name=${name}.cpuprofile`]
    : [];
  const cp = spawnNode([...profile, join(ROOT, 'bin/argus.mjs'), 'control-plane', 'run', '--config', file]);
  const m = await waitFor(
    () => {
      if (cp.child.exitCode !== null) throw new Error(`control plane ${name} exited: ${cp.stderr}`);
      return /"http":"(http:[^"]+)","mqtt":"([^"]+)"/.exec(cp.stderr) ?? undefined;
    },
    30_000,
    `control plane ${name}`,
  );
  useToken(m[1]!, token);
  return { ...cp, httpUrl: m[1]!, mqttUrl: m[2]! };
}

/**
 * Stops a control plane; with an external broker also ends its persistent session, which would
 * otherwise keep queueing the next runs' messages in the broker.
 */
async function stopControlPlane(
  cp: RunningControlPlane,
  brokerUrl?: string,
  clientId?: string,
): Promise<void> {
  if (cp.child.exitCode === null && cp.child.signalCode === null) {
    const exited = new Promise((r) => cp.child.once('exit', r));
    cp.child.kill('SIGTERM');
    await exited;
  }
  if (brokerUrl && clientId) await (await client(brokerUrl, { clientId, clean: true })).endAsync();
}

async function storedEvents(httpUrl: string): Promise<number> {
  const text = await (await apiFetch(`${httpUrl}/metrics`)).text();
  return Number(/^argus_ingest_messages_total\{kind="event"\} (\d+)$/m.exec(text)?.[1] ?? 0);
}

async function ingestRate(
  brokerUrl: string,
  cp: RunningControlPlane,
  device: string,
): Promise<{ perS: number; cpuPercent: number }> {
  const pub = await client(brokerUrl);
  const payloads = Array.from({ length: MESSAGES }, (_, i) => JSON.stringify(eventPayload(device, i)));
  const before = await processUsage(cp.child.pid!);
  const t0 = Date.now();
  await publishAll(pub, topics.events(device), payloads);
  let stored = 0;
  while (stored < MESSAGES) {
    stored = await storedEvents(cp.httpUrl);
    if (Date.now() - t0 > 120_000) throw new Error(`only ${stored} of ${MESSAGES} stored after 120 s`);
    if (stored < MESSAGES) await sleep(5);
  }
  const elapsed = (Date.now() - t0) / 1000;
  const after = await processUsage(cp.child.pid!);
  await pub.endAsync();
  return { perS: MESSAGES / elapsed, cpuPercent: ((after.cpuS - before.cpuS) / elapsed) * 100 };
}

/** publish → the event on the live stream (sent after its transaction committed), per message */
async function latencies(brokerUrl: string, cp: RunningControlPlane): Promise<number[]> {
  const sent = new Map<string, number>();
  const out: number[] = [];
  const abort = new AbortController();
  const res = await apiFetch(`${cp.httpUrl}/api/v1/events/stream?device=lat-box`, { signal: abort.signal });
  const reader = res.body!.getReader();
  const reading = (async () => {
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done) return;
      buffer += Buffer.from(value!).toString();
      let end = buffer.indexOf('\n\n');
      while (end >= 0) {
        const data = /data: (.*)/.exec(buffer.slice(0, end))?.[1];
        buffer = buffer.slice(end + 2);
        if (data) {
          const id = (JSON.parse(data) as { event: { id: string } }).event.id;
          const t = sent.get(id);
          if (t !== undefined) out.push(performance.now() - t);
        }
        end = buffer.indexOf('\n\n');
      }
    }
  })();
  const pub = await client(brokerUrl);
  const total = LATENCY_RATE * LATENCY_SECONDS;
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / LATENCY_RATE;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    const m = eventPayload('lat-box', i);
    sent.set(m.id, performance.now());
    void pub.publishAsync(topics.events('lat-box'), JSON.stringify(m), { qos: 1 });
  }
  await waitFor(() => (out.length >= total ? true : undefined), 30_000, 'every latency sample');
  abort.abort();
  await reading;
  await pub.endAsync();
  return out;
}

async function processUsage(pid: number): Promise<{ rssMiB: number; cpuS: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rssKiB = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  const ticks = Number(stat[11]) + Number(stat[12]);
  return { rssMiB: rssKiB / 1024, cpuS: ticks / 100 };
}

/** 2,000 devices with Last Will, retained availability and heartbeats on the embedded broker */
async function fleet(
  cp: RunningControlPlane,
): Promise<{ rssIdleMiB: number; rssMiB: number; cpuPercent: number; online: number }> {
  const pid = cp.child.pid!;
  const idle = await processUsage(pid);
  const devices: MqttClient[] = [];
  for (let i = 0; i < DEVICES; i += 100) {
    devices.push(
      ...(await Promise.all(
        Array.from({ length: Math.min(100, DEVICES - i) }, async (_, k) => {
          const id = `sim-${String(i + k).padStart(4, '0')}`;
          const c = await client(cp.mqttUrl, {
            clientId: `argus-${id}`,
            clean: false,
            keepalive: 60,
            properties: { sessionExpiryInterval: 3600 },
            will: {
              topic: topics.available(id),
              payload: Buffer.from(JSON.stringify({ v: 1, state: 'offline' })),
              qos: 1,
              retain: true,
            },
          });
          await c.publishAsync(
            topics.available(id),
            JSON.stringify({ v: 1, state: 'online', at: new Date().toISOString() }),
            {
              qos: 1,
              retain: true,
            },
          );
          return c;
        }),
      )),
    );
  }
  log(`  ${devices.length} devices connected`);
  const timers = devices.map((c, i) => {
    const id = `sim-${String(i).padStart(4, '0')}`;
    const beat = () =>
      void c.publishAsync(topics.telemetry(id), JSON.stringify(telemetry(id, Date.now())), { qos: 1 });
    const start = setTimeout(
      () => {
        beat();
        timers[i] = setInterval(beat, HEARTBEAT_S * 1000);
      },
      (i / devices.length) * HEARTBEAT_S * 1000,
    );
    return start;
  });
  await sleep(HEARTBEAT_S * 1000);
  const a = await processUsage(pid);
  const t0 = performance.now();
  await sleep(SAMPLE_S * 1000);
  const b = await processUsage(pid);
  const seconds = (performance.now() - t0) / 1000;
  const online = Number(
    /^argus_devices_online (\d+)$/m.exec(await (await apiFetch(`${cp.httpUrl}/metrics`)).text())?.[1] ?? 0,
  );
  for (const t of timers) clearTimeout(t);
  await Promise.all(devices.map((c) => c.endAsync(true)));
  return {
    rssIdleMiB: idle.rssMiB,
    rssMiB: b.rssMiB,
    cpuPercent: ((b.cpuS - a.cpuS) / seconds) * 100,
    online,
  };
}

/**
 * The control plane acknowledges a message only once it is stored, so the broker's window of
 * unacknowledged messages per subscriber bounds its rate; `mqtt.external.receiveMaximum` in
 * control-plane/config.ts asks for a matching `max_inflight_messages` on a broker that feeds the
 * control plane. The test helper's broker has 100: restart it with the documented setting.
 */
async function raiseInflightWindow(broker: MosquittoBroker, dir: string): Promise<void> {
  const file = join(dir, 'mosquitto.conf');
  await broker.stop();
  await writeFile(
    file,
    (await readFile(file, 'utf8')).replace(
      /^max_inflight_messages \d+$/m,
      `max_inflight_messages ${INFLIGHT}`,
    ),
  );
  await broker.start();
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'argus-bench-ingest-'));
  let mosquitto: MosquittoBroker | undefined;
  let pg: PostgresServer | undefined;
  const running: RunningControlPlane[] = [];
  try {
    mosquitto = await MosquittoBroker.create({ dir: join(dir, 'mosquitto') });
    await raiseInflightWindow(mosquitto, join(dir, 'mosquitto'));
    pg = await PostgresServer.start();
    log(`bench:ingest — ${MESSAGES} QoS 1 event messages per run, Mosquitto ${mosquitto.url}`);

    // one simulated device sends every message of a run: its rate is not limited here (a fleet's
    // devices each stay far below ingest.deviceRate)
    const external = (clientId: string) =>
      `http: { port: 0 }\nmqtt:\n  external: { url: "${mosquitto!.url}", clientId: ${clientId} }\n` +
      'ingest: { deviceRate: { messagesPerSecond: 1000000, burst: 10000000 } }\n';
    const rates = { raw: [] as number[], sqlite: [] as number[], postgres: [] as number[] };
    const cpu = { sqlite: [] as number[], postgres: [] as number[] };
    for (let r = 1; r <= ROUNDS; r++) {
      rates.raw.push(await rawRate(mosquitto.url));
      const sqliteCp = await startControlPlane(
        dir,
        `sqlite-${r}`,
        `${external(`bench-sqlite-${r}`)}storage:\n  sqlite: { path: bench-${r}.db }\n`,
      );
      running.push(sqliteCp);
      const s = await ingestRate(mosquitto.url, sqliteCp, 'sqlite-box');
      rates.sqlite.push(s.perS);
      cpu.sqlite.push(s.cpuPercent);
      await stopControlPlane(sqliteCp, mosquitto.url, `bench-sqlite-${r}`);
      const pgCp = await startControlPlane(
        dir,
        `postgres-${r}`,
        `${external(`bench-postgres-${r}`)}storage:\n  postgres: { url: "${await pg.createDatabase(`argus_bench_${r}`)}" }\n`,
      );
      running.push(pgCp);
      const p = await ingestRate(mosquitto.url, pgCp, 'pg-box');
      rates.postgres.push(p.perS);
      cpu.postgres.push(p.cpuPercent);
      await stopControlPlane(pgCp, mosquitto.url, `bench-postgres-${r}`);
      log(
        `  round ${r}: raw ${Math.round(rates.raw.at(-1)!)} msg/s, SQLite ${Math.round(s.perS)} msg/s (control plane CPU ${Math.round(s.cpuPercent)} %), PostgreSQL ${Math.round(p.perS)} msg/s (CPU ${Math.round(p.cpuPercent)} %)`,
      );
    }
    const raw = percentile(rates.raw, 50);
    const sqlite = percentile(rates.sqlite, 50);
    const postgres = percentile(rates.postgres, 50);
    const overRaw = (series: number[]) =>
      percentile(
        series.map((v, i) => v / rates.raw[i]!),
        50,
      );
    const sqliteOverRaw = overRaw(rates.sqlite);
    const postgresOverRaw = overRaw(rates.postgres);
    const sqliteCpu = percentile(cpu.sqlite, 50);
    const postgresCpu = percentile(cpu.postgres, 50);
    log(
      `  medians: raw ${Math.round(raw)}, SQLite ${Math.round(sqlite)}, PostgreSQL ${Math.round(postgres)} msg/s; of raw (median of the rounds' ratios): SQLite ${round(sqliteOverRaw, 3)}, PostgreSQL ${round(postgresOverRaw, 3)}`,
    );

    const latencyCp = await startControlPlane(
      dir,
      'latency',
      `${external('bench-latency')}storage:\n  sqlite: { path: latency.db }\n`,
    );
    running.push(latencyCp);
    const lat = await latencies(mosquitto.url, latencyCp);
    log(
      `  publish → queryable at ${LATENCY_RATE} msg/s: p50 ${round(percentile(lat, 50), 1)} ms, p99 ${round(percentile(lat, 99), 1)} ms`,
    );
    await stopControlPlane(latencyCp, mosquitto.url, 'bench-latency');

    const embeddedCp = await startControlPlane(
      dir,
      'fleet',
      `http: { port: 0 }\nmqtt:\n  embedded: { port: 0 }\nstorage:\n  sqlite: { path: fleet.db }\n`,
    );
    running.push(embeddedCp);
    const f = await fleet(embeddedCp);
    log(
      `  ${DEVICES} devices: RSS ${round(f.rssMiB, 1)} MiB (idle ${round(f.rssIdleMiB, 1)}), CPU ${round(f.cpuPercent, 1)} %, online ${f.online}`,
    );
    await stopControlPlane(embeddedCp);

    const summary = {
      bench: 'ingest',
      machine: machine(),
      messages: MESSAGES,
      rounds: ROUNDS,
      raw_rounds_per_s: rates.raw.map(Math.round),
      sqlite_rounds_per_s: rates.sqlite.map(Math.round),
      postgres_rounds_per_s: rates.postgres.map(Math.round),
      raw_broker_per_s: Math.round(raw),
      sqlite_per_s: Math.round(sqlite),
      postgres_per_s: Math.round(postgres),
      sqlite_over_raw: round(sqliteOverRaw, 3),
      postgres_over_raw: round(postgresOverRaw, 3),
      sqlite_ingest_cpu_percent: Math.round(sqliteCpu),
      postgres_ingest_cpu_percent: Math.round(postgresCpu),
      p50_publish_to_queryable_ms: round(percentile(lat, 50), 1),
      p99_publish_to_queryable_ms: round(percentile(lat, 99), 1),
      latency_rate_per_s: LATENCY_RATE,
      devices: DEVICES,
      devices_online: f.online,
      devices_2000_rss_mib: round(f.rssMiB, 1),
      idle_rss_mib: round(f.rssIdleMiB, 1),
      devices_2000_cpu_percent: round(f.cpuPercent, 1),
      heartbeat_s: HEARTBEAT_S,
    };
    console.log(JSON.stringify(summary));
  } finally {
    for (const cp of running) if (cp.child.exitCode === null) cp.child.kill('SIGKILL');
    await mosquitto?.stop();
    await pg?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--raw-subscriber') await rawSubscriber(process.argv[3]!, Number(process.argv[4]));
else await main();
