import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import type { ControlPlane } from '../../control-plane/index.ts';
import { Users } from '../../control-plane/storage/users.ts';
import { RtspServer } from '../../video/rtsp-test-server.ts';
import { startTestControlPlane } from '../control-plane/setup.ts';
import { AgentProcess, writeAgentConfig } from './device-setup.ts';

export const CHROMIUM = '/usr/bin/chromium';
export const VIEWER = { name: 'live-viewer', password: 'live-viewer-password-1' };

/** a real control plane, a real device agent (box-1, camera cam-1) on a live RTSP camera, and Chromium */
export interface LiveViewSetup {
  dir: string;
  rtsp: RtspServer;
  cp: ControlPlane;
  agent: AgentProcess;
  browser: Browser;
  close(): Promise<void>;
}

export async function startLiveViewSetup(prefix: string): Promise<LiveViewSetup> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const rtsp = await RtspServer.create({ paths: ['cam-1'] });
  const cp = await startTestControlPlane({ dir });
  await new Users(cp.repository.sql).add(VIEWER.name, 'viewer', VIEWER.password);
  const config = await writeAgentConfig(dir, {
    device: 'box-1',
    brokerUrl: cp.mqttUrl,
    controlPlaneUrl: cp.httpUrl,
    cameras: ['cam-1'],
    rtspBase: rtsp.url(''),
  });
  const agent = await AgentProcess.start(config);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
  });
  return {
    dir,
    rtsp,
    cp,
    agent,
    browser,
    async close() {
      await browser.close().catch(() => undefined);
      await agent.terminate('SIGTERM').catch(() => undefined);
      await cp.close().catch(() => undefined);
      await rtsp.stop().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** a browser context logged in as the viewer (the session cookie is the context's) */
export async function viewerContext(s: LiveViewSetup): Promise<BrowserContext> {
  const context = await s.browser.newContext();
  const res = await context.request.post(`${s.cp.httpUrl}/api/v1/login`, {
    data: { name: VIEWER.name, password: VIEWER.password },
  });
  if (!res.ok()) throw new Error(`login: ${res.status()} ${await res.text()}`);
  return context;
}

export interface PlayerStats {
  format: string;
  state: string;
  reason?: string;
  framesDecoded: number;
  currentTime: number;
  firstFrameMs?: number;
  bytes: number;
}

export function playerStats(page: Page): Promise<PlayerStats | undefined> {
  return page.evaluate('window.argusLive?.stats()') as Promise<PlayerStats | undefined>;
}

/** opens the live page of box-1/cam-1 and resolves when frames are decoded: ms from the navigation to that */
export async function openLive(
  context: BrowserContext,
  s: LiveViewSetup,
  format: 'fmp4' | 'mpeg1',
): Promise<{ page: Page; pictureMs: number }> {
  const page = await context.newPage();
  const started = performance.now();
  await page.goto(`${s.cp.httpUrl}/live/box-1/cam-1?format=${format}`);
  await page.waitForFunction('(window.argusLive?.stats().framesDecoded ?? 0) > 0', undefined, {
    timeout: 20_000,
    polling: 20,
  });
  return { page, pictureMs: performance.now() - started };
}

/** the live-view source processes (gst-launch-1.0, ffmpeg) the agent runs now, with their pids */
export function liveChildren(agentPid: number): { pid: number; comm: string }[] {
  const out: { pid: number; comm: string }[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const ppid = Number(stat.slice(close + 2).split(' ')[1]);
    if (ppid === agentPid && (comm.startsWith('gst-launch') || comm === 'ffmpeg'))
      out.push({ pid: Number(name), comm });
  }
  return out;
}

/** user + system CPU seconds a process has used (from /proc/<pid>/stat), 0 once it is gone */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}
