import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { demoBundle } from '../../cli/demo-rollout.ts';
import { freeTcpPort } from '../../common/net.ts';
import { cacheDir } from '../../common/paths.ts';
import { httpPaths } from '../../contract/http.ts';
import type { EventMessage, Telemetry } from '../../contract/payloads.ts';
import { apiFetch, getJson, tokenByLogin, useToken } from '../control-plane/setup.ts';
import { eventually } from '../helpers/eventually.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

const ROOT = resolve(import.meta.dirname, '../..');

interface DeviceView {
  id: string;
  status: string;
  telemetry: Telemetry | null;
}

/** the pids of processes whose command line contains `pattern` */
function processesMatching(pattern: string): Promise<number[]> {
  return new Promise((res) =>
    execFile('pgrep', ['-f', '--', pattern], (_err, stdout) =>
      res(stdout.split('\n').filter(Boolean).map(Number)),
    ),
  );
}

describe('argus demo (what `npm run demo` starts after the bootstrap)', () => {
  let dir: string;
  let demo: ChildProcess | undefined;
  let stdout = '';
  let stderr = '';
  let httpUrl: string;
  let rtspPort: string | undefined;

  before(async () => {
    await ensureCatalogModels();
    // the model factory's int8 bundle the demo rolls out: made once per machine (minutes), before
    // the demo starts, so that the rollout's wait below is the rollout's
    await demoBundle(join(cacheDir(), 'demo-factory'), () => undefined, AbortSignal.timeout(280_000));
    dir = await mkdtemp(join(tmpdir(), 'argus-demo-'));
    const port = await freeTcpPort();
    demo = spawn(
      process.execPath,
      [join(ROOT, 'bin/argus.mjs'), 'demo', '--port', String(port), '--dir', dir],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    demo.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    demo.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    httpUrl = await eventually(
      async () => {
        if (demo!.exitCode !== null) throw new Error(`demo exited with ${demo!.exitCode}: ${stderr}`);
        return /open (http:\/\/127\.0\.0\.1:\d+)\//.exec(stdout)?.[1];
      },
      60_000,
      'the demo to start',
    );
    rtspPort = /rtsp:\/\/127\.0\.0\.1:(\d+)\//.exec(stdout)![1]!;
    const [, name, password] = /log in as (\S+), password (\S+)/.exec(stdout) ?? [];
    assert.ok(name && password, `the demo prints its admin's login: ${stdout}`);
    useToken(httpUrl, await tokenByLogin(httpUrl, name, password));
  });

  after(async () => {
    if (demo && demo.exitCode === null && demo.signalCode === null) demo.kill('SIGKILL');
    const leftovers = [
      ...(await processesMatching(dir)),
      ...(rtspPort ? await processesMatching(`rtsp-server.py --port ${rtspPort}`) : []),
    ];
    for (const pid of leftovers) process.kill(pid, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('shows both boxes online with their camera detecting on the live RTSP stream', async () => {
    await eventually(
      async () => {
        const { devices } = await getJson<{ devices: DeviceView[] }>(`${httpUrl}/api/v1/devices`);
        const ready = ['box-1', 'box-2'].every((id) => {
          const d = devices.find((x) => x.id === id);
          const camera = d?.telemetry?.cameras[0];
          // each demo box runs one detector session, which has not crashed
          const detector = d?.telemetry?.detector;
          return (
            d?.status === 'online' &&
            camera &&
            camera.fpsIn > 0 &&
            camera.fpsDetect > 0 &&
            detector?.sessions === 1 &&
            detector.restarts === 0
          );
        });
        return ready || undefined;
      },
      60_000,
      'box-1 and box-2 online with a camera receiving and detecting frames',
    );
  });

  it('stores events of both scenes with their snapshots, and the page at / serves', async () => {
    for (const [device, rules] of [
      ['box-1', ['road-crossing', 'left-road', 'parked-too-long', 'crowd-on-road']],
      ['box-2', ['walking-left', 'lamp-post']],
    ] as const) {
      const event = await eventually(
        async () => {
          const page = await getJson<{ events: { event: EventMessage }[] }>(
            `${httpUrl}/api/v1/events?device=${device}&limit=50`,
          );
          return page.events.map((s) => s.event).find((e) => e.snapshot);
        },
        90_000,
        `an event with a snapshot from ${device}`,
      );
      assert.ok(
        (rules as readonly string[]).includes(event.rule),
        `${device}: rule ${event.rule} of its scene`,
      );
      const jpeg = await eventually(
        async () => {
          const res = await apiFetch(`${httpUrl}${httpPaths.snapshot(event.device, event.snapshot!.id)}`);
          return res.ok ? Buffer.from(await res.arrayBuffer()) : undefined;
        },
        20_000,
        `snapshot ${event.snapshot!.id} of ${device}`,
      );
      assert.deepEqual([...jpeg.subarray(0, 3)], [0xff, 0xd8, 0xff], 'a JPEG');
    }
    const page = await fetch(`${httpUrl}/`);
    assert.equal(page.status, 200);
    assert.equal((await fetch(`${httpUrl}/api/v1/devices`)).status, 401, 'the data needs a login');
    assert.match(await page.text(), /<html/i);
  });

  it("rolls the int8 model out to both boxes: its output says each box's progress and that both committed", async () => {
    const end = await eventually(
      async () => {
        if (demo!.exitCode !== null) throw new Error(`demo exited with ${demo!.exitCode}: ${stderr}`);
        return /^rollout (completed|paused|aborted|canceled): (.*)$/m.exec(stdout) ?? undefined;
      },
      280_000,
      `the rollout to end; the demo said so far:\n${stdout}`,
    );
    assert.equal(end[1], 'completed', stdout);
    assert.match(end[2]!, /box-1 committed, box-2 committed/);
    for (const device of ['box-1', 'box-2'])
      for (const state of ['downloading', 'verifying', 'shadow', 'installing', 'health', 'committed'])
        assert.match(stdout, new RegExp(`^rollout: ${device} ${state}`, 'm'), `${device} ${state} is said`);
    // the canary went first: box-2 was sent its assignment only after box-1 committed
    assert.ok(
      stdout.indexOf('rollout: box-1 committed') < stdout.indexOf('rollout: box-2 sent'),
      `the canary (box-1) commits before box-2 is sent: ${stdout}`,
    );
    // and the boxes say they run it
    const { devices } = await getJson<{ devices: DeviceView[] }>(`${httpUrl}/api/v1/devices`);
    for (const id of ['box-1', 'box-2'])
      assert.deepEqual(
        devices.find((d) => d.id === id)?.telemetry?.cameras[0]?.model,
        { name: 'nanodet', version: 3 },
        `${id} runs the int8 nanodet v3`,
      );
  });

  it('stops everything it started on Ctrl-C, leaving no process behind', async () => {
    const agents = async () => (await processesMatching(`--config ${dir}`)).filter((p) => p !== demo!.pid);
    const agentsBefore = await agents();
    assert.equal(agentsBefore.length, 2, `two device agents run from ${dir}`);
    const rtspBefore = await processesMatching(`rtsp-server.py --port ${rtspPort}`);
    assert.equal(rtspBefore.length, 1, 'the RTSP server runs');
    const exited = once(demo!, 'exit');
    demo!.kill('SIGINT');
    let timer: NodeJS.Timeout | undefined;
    const [code] = (await Promise.race([
      exited,
      new Promise((_, rej) => {
        timer = setTimeout(() => rej(new Error('demo did not stop within 30 s')), 30_000);
      }),
    ]).finally(() => clearTimeout(timer))) as [number | null];
    assert.equal(code, 0, stderr);
    assert.deepEqual(await agents(), [], 'no device agent left');
    assert.deepEqual(await processesMatching(`rtsp-server.py --port ${rtspPort}`), [], 'no RTSP server left');
    const { status } = await fetch(`${httpUrl}/healthz`).catch(() => ({ status: 0 }));
    assert.equal(status, 0, 'the control plane no longer answers');
  });
});
