/**
 * npm run bench:console — the operations console under a fleet's load, in real Chromium.
 *
 * The control plane runs as `argus control-plane run` in its own process (SQLite, embedded
 * broker). 1,000 simulated devices live in one child process: each with its own credential, its
 * own MQTT connection from its own loopback address (bench/simulated-devices.ts), its identity and
 * availability retained, a telemetry heartbeat, and together they publish 200 events/s (QoS 1,
 * round-robin over the devices).
 *
 * 1. event stored → shown: 50 viewers on the live stream (GET /api/v1/events/stream): 49 SSE
 *    clients here and one real Chromium page on the console's events view. In the page a
 *    MutationObserver notes each new event row, and the time is taken in the next animation frame
 *    (the frame that paints it); the time stored is the event's `receivedAt` (the control plane's
 *    clock when ingest took it; the stream sends it after the commit). Same machine, same clock.
 * 2. the fleet page's first render with the 1,000 devices online, the events still flowing: a new
 *    tab navigates to #/fleet, timed from its navigation start until the table shows its first
 *    page of rows (the page's size, 100), five times.
 * 3. the live view (bench/live-view-measure.ts, as bench:live): box CPU per stream, passthrough
 *    against the MPEG-1 fallback, and the glass-to-glass latency, once the fleet has stopped.
 *
 *   ARGUS_BENCH_CONSOLE_S=30  seconds of events measured
 *   ARGUS_BENCH_LIVE_S=10     seconds measured per live format
 *
 * The last line is one JSON object with every figure.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MqttClient } from 'mqtt';
import type { Page } from 'playwright-core';
import { freeTcpPort } from '../common/net.ts';
import { CONTRACT_VERSION, type Identity, topics } from '../contract/index.ts';
import { openRepository } from '../control-plane/index.ts';
import { Users } from '../control-plane/storage/users.ts';
import { ensureConsoleBuilt, launchChromium } from '../test/console/setup.ts';
import { apiFetch, createAdminToken, useToken } from '../test/control-plane/setup.ts';
import { startControlPlaneProcess } from '../test/helpers/control-plane-process.ts';
import { eventually } from '../test/helpers/eventually.ts';
import { followSse } from '../test/helpers/sse.ts';
import { telemetry } from '../test/helpers/telemetry.ts';
import { measureLiveView } from './live-view-measure.ts';
import { addressOf, eventPayload, simulatedDeviceClient } from './simulated-devices.ts';
import { machine, percentile, round } from './stats.ts';

const ROOT = resolve(import.meta.dirname, '..');
const DEVICES = 1000;
const EVENTS_PER_S = 200;
const VIEWERS = 50;
const HEARTBEAT_S = 10;
const WINDOW_S = Number(process.env.ARGUS_BENCH_CONSOLE_S ?? 30);
const WARMUP_S = 5;
const LIVE_S = Number(process.env.ARGUS_BENCH_LIVE_S ?? 10);
const FLEET_RUNS = 5;
/** the fleet page's rows per page (console/src/pages/fleet.tsx) */
const FLEET_PAGE_ROWS = 100;
const GOALS = { event_to_screen_p99_ms: 1000, fleet_page_1000_devices_ms: 1500, live_latency_ms: 1000 };
const VIEWER = { name: 'bench-viewer', password: 'bench-viewer-password-1' };

const log = (line: string) => process.stderr.write(`${line}\n`);

interface DeviceSpec {
  id: string;
  token: string;
  address: string;
}

// ---- the devices (child process) ---------------------------------------------------------------

async function devicesProcess(mqttUrl: string, devices: DeviceSpec[]): Promise<void> {
  const url = new URL(mqttUrl);
  const clients: MqttClient[] = [];
  const connectOne = async ({ id, token, address }: DeviceSpec, index: number) => {
    const c = simulatedDeviceClient(url, { id, token, address });
    await new Promise<void>((ok, fail) => {
      c.once('connect', () => ok());
      c.once('error', fail);
    });
    const identity: Identity = {
      v: CONTRACT_VERSION,
      device: id,
      hardwareClass: 'x86_64-bench',
      executionProviders: ['cpu'],
      software: { version: 'bench', node: process.version },
      models: [],
      cameras: [{ id: 'cam-1', scene: 'bench' }],
      startedAt: new Date().toISOString(),
    };
    await c.publishAsync(topics.identity(id), JSON.stringify(identity), { qos: 1, retain: true });
    await c.publishAsync(
      topics.available(id),
      JSON.stringify({ v: CONTRACT_VERSION, state: 'online', at: new Date().toISOString() }),
      { qos: 1, retain: true },
    );
    await c.publishAsync(topics.telemetry(id), JSON.stringify(telemetry(id, Date.now())), { qos: 1 });
    clients[index] = c;
  };
  for (let i = 0; i < devices.length; i += 50)
    await Promise.all(devices.slice(i, i + 50).map((d, k) => connectOne(d, i + k)));
  const failed = (err: Error) => process.stderr.write(`publish: ${err.message}\n`);
  // heartbeats spread over the interval
  const beats = clients.map((c, i) =>
    setTimeout(
      () => {
        const beat = () =>
          c
            .publishAsync(
              topics.telemetry(devices[i]!.id),
              JSON.stringify(telemetry(devices[i]!.id, Date.now())),
              {
                qos: 1,
              },
            )
            .catch(failed);
        beats[i] = setInterval(beat, HEARTBEAT_S * 1000);
      },
      (i / clients.length) * HEARTBEAT_S * 1000,
    ),
  );
  process.stdout.write('ready\n');
  let events: ReturnType<typeof setInterval> | undefined;
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'events') {
      // EVENTS_PER_S on average, whatever the timer's lateness: each tick sends what is due
      const t0 = performance.now();
      let sent = 0;
      events = setInterval(() => {
        const due = Math.floor(((performance.now() - t0) / 1000) * EVENTS_PER_S);
        for (; sent < due; sent++) {
          const k = sent % clients.length;
          const id = devices[k]!.id;
          clients[k]!.publishAsync(topics.events(id), JSON.stringify(eventPayload(id, sent)), {
            qos: 1,
          }).catch(failed);
        }
      }, 20);
    }
    if (line === 'stop') break;
  }
  clearInterval(events);
  for (const b of beats) clearTimeout(b);
  await Promise.all(clients.map((c) => c.endAsync(true)));
  process.exit(0);
}

// ---- the bench (parent) ------------------------------------------------------------------------

/** notes, per event id, the time the frame that paints its row ran (performance.timeOrigin based) */
const NOTE_ROWS = `(() => {
  window.__shown = {};
  let pending = [];
  new MutationObserver((records) => {
    for (const r of records)
      for (const n of r.addedNodes) {
        if (n.nodeType !== 1) continue;
        if (n.matches('tr[data-event]')) pending.push(n.getAttribute('data-event'));
        for (const tr of n.querySelectorAll('tr[data-event]')) pending.push(tr.getAttribute('data-event'));
      }
    if (pending.length === 0) return;
    const ids = pending;
    pending = [];
    requestAnimationFrame(() => {
      const at = performance.timeOrigin + performance.now();
      for (const id of ids) if (!(id in window.__shown)) window.__shown[id] = at;
    });
  }).observe(document.body, { childList: true, subtree: true });
})()`;

/** resolves, in the page, with performance.now() at the first frame the fleet table shows a page of rows */
const FLEET_SHOWN = `new Promise((done) => {
  const check = () =>
    document.querySelectorAll('#devices tr[data-device]').length >= ${FLEET_PAGE_ROWS}
      ? done(performance.now())
      : requestAnimationFrame(check);
  check();
})`;

/** ms from a new tab's navigation start until the fleet table shows its first page of rows */
async function fleetFirstRender(page: Page, httpUrl: string): Promise<number> {
  await page.goto(`${httpUrl}/#/fleet`, { waitUntil: 'domcontentloaded' });
  return (await page.evaluate(FLEET_SHOWN)) as number;
}

async function main(): Promise<void> {
  const loadAtStart = Number((await readFile('/proc/loadavg', 'utf8')).split(' ')[0]);
  ensureConsoleBuilt();
  const dir = await mkdtemp(join(tmpdir(), 'argus-bench-console-'));
  const devices: DeviceSpec[] = Array.from({ length: DEVICES }, (_, i) => ({
    id: `sim-${String(i).padStart(4, '0')}`,
    token: randomBytes(16).toString('hex'),
    address: addressOf(i),
  }));
  const mqttPort = await freeTcpPort();
  const configFile = join(dir, 'control-plane.yaml');
  await writeFile(
    configFile,
    `http: { port: 0 }\nmqtt:\n  embedded: { port: ${mqttPort} }\nstorage:\n  sqlite: { path: cp.db }\n` +
      `devices:\n${devices.map((d) => `  - { id: ${d.id}, token: ${d.token} }\n`).join('')}`,
  );
  const repo = await openRepository({
    kind: 'sqlite',
    sqlite: { path: join(dir, 'cp.db'), synchronous: 'normal' },
  });
  const token = await createAdminToken(repo.sql);
  await new Users(repo.sql).add(VIEWER.name, 'viewer', VIEWER.password);
  await repo.close();

  let devicesChild: ChildProcess | undefined;
  // the control plane's warnings and errors, and why it closed connections, shown as they come
  const cpLog = { closed: 0, warnings: 0 };
  const cp = await startControlPlaneProcess(configFile, {
    timeoutMs: 120_000,
    onLog: (chunk) => {
      for (const line of chunk.split('\n')) {
        if (/closing/.test(line)) cpLog.closed++;
        if (/"level":(40|50|60)/.test(line) || /closing/.test(line)) {
          cpLog.warnings++;
          if (cpLog.warnings <= 20) log(`  control plane: ${line.slice(0, 400)}`);
        }
      }
    },
  });
  const browser = await launchChromium();
  const sse: Awaited<ReturnType<typeof followSse>>[] = [];
  try {
    const { httpUrl } = cp;
    useToken(httpUrl, token);
    const t0 = Date.now();
    devicesChild = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/console.ts'), '--devices'], {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: {
        ...process.env,
        ARGUS_BENCH_CHILD: JSON.stringify({ mqttUrl: `mqtt://127.0.0.1:${mqttPort}`, devices }),
      },
    });
    const child = devicesChild;
    const childLines = createInterface({ input: child.stdout! });
    const ready = new Promise<void>((ok, fail) => {
      childLines.on('line', (l) => l === 'ready' && ok());
      child.once('exit', (code) =>
        fail(new Error(`the devices' process exited (${code}) before they connected`)),
      );
    });
    await ready;
    await eventually(
      async () => {
        const m = await (await apiFetch(`${httpUrl}/metrics`)).text();
        return Number(/^argus_devices_online (\d+)$/m.exec(m)?.[1] ?? 0) === DEVICES || undefined;
      },
      120_000,
      `the control plane to count ${DEVICES} devices online`,
    );
    log(`bench:console — ${DEVICES} devices online in ${round((Date.now() - t0) / 1000, 1)} s`);

    // 49 viewers on the live stream here; one of them notes when each event arrives
    const arrived = new Map<string, { receivedAt: number; at: number }>();
    for (let i = 0; i < VIEWERS - 1; i++)
      sse.push(
        await followSse(`${httpUrl}/api/v1/events/stream`, (block) => {
          if (!block.includes('event: event')) return undefined;
          if (i === 0) {
            const data = JSON.parse(/^data: (.*)$/m.exec(block)![1]!) as {
              receivedAt: string;
              event: { id: string };
            };
            arrived.set(data.event.id, { receivedAt: Date.parse(data.receivedAt), at: Date.now() });
          }
          return 1;
        }),
      );
    // and the 50th: the console's events view in Chromium
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    const login = await context.request.post(`${httpUrl}/api/v1/login`, { data: VIEWER });
    if (!login.ok()) throw new Error(`login: ${login.status()} ${await login.text()}`);
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(`${httpUrl}/#/events`);
    await page.locator('#stream', { hasText: 'live' }).waitFor();
    await page.locator('#events').waitFor();
    await page.evaluate(NOTE_ROWS);

    child.stdin!.write('events\n');
    await sleep(WARMUP_S * 1000);
    const from = Date.now();
    await sleep(WINDOW_S * 1000);
    const to = Date.now();
    const shown = (await page.evaluate('window.__shown')) as Record<string, number>;
    const inWindow = [...arrived].filter(([, a]) => a.receivedAt >= from && a.receivedAt < to);
    const toScreen: number[] = [];
    const toStream: number[] = [];
    for (const [id, a] of inWindow) {
      toStream.push(a.at - a.receivedAt);
      if (shown[id] !== undefined) toScreen.push(shown[id] - a.receivedAt);
    }
    const streamed = sse.map((s) => s.items.length);
    log(
      `  events: ${inWindow.length} stored in ${WINDOW_S} s, ${toScreen.length} shown on the page; stored → shown p50 ${round(percentile(toScreen, 50))} ms, p99 ${round(percentile(toScreen, 99))} ms; stored → an SSE client here p50 ${round(percentile(toStream, 50))} ms, p99 ${round(percentile(toStream, 99))} ms`,
    );

    // the fleet page, the events still flowing
    const fleetMs: number[] = [];
    for (let i = 0; i < FLEET_RUNS; i++) {
      const tab = await context.newPage();
      tab.on('pageerror', (err) => errors.push(err.message));
      fleetMs.push(await fleetFirstRender(tab, httpUrl));
      await tab.close();
    }
    const total = (await (await apiFetch(`${httpUrl}/api/v1/devices?limit=1`)).json()) as {
      devices: unknown[];
    };
    if (total.devices.length !== 1) throw new Error('GET /api/v1/devices did not answer a page');
    log(`  fleet page first render: ${fleetMs.map((m) => Math.round(m)).join(', ')} ms`);

    if (child.exitCode !== null)
      throw new Error(`the devices' process exited (${child.exitCode}) during the run`);
    child.stdin!.write('stop\n');
    await Promise.race([once(child, 'exit'), sleep(30_000)]);
    if (child.exitCode === null) throw new Error("the devices' process did not stop within 30 s");
    devicesChild = undefined;
    await Promise.all(sse.splice(0).map((s) => s.stop()));
    await context.close();
    await browser.close();
    cp.child.kill('SIGTERM');
    await once(cp.child, 'exit');

    log(`  the live view, ${LIVE_S} s per format:`);
    const live = await measureLiveView(LIVE_S);
    const summary = {
      bench: 'console',
      machine: machine(),
      load1_at_start: loadAtStart,
      devices: DEVICES,
      events_per_s: EVENTS_PER_S,
      viewers: VIEWERS,
      window_s: WINDOW_S,
      events_stored_in_window: inWindow.length,
      events_shown_in_window: toScreen.length,
      event_to_screen_p50_ms: Math.round(percentile(toScreen, 50)),
      event_to_screen_p99_ms: Math.round(percentile(toScreen, 99)),
      event_to_screen_max_ms: Math.round(Math.max(...toScreen)),
      event_to_sse_p50_ms: Math.round(percentile(toStream, 50)),
      event_to_sse_p99_ms: Math.round(percentile(toStream, 99)),
      sse_events_per_viewer_min: Math.min(...streamed),
      fleet_page_1000_devices_ms: Math.round(percentile(fleetMs, 50)),
      fleet_page_1000_devices_max_ms: Math.round(Math.max(...fleetMs)),
      fleet_page_rows: FLEET_PAGE_ROWS,
      live_window_s: LIVE_S,
      ...live,
      goals: GOALS,
      page_errors: errors,
    };
    console.log(JSON.stringify(summary));
  } finally {
    if (devicesChild && devicesChild.exitCode === null) devicesChild.kill('SIGKILL');
    await Promise.all(sse.map((s) => s.stop()));
    await browser.close().catch(() => undefined);
    if (cp.child.exitCode === null && cp.child.signalCode === null) {
      cp.child.kill('SIGTERM');
      await once(cp.child, 'exit');
    }
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--devices') {
  const spec = JSON.parse(process.env.ARGUS_BENCH_CHILD!) as { mqttUrl: string; devices: DeviceSpec[] };
  await devicesProcess(spec.mqttUrl, spec.devices);
} else await main();
