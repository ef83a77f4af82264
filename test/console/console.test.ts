import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { topics } from '../../contract/index.ts';
import { apiFetch, deviceClient } from '../control-plane/setup.ts';
import { CHROMIUM, type ConsoleEnv, loggedIn, PASSWORDS, screenshot, startConsoleEnv } from './setup.ts';

const DEVICES = ['box-1', 'box-2'];

describe('operations console in Chromium, against a control plane with two device agents', {
  skip: !existsSync(CHROMIUM) && 'needs Debian chromium: apt-get install chromium',
}, () => {
  let env: ConsoleEnv;
  before(async () => {
    env = await startConsoleEnv('argus-console-ui-', DEVICES);
  });
  after(async () => {
    await env?.close();
  });

  it('serves the shell publicly with caching headers, and nothing else without a login', async () => {
    const index = await fetch(`${env.cp.httpUrl}/`);
    assert.equal(index.status, 200);
    assert.equal(index.headers.get('cache-control'), 'no-cache');
    assert.match(index.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    const html = await index.text();
    const asset = /src="(\/assets\/app-[A-Z0-9]+\.js)"/.exec(html)?.[1];
    assert.ok(asset, 'index.html names its hashed script');
    const script = await fetch(`${env.cp.httpUrl}${asset}`);
    assert.equal(script.status, 200);
    assert.equal(script.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    assert.match(script.headers.get('content-type') ?? '', /^text\/javascript/);
    for (const bad of ['/assets/..%2Fpackage.json', '/assets/app.exe', '/assets/nope-123.js'])
      assert.notEqual((await fetch(`${env.cp.httpUrl}${bad}`)).status, 200, bad);
    assert.equal((await fetch(`${env.cp.httpUrl}/api/v1/devices`)).status, 401);
  });

  it('refuses a wrong password, then logs in; the user menu shows the role; logging out asks again', async () => {
    const page = await env.browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(`${env.cp.httpUrl}/`);
    await page.getByLabel('Name').fill('console-viewer');
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.locator('#login-error', { hasText: 'wrong name or password' }).waitFor();
    await screenshot(page, 'login');
    await page.getByLabel('Password').fill(PASSWORDS.viewer);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.locator('#who', { hasText: 'console-viewer' }).waitFor();
    await page.locator('#user-menu-button').click();
    assert.match((await page.locator('#user-menu').textContent()) ?? '', /role viewer/);
    await page.locator('#logout').click();
    await page.getByRole('button', { name: 'Log in' }).waitFor();
    await page.reload();
    await page.getByRole('button', { name: 'Log in' }).waitFor();
    assert.equal(await page.locator('#who').count(), 0, 'the session ended: the reload asks again');
    await page.close();
  });

  it('shows the boxes in the fleet with their cameras, versions and figures', async () => {
    const { page, errors } = await loggedIn(env, 'operator');
    for (const device of DEVICES) {
      const row = page.locator(`#devices tr[data-device="${device}"]`);
      await row.locator('.badge-online').first().waitFor();
      // telemetry arrives every heartbeat: both cameras with their fps
      await row.locator('td.cams', { hasText: 'cam-2' }).waitFor();
    }
    const cells = await page.locator('#devices tr[data-device="box-1"] td').allTextContents();
    assert.equal(cells[0], 'online');
    assert.match(cells[6] ?? '', /cam-1: \d+\.\d \/ \d+\.\d/);
    // the status filter goes to the API: no device is offline
    await page.getByLabel('Status').selectOption('offline');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.locator('#devices', { hasText: 'no device matches these filters' }).waitFor();
    assert.match(page.url(), /#\/fleet\?status=offline/);
    await page.getByRole('button', { name: 'Clear' }).click();
    await page.locator('#devices tr[data-device="box-2"]').waitFor();
    await screenshot(page, 'fleet');
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('pages the fleet by keyboard, and its refresh keeps the pages read', async () => {
    const { page, errors } = await loggedIn(env, 'viewer');
    await page.clock.install();
    await page.goto(`${env.cp.httpUrl}/#/fleet?limit=1`);
    const table = page.getByRole('table', { name: 'devices, by id' });
    // the pager of pages of one device: the table of the page shown before the hash changed
    // (the default page size) may still hold box-1 an instant longer
    const next = page.getByRole('button', { name: 'Next 1 devices' });
    await next.waitFor();
    await table.locator('tr[data-device="box-1"]').waitFor();
    assert.equal(await table.locator('tr[data-device]').count(), 1, 'a page of one device');
    // every filter is a labelled field, reached with Tab; the pager's button with the keyboard
    for (const name of ['Site (id prefix)', 'Status', 'Hardware class', 'Software version'])
      assert.equal(await page.getByLabel(name).count(), 1, name);
    await next.focus();
    await page.keyboard.press('Enter');
    await table.locator('tr[data-device="box-2"]').waitFor();
    assert.equal(
      await page.getByRole('status').filter({ hasText: 'devices shown' }).textContent(),
      '2 devices shown',
    );
    // the periodic refresh reads both pages again, from the first
    const pages: string[] = [];
    page.on('request', (r) => {
      if (r.url().includes('/api/v1/devices?')) pages.push(new URL(r.url()).searchParams.get('cursor') ?? '');
    });
    const secondRead = page.waitForResponse((r) => /\/api\/v1\/devices\?.*cursor=box-1/.test(r.url()));
    await page.clock.runFor(5_500);
    await secondRead;
    assert.deepEqual(pages.slice(0, 2), ['', 'box-1']);
    assert.deepEqual(
      await table
        .locator('tr[data-device]')
        .evaluateAll((rows) => rows.map((r) => r.getAttribute('data-device'))),
      ['box-1', 'box-2'],
    );
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('shows an event live, grouped as one incident, with its snapshot and the object box', async () => {
    const { page, errors } = await loggedIn(env, 'viewer');
    await page.getByRole('link', { name: 'Events' }).click();
    await page.locator('#stream', { hasText: 'live' }).waitFor();
    await page.locator('#events').waitFor();
    const before = new Set(
      await page
        .locator('#events tr[data-event]')
        .evaluateAll((rows) => rows.map((r) => r.getAttribute('data-event'))),
    );
    // the page does not poll: a row that appears now came through the live stream
    let id: string | undefined;
    const deadline = Date.now() + 60_000;
    while (!id && Date.now() < deadline) {
      const rows = await page.locator('#events tr[data-event]').evaluateAll((trs) =>
        trs.map((tr) => {
          const img = tr.querySelector('img') as unknown as {
            complete: boolean;
            naturalWidth: number;
          } | null;
          return { id: tr.getAttribute('data-event')!, shown: !!img && img.complete && img.naturalWidth > 0 };
        }),
      );
      id = rows.find((r) => r.shown && !before.has(r.id))?.id;
      if (!id) await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(id, 'an event arrived live with its snapshot within 60 s');
    const row = page.locator(`#events tr[data-event="${id}"]`);
    assert.equal(await row.locator('svg rect.snapshot-box').count(), 1, 'the box is drawn over the snapshot');
    // one row per incident: an event id appears once however many messages it has
    const ids = await page
      .locator('#events tr[data-event]')
      .evaluateAll((rows) => rows.map((r) => r.getAttribute('data-event')));
    assert.equal(new Set(ids).size, ids.length);
    await row.getByRole('button').click();
    await page.getByRole('complementary', { name: 'incident' }).locator('img').waitFor();
    await screenshot(page, 'events');
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('lets an operator take a fresh snapshot of each camera and shows the telemetry charts', async () => {
    const { page, errors } = await loggedIn(env, 'operator');
    await page.goto(`${env.cp.httpUrl}/#/devices/box-1`);
    for (const camera of ['cam-1', 'cam-2']) {
      const card = page.getByRole('article', { name: `camera ${camera}` });
      await card.locator('img').waitFor();
      await card.getByText(/^taken /).waitFor({ timeout: 30_000 });
    }
    await page.locator('.chart canvas').first().waitFor();
    assert.equal(await page.locator('.chart').count(), 5);
    await page.locator('select[name=name]').selectOption('reload-config');
    await page.getByRole('button', { name: 'Send' }).click();
    await page.locator('#commands tr', { hasText: 'reload-config' }).waitFor();
    await page
      .locator('#commands tr', { hasText: 'reload-config' })
      .locator('.badge-ok, .badge-failed')
      .waitFor({ timeout: 30_000 });
    // the history is the API's: the snapshots taken for the camera cards are in it with their results
    await page.locator('#commands tr', { hasText: 'snapshot' }).locator('.badge-ok').first().waitFor();
    await page.locator('#device-rollouts', { hasText: 'no rollout has touched this device' }).waitFor();
    await page.evaluate('window.scrollTo(0, 0)');
    await screenshot(page, 'device');
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('shows a viewer no action controls, and the API refuses them anyway', async () => {
    const { page } = await loggedIn(env, 'viewer');
    assert.equal(await page.getByRole('link', { name: 'Admin' }).count(), 0);
    await page.goto(`${env.cp.httpUrl}/#/devices/box-1`);
    await page.getByRole('article', { name: 'camera cam-1' }).waitFor();
    await page.locator('.chart canvas').first().waitFor();
    assert.equal(await page.getByRole('button', { name: 'New snapshot' }).count(), 0);
    // the command history is there to read, without the form that sends one
    await page.locator('#commands').waitFor();
    assert.equal(await page.getByRole('form', { name: 'send a command' }).count(), 0);
    assert.equal(await page.getByRole('button', { name: 'Send' }).count(), 0);
    await page.goto(`${env.cp.httpUrl}/#/admin`);
    await page.getByRole('heading', { name: 'Fleet' }).waitFor();
    const status = await page.evaluate(async () => {
      const me = (await (await fetch('/api/v1/me')).json()) as { csrfToken: string };
      const res = await fetch('/api/v1/devices/box-1/commands/reload-config', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-csrf-token': me.csrfToken },
        body: '{"args":{}}',
      });
      return res.status;
    });
    assert.equal(status, 403);
    await page.close();
  });

  it('gives an admin users, API tokens and the audit log', async () => {
    const { page, errors } = await loggedIn(env, 'admin');
    await page.getByRole('link', { name: 'Admin' }).click();
    await page.locator('#users tr', { hasText: 'console-viewer' }).waitFor();
    await page.getByLabel('Purpose').fill('console test');
    await page.getByLabel('role of the new token').selectOption('viewer');
    await page.getByRole('button', { name: 'Create token' }).click();
    const secret = (await page.locator('code.secret').textContent()) ?? '';
    const me = await fetch(`${env.cp.httpUrl}/api/v1/me`, { headers: { authorization: `Bearer ${secret}` } });
    assert.equal(((await me.json()) as { role: string }).role, 'viewer', 'the token works with its role');
    await page
      .locator('#audit tr', { hasText: 'POST /api/v1/tokens' })
      .waitFor({ timeout: 5000 })
      .catch(async () => {
        await page.getByRole('button', { name: 'Filter' }).last().click();
        await page.locator('#audit tr', { hasText: 'POST /api/v1/tokens' }).waitFor();
      });
    await screenshot(page, 'admin');
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('lists rollouts and artifacts; the wizard is for operators only', async () => {
    const { page, errors } = await loggedIn(env, 'operator');
    await page.getByRole('link', { name: 'Artifacts' }).click();
    await page.locator('#artifacts').waitFor();
    await page.getByRole('link', { name: 'Rollouts' }).click();
    await page.locator('#rollouts').waitFor();
    await page.getByRole('link', { name: 'New rollout' }).click();
    await page.getByRole('form', { name: 'new rollout' }).waitFor();
    for (const step of ['1. Artifact', '2. Target', '3. Waves', '4. Thresholds'])
      await page.getByRole('group', { name: step }).waitFor();
    await screenshot(page, 'rollout-wizard');
    assert.deepEqual(errors, []);
    await page.close();
    const viewer = await loggedIn(env, 'viewer');
    await viewer.page.getByRole('link', { name: 'Rollouts' }).click();
    await viewer.page.locator('#rollouts').waitFor();
    assert.equal(await viewer.page.getByRole('link', { name: 'New rollout' }).count(), 0);
    await viewer.page.close();
  });

  it('shows a device that is not online as offline with its last figures marked stale, on a tablet', async () => {
    const box3 = await deviceClient(env.cp.mqttUrl, 'box-3');
    const telemetry = {
      v: 1,
      device: 'box-3',
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
    await box3.publishAsync(topics.telemetry('box-3'), JSON.stringify(telemetry), { qos: 1 });
    await box3.publishAsync(topics.available('box-3'), JSON.stringify({ v: 1, state: 'offline' }), {
      qos: 1,
    });
    await box3.endAsync();
    const { page } = await loggedIn(env, 'viewer', { width: 820, height: 1180 });
    const row = page.locator('#devices tr[data-device="box-3"]');
    await row.locator('.badge-offline').first().waitFor();
    assert.match((await row.locator('td.stale').textContent()) ?? '', /^stale \(last /);
    assert.ok(!(await row.textContent())?.includes('12.5'), 'the old figures are not shown as current');
    assert.equal(await row.locator('.badge-online, .badge-ok').count(), 0, 'nothing green');
    await screenshot(page, 'fleet-tablet');
    const answer = await apiFetch(`${env.cp.httpUrl}/api/v1/devices?status=offline`);
    assert.deepEqual(
      ((await answer.json()) as { devices: { id: string }[] }).devices.map((d) => d.id),
      ['box-3'],
    );
    await page.close();
  });
});
