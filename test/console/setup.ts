import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import type { ControlPlane } from '../../control-plane/index.ts';
import { Users } from '../../control-plane/storage/users.ts';
import { startTestControlPlane } from '../control-plane/setup.ts';
import { AgentProcess, writeAgentConfig } from '../helpers/device-setup.ts';

export const CHROMIUM = '/usr/bin/chromium';
const ROOT = resolve(import.meta.dirname, '../..');
export const DOCS = join(ROOT, 'docs');
export const PASSWORDS = {
  admin: 'console-admin-password-1',
  operator: 'console-operator-password-1',
  viewer: 'console-viewer-password-1',
} as const;
export type TestRole = keyof typeof PASSWORDS;

/** the console as the bootstrap builds it: installed and rebuilt here when missing or older */
export function ensureConsoleBuilt(): void {
  const build = spawnSync('sh', [join(ROOT, 'scripts/console.sh'), 'build'], { stdio: 'inherit' });
  if (build.status !== 0) throw new Error('the console does not build: run `sh scripts/bootstrap.sh`');
}

export interface ConsoleEnv {
  cp: ControlPlane;
  agents: AgentProcess[];
  browser: Browser;
  close(): Promise<void>;
}

/**
 * A real control plane (embedded broker, SQLite) with an account per role, `devices` real device
 * agents (`argus device run` replaying the recorded events on two cameras each, snapshots
 * included) and headless Chromium.
 */
export async function startConsoleEnv(prefix: string, devices: string[]): Promise<ConsoleEnv> {
  ensureConsoleBuilt();
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const cp = await startTestControlPlane({ dir });
  await addConsoleAccounts(cp);
  const files = await Promise.all(
    devices.map((device) =>
      writeAgentConfig(dir, {
        device,
        brokerUrl: cp.mqttUrl,
        controlPlaneUrl: cp.httpUrl,
        eventsPerSecond: 2,
      }),
    ),
  );
  // side by side, with time to spare: the machine is shared
  const agents = await Promise.all(files.map((f) => AgentProcess.start(f, 90_000)));
  const browser = await launchChromium();
  return {
    cp,
    agents,
    browser,
    async close() {
      await browser.close();
      await Promise.all(agents.map((a) => a.terminate('SIGTERM')));
      await cp.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** an account per role: console-admin, console-operator, console-viewer (PASSWORDS) */
export async function addConsoleAccounts(cp: ControlPlane): Promise<void> {
  const users = new Users(cp.repository.sql);
  for (const role of ['admin', 'operator', 'viewer'] as const)
    await users.add(`console-${role}`, role, PASSWORDS[role]);
}

/** headless Debian Chromium; docs/ made for the screenshots */
export async function launchChromium(): Promise<Browser> {
  await mkdir(DOCS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
  });
}

/** a page of the console, logged in as `role` through its form; page errors are collected */
export async function loggedIn(
  env: Pick<ConsoleEnv, 'cp' | 'browser'>,
  role: TestRole,
  viewport = { width: 1440, height: 900 },
): Promise<{ page: Page; errors: string[] }> {
  const page = await env.browser.newPage({ viewport });
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) errors.push(m.text());
  });
  await page.goto(`${env.cp.httpUrl}/`);
  await page.getByLabel('Name').fill(`console-${role}`);
  await page.getByLabel('Password').fill(PASSWORDS[role]);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.locator('#who').waitFor();
  return { page, errors };
}

export const screenshot = (page: Page, name: string) =>
  page.screenshot({ path: join(DOCS, `console-${name}.png`), fullPage: false });
