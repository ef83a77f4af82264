/**
 * The live view's cost on the box and its glass-to-glass latency, passthrough against the MPEG-1
 * fallback in the same run: a real control plane, a real device agent and headless Chromium, on
 * an RTSP camera that films a clock (scripts/rtsp-clock-server.py: each frame carries the time it
 * was made as 32 black/white blocks). bench:live and bench:console report it.
 *
 * Box CPU per stream, on the sample street video (768x576, 10 fps, served by
 * scripts/rtsp-server.py): the agent's and its live-view child's CPU time (/proc) over the window,
 * less the agent's over an idle window of the same length, as a share of one core. Latency, on
 * the clock camera (512x128, 25 fps): at each picture the page shows, its own clock minus the
 * clock in the picture.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freeTcpPort } from '../common/net.ts';
import {
  cpuSeconds,
  type LiveViewSetup,
  liveChildren,
  openLive,
  startLiveViewSetup,
  viewerContext,
} from '../test/helpers/live-view.ts';

const WARMUP_S = 3;
const ROOT = join(import.meta.dirname, '..');

async function clockCamera(): Promise<{ base: string; child: ChildProcess }> {
  const port = await freeTcpPort();
  const child = spawn(
    '/usr/bin/python3',
    [join(ROOT, 'scripts/rtsp-clock-server.py'), '--port', String(port)],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const deadline = Date.now() + 10_000;
  while (!out.includes('READY')) {
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`the clock camera did not start: ${out}`);
    await sleep(50);
  }
  return { base: `rtsp://127.0.0.1:${port}/`, child };
}

/** CPU seconds of the agent and every live-view child seen, sampled until `stop` */
function cpuMeter(agentPid: number) {
  const children = new Map<number, number>();
  const sample = () => {
    for (const c of liveChildren(agentPid))
      children.set(c.pid, cpuSeconds(c.pid) || (children.get(c.pid) ?? 0));
  };
  const startAgent = cpuSeconds(agentPid);
  sample();
  const startChildren = [...children.values()].reduce((a, b) => a + b, 0);
  const timer = setInterval(sample, 250);
  return () => {
    sample();
    clearInterval(timer);
    const childCpu = [...children.values()].reduce((a, b) => a + b, 0) - startChildren;
    return { agent: cpuSeconds(agentPid) - startAgent, child: childCpu };
  };
}

/** reads the clock of each picture shown (in the page) into window.__latencies */
const READ_CLOCK = `(() => {
  window.__latencies = [];
  const c = document.createElement('canvas');
  c.width = 512; c.height = 128;
  const g = c.getContext('2d', { willReadFrequently: true });
  window.argusLiveFrame = (picture) => {
    const now = Date.now();
    g.drawImage(picture, 0, 0, 512, 128);
    const d = g.getImageData(0, 64, 512, 1).data;
    let ms = 0;
    for (let i = 0; i < 32; i++) ms = ms * 2 + (d[(i * 16 + 8) * 4] > 128 ? 1 : 0);
    const latency = (now % 4294967296) - ms;
    if (latency > -1000 && latency < 60000) window.__latencies.push(latency);
  };
})()`;

const quantile = (xs: number[], q: number) => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};
const round = (x: number, d = 3) => Number(x.toFixed(d));

/** one viewer of `camera` for the window; the box's CPU and, on the clock camera, the latency */
async function view(s: LiveViewSetup, format: 'fmp4' | 'mpeg1', camera: string, windowS: number) {
  const context = await viewerContext(s);
  const { page, pictureMs } = await openLive(context, s, format, camera);
  await page.evaluate(READ_CLOCK);
  await sleep(WARMUP_S * 1000);
  await page.evaluate('window.__latencies = []');
  const stop = cpuMeter(s.agent.child.pid!);
  await sleep(windowS * 1000);
  const cpu = stop();
  const latencies = (await page.evaluate('window.__latencies')) as number[];
  await context.close();
  const pid = s.agent.child.pid!;
  const deadline = Date.now() + 15_000;
  while (liveChildren(pid).length > 0 && Date.now() < deadline) await sleep(100);
  return { cpu, latencies, pictureMs };
}

/** CPU on the sample video (real street footage, 768x576), latency on the clock camera */
async function measure(s: LiveViewSetup, format: 'fmp4' | 'mpeg1', idleAgentCpu: number, windowS: number) {
  const { cpu, pictureMs } = await view(s, format, 'cam-1', windowS);
  const { latencies } = await view(s, format, 'clock', windowS);
  const share = (cpu.child + cpu.agent - idleAgentCpu) / windowS;
  const figures = {
    cpuShare: round(share),
    childCpuShare: round(cpu.child / windowS),
    agentCpuShare: round(cpu.agent / windowS),
    latencyP50Ms: Math.round(quantile(latencies, 0.5)),
    latencyP95Ms: Math.round(quantile(latencies, 0.95)),
    frames: latencies.length,
    pictureMs: Math.round(pictureMs),
  };
  console.error(`${format}: ${JSON.stringify(figures)}`);
  return figures;
}

/** the figures of one run, `windowS` seconds measured per format (and idle); the keys as BENCHMARKS.md names them */
export async function measureLiveView(windowS: number) {
  const camera = await clockCamera();
  const s = await startLiveViewSetup('argus-bench-live-', { clock: `${camera.base}cam-1` });
  try {
    // the agent's own CPU while nothing is streamed (it replays recorded events meanwhile)
    await sleep(2000);
    const idle = cpuMeter(s.agent.child.pid!);
    await sleep(windowS * 1000);
    const idleCpu = idle();
    console.error(`idle agent: ${round(idleCpu.agent / windowS)} of a core`);
    const passthrough = await measure(s, 'fmp4', idleCpu.agent, windowS);
    const mpeg1 = await measure(s, 'mpeg1', idleCpu.agent, windowS);
    return {
      live_passthrough_cpu_share: passthrough.cpuShare,
      live_mpeg1_cpu_share: mpeg1.cpuShare,
      live_passthrough_child_cpu_share: passthrough.childCpuShare,
      live_mpeg1_child_cpu_share: mpeg1.childCpuShare,
      live_mpeg1_over_passthrough_cpu: round(mpeg1.cpuShare / Math.max(passthrough.cpuShare, 0.001), 1),
      live_latency_ms: passthrough.latencyP50Ms,
      live_latency_p95_ms: passthrough.latencyP95Ms,
      live_mpeg1_latency_ms: mpeg1.latencyP50Ms,
      live_mpeg1_latency_p95_ms: mpeg1.latencyP95Ms,
      live_picture_start_ms: passthrough.pictureMs,
      live_mpeg1_picture_start_ms: mpeg1.pictureMs,
      frames_read: { passthrough: passthrough.frames, mpeg1: mpeg1.frames },
      idle_agent_cpu_share: round(idleCpu.agent / windowS),
    };
  } finally {
    await s.close();
    camera.child.kill('SIGTERM');
    await once(camera.child, 'exit');
  }
}
