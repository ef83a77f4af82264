import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MqttClient } from 'mqtt';
import { type Browser, chromium } from 'playwright-core';
import { topics } from '../../contract/index.ts';
import type { ControlPlane } from '../../control-plane/index.ts';
import { Users } from '../../control-plane/storage/users.ts';
import { eventMessage } from './fixtures.ts';
import { type ControlPlaneWithClient, deviceClient, startControlPlaneWithClient, TOKEN } from './setup.ts';

const CHROMIUM = '/usr/bin/chromium';
const SNAPSHOT = resolve(
  import.meta.dirname,
  '../fixtures/device/snapshots/left-road-1e8b1228-3184-4bce-9502-c41268591050-0.jpg',
);

describe('console page at / (headless Chromium)', {
  skip: !existsSync(CHROMIUM) && 'needs Debian chromium: apt-get install chromium',
}, () => {
  let env: ControlPlaneWithClient;
  let cp: ControlPlane;
  let client: MqttClient;
  let browser: Browser;
  before(async () => {
    env = await startControlPlaneWithClient('argus-console-');
    ({ cp, client } = env);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
      ],
    });
  });
  after(async () => {
    await browser?.close();
    await env?.close();
  });

  it('asks for a login, then shows the devices and live events with their snapshots', async () => {
    await new Users(cp.repository.sql).add('console-viewer', 'viewer', 'console-password-1');
    await client.publishAsync(topics.available('box-1'), JSON.stringify({ v: 1, state: 'online' }), {
      qos: 1,
      retain: true,
    });
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(`${cp.httpUrl}/`);
    await page.locator('#login input[name=name]').fill('console-viewer');
    await page.locator('#login input[name=password]').fill('not-the-password');
    await page.locator('#login button').click();
    await page.waitForFunction(
      "document.getElementById('login-error').textContent === 'wrong name or password'",
    );
    await page.locator('#login input[name=password]').fill('console-password-1');
    await page.locator('#login button').click();
    await page.waitForFunction("document.getElementById('stream').textContent === 'live'");
    await page.getByRole('cell', { name: 'box-1' }).waitFor();
    assert.equal(await page.locator('td.online').textContent(), 'online');

    const jpeg = await readFile(SNAPSHOT);
    const upload = await fetch(`${cp.httpUrl}/api/v1/devices/box-1/snapshots/console-snap-1`, {
      method: 'PUT',
      body: jpeg,
      headers: { 'content-type': 'image/jpeg', authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(upload.status, 201);
    const event = eventMessage({
      rule: 'left-road',
      snapshot: { id: 'console-snap-1', width: 256, height: 192 },
    });
    await client.publishAsync(topics.events('box-1'), JSON.stringify(event), { qos: 1 });
    const item = page.locator('#events li').filter({ hasText: 'zone left-road: person #3 (new)' });
    await item.waitFor();
    // the thumbnail is the uploaded JPEG, decoded by the browser (256×192)
    await page.waitForFunction(
      "(() => { const img = document.querySelector('#events img'); return img?.complete && img.naturalWidth === 256; })()",
    );
    assert.equal(await page.locator('#who').textContent(), 'console-viewer (viewer)');
    await page.locator('#logout').click();
    await page.locator('#login').waitFor();
    assert.equal(await page.locator('#main').isVisible(), false, 'logged out, the page asks again');
    assert.deepEqual(errors, []);
  });

  it('shows a device that is not online in red with its last figures marked stale, not green', async () => {
    const telemetry = {
      v: 1,
      device: 'box-2',
      at: new Date().toISOString(),
      uptimeS: 10,
      cpuPercent: 12,
      load1: 0.5,
      memoryRssMiB: 100,
      memoryUsedPercent: 40,
      diskFreeMiB: 1000,
      temperatureC: null,
      spool: { pending: 0, bytes: 0, dropped: 0 },
      cameras: [
        {
          id: 'cam-1',
          state: 'online',
          fpsIn: 12.5,
          fpsDetect: 6.25,
          detectLatencyMs: 9,
          drops: 0,
          motionSkippedShare: 0,
        },
      ],
      health: { status: 'ok', reasons: [] },
    };
    // box-2 reports for itself (a box may publish only its own topics)
    const box2 = await deviceClient(cp.mqttUrl, 'box-2');
    await box2.publishAsync(topics.telemetry('box-2'), JSON.stringify(telemetry), { qos: 1 });
    await box2.publishAsync(topics.available('box-2'), JSON.stringify({ v: 1, state: 'offline' }), {
      qos: 1,
    });
    await box2.endAsync();
    const page = await browser.newPage();
    await page.goto(`${cp.httpUrl}/`);
    await page.locator('#login input[name=name]').fill('console-viewer');
    await page.locator('#login input[name=password]').fill('console-password-1');
    await page.locator('#login button').click();
    const row = page.locator('#devices tr').filter({ hasText: 'box-2' });
    await row.waitFor();
    const cells = await row.locator('td').allTextContents();
    assert.deepEqual(cells.slice(0, 3), ['box-2', 'offline', 'offline: the device reported offline']);
    assert.match((await row.locator('td.stale').textContent()) ?? '', /^stale \(last /);
    assert.equal(await row.locator('td.online, td.ok').count(), 0, 'nothing green');
    assert.ok(!(await row.textContent())?.includes('12.5'), 'the old figures are not shown as current');
  });
});
