import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { SAMPLE_VIDEO } from '../../common/paths.ts';
import type { ControlPlane } from '../../control-plane/index.ts';
import { ApiTokens } from '../../control-plane/storage/api-tokens.ts';
import { generateSigningKey } from '../../models/bundle/keys.ts';
import { RtspServer } from '../../video/rtsp-test-server.ts';
import { getJson, startTestControlPlane } from '../control-plane/setup.ts';
import { AgentProcess } from '../helpers/device-setup.ts';
import { eventually } from '../helpers/eventually.ts';
import { ensureCatalogModels } from '../helpers/models.ts';
import {
  addConsoleAccounts,
  CHROMIUM,
  ensureConsoleBuilt,
  launchChromium,
  loggedIn,
  screenshot,
} from './setup.ts';

/**
 * The scene editor end to end, on one control plane and one real device agent whose camera is a
 * live RTSP stream of vtest.avi (scripts/rtsp-server.py) run through the real detector: an
 * operator draws a counting line on a fresh snapshot, sets its parameters in the form generated
 * from the scene schema, previews it over the recording on the control plane (the events listed),
 * publishes it as a scene bundle signed with the control plane's configured key, and rolls it out
 * with the wizard; the rollout goes to completed and the box's next crossing events are the new
 * line's.
 */

const CAMPUS = resolve(import.meta.dirname, '../../scenes/vtest-campus.yaml');
const LINE_X = 0.45;

interface StoredEvents {
  events: { receivedAt: string; event: { rule: string; ruleType: string; line?: string; at: string } }[];
}

describe('scene editor in Chromium: a line drawn, previewed, published and rolled out to a box on a live camera', {
  skip: !existsSync(CHROMIUM) && 'needs Debian chromium: apt-get install chromium',
}, () => {
  let dir: string;
  let rtsp: RtspServer;
  let cp: ControlPlane;
  let agent: AgentProcess;
  let browser: Browser;

  before(async () => {
    ensureConsoleBuilt();
    await ensureCatalogModels();
    dir = await mkdtemp(join(tmpdir(), 'argus-scene-editor-'));
    // the operator's key, outside the repository, configured as the control plane's
    const key = await generateSigningKey('console-scenes', join(dir, 'keys'));
    const keyring = join(dir, 'keys', 'trusted');
    rtsp = await RtspServer.create({ paths: ['cam-1'] });
    cp = await startTestControlPlane({
      dir,
      config: {
        artifacts: { keyring },
        scenes: {
          signingKey: key.privateKeyPath,
          recordings: { vtest: SAMPLE_VIDEO },
          previewSeconds: 40,
          previewTimeoutS: 240,
        },
        rollouts: { tickS: 0.5 },
      },
    });
    await addConsoleAccounts(cp);
    await mkdir(join(dir, 'scenes'));
    await copyFile(CAMPUS, join(dir, 'scenes', 'cam-1.yaml'));
    const config = join(dir, 'box-1.yaml');
    await writeFile(
      config,
      `device:
  id: box-1
mqtt:
  url: ${cp.mqttUrl}
  heartbeatS: 2
  reconnectS: 0.5
controlPlane:
  url: ${cp.httpUrl}
  token: token-of-box-1-for-tests
spool:
  path: box-1.spool.db
health:
  port: 0
detector:
  model: nanodet
  sessions: 1
  intraOpThreads: 1
ota:
  keyring: ${keyring}
  sampleS: 0.5
  progressS: 0.5
cameras:
  - id: cam-1
    url: ${rtsp.url('cam-1')}
    scene: scenes/cam-1.yaml
    detectFps: 5
    rtspTransport: tcp
`,
    );
    agent = await AgentProcess.start(config, 120_000);
    browser = await launchChromium();
    await eventually(
      async () => {
        const d = await getJson<{ telemetry: { cameras: { id: string; fpsDetect: number }[] } | null }>(
          `${cp.httpUrl}/api/v1/devices/box-1`,
        ).catch(() => undefined);
        return d?.telemetry?.cameras.some((c) => c.fpsDetect > 0) ? true : undefined;
      },
      120_000,
      'box-1 detecting on its live camera',
    );
  });

  after(async () => {
    await browser?.close();
    await agent?.terminate('SIGTERM');
    await cp?.close();
    await rtsp?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('refuses what the editor must not do: a viewer, a second preview of one operator, a scene the pipeline refuses', async () => {
    const tokens = new ApiTokens(cp.repository.sql);
    const viewer = (await tokens.create('scene viewer', 'viewer', 'tests')).secret;
    const operator = (await tokens.create('scene operator', 'operator', 'tests')).secret;
    const post = (path: string, body: unknown, token: string) =>
      fetch(`${cp.httpUrl}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify(body),
      });
    const scene = {
      name: 'campus-road',
      rules: [
        {
          id: 'l',
          type: 'line',
          line: [
            [0.4, 0.2],
            [0.4, 0.6],
          ],
        },
      ],
    };
    const preview = { scene, recording: 'vtest', seconds: 1 };
    assert.equal((await post('/api/v1/scenes/preview', preview, viewer)).status, 403);
    assert.equal((await post('/api/v1/scenes', { scene }, viewer)).status, 403);
    // two at once: one runs, the other is refused (whichever arrives second)
    const both = await Promise.all([
      post('/api/v1/scenes/preview', preview, operator),
      post('/api/v1/scenes/preview', preview, operator),
    ]);
    assert.deepEqual(both.map((r) => r.status).sort(), [200, 409], 'one preview per operator at a time');
    const ran = (await both.find((r) => r.status === 200)!.json()) as { frames: number };
    assert.ok(ran.frames > 0, 'the preview replayed frames of the recording');
    const unknown = await post('/api/v1/scenes/preview', { ...preview, recording: 'elsewhere' }, operator);
    assert.equal(unknown.status, 400);
    assert.match(((await unknown.json()) as { hint: string }).hint, /choose one of vtest/);
    const crossed = {
      name: 'campus-road',
      rules: [
        {
          id: 'z',
          type: 'zone',
          polygon: [
            [0.1, 0.1],
            [0.5, 0.5],
            [0.5, 0.1],
            [0.1, 0.5],
          ],
        },
      ],
    };
    const refused = await post('/api/v1/scenes', { scene: crossed }, operator);
    assert.equal(refused.status, 400);
    assert.match(((await refused.json()) as { error: string }).error, /crosses itself/);
  });

  it('draws a line on a fresh snapshot, previews it, publishes it signed, rolls it out with the wizard to completed; the box then counts on the new line', async () => {
    const { page, errors } = await loggedIn({ cp, browser }, 'operator');
    await page.getByRole('link', { name: 'Scene editor' }).click();
    // a machine shared by several test runs answers slowly
    page.setDefaultTimeout(90_000);
    await page.getByRole('combobox', { name: /^Device/ }).selectOption('box-1');
    await page.getByRole('combobox', { name: /^Camera/ }).selectOption('cam-1');
    // the fresh snapshot the camera took on the request, the scene editor over it
    await page.locator('.geometry img').waitFor({ timeout: 60_000 });
    await page.locator('.geometry img').evaluate(
      (img) =>
        new Promise<void>((resolve) => {
          const i = img as unknown as { complete: boolean; naturalWidth: number; onload: () => void };
          if (i.complete && i.naturalWidth > 0) resolve();
          else i.onload = () => resolve();
        }),
    );
    await page.getByLabel('New rule').selectOption('line');
    await page.getByRole('button', { name: 'Draw a line' }).click();
    const box = (await page.locator('.geometry svg').boundingBox())!;
    await page.mouse.click(box.x + LINE_X * box.width, box.y + 0.28 * box.height);
    await page.mouse.click(box.x + LINE_X * box.width, box.y + 0.56 * box.height);
    const rule = page.getByRole('form', { name: 'rule line-1' });
    await rule.waitFor();
    // every coordinate by keyboard: typed, and a point moved with the arrow keys
    await rule.getByLabel('line-1 point A x').fill(String(LINE_X));
    await rule.getByLabel('line-1 point A y').fill('0.28');
    await rule.getByLabel('line-1 point B x').fill(String(LINE_X));
    await rule.getByLabel('line-1 point B y').fill('0.56');
    await page.getByRole('slider', { name: 'line-1 point B: arrow keys move it' }).focus();
    await page.keyboard.press('ArrowDown');
    assert.equal(await rule.getByLabel('line-1 point B y').inputValue(), '0.57');
    await page.keyboard.press('ArrowUp');
    assert.equal(await rule.getByLabel('line-1 point B y').inputValue(), '0.56');
    // the form generated from the line rule's schema: classes, directions, hysteresis
    await rule.getByLabel('Classes (comma-separated)').fill('person');
    await rule.getByLabel('Classes (comma-separated)').press('Tab');
    assert.equal(await rule.getByRole('checkbox', { name: 'in' }).isChecked(), true);
    assert.equal(await rule.getByLabel('Hysteresis').inputValue(), '0.01');
    await screenshot(page, 'scene-editor');

    await page.getByLabel('Seconds of it').fill('20');
    await page.getByRole('button', { name: 'Preview' }).click();
    await page.locator('#preview-events tbody tr').first().waitFor({ timeout: 280_000 });
    const rows = await page.locator('#preview-events tbody tr').allTextContents();
    assert.ok(
      rows.some((r) => /line line-1/.test(r)),
      `the preview lists crossings of line-1: ${rows.slice(0, 5).join(' | ')}`,
    );
    await page.locator('#preview-events').scrollIntoViewIfNeeded();
    await screenshot(page, 'scene-preview');

    await page.getByRole('button', { name: 'Publish scene' }).click();
    await page
      .locator('#published', { hasText: 'Published scene campus-road v1' })
      .waitFor({ timeout: 30_000 });
    await page.getByRole('link', { name: 'Start its rollout' }).click();
    const wizard = page.getByRole('form', { name: 'new rollout' });
    await wizard.waitFor();
    assert.equal(await wizard.getByLabel('Artifact').inputValue(), 'scene/campus-road/1');
    assert.equal(await wizard.getByLabel('Devices (ids, comma-separated)').inputValue(), 'box-1');
    await wizard.getByLabel('Health window (s)').fill('3');
    await wizard.getByLabel('Min. detect fps ratio').fill('0.1');
    await wizard.getByLabel('Max. latency ratio').fill('10');
    await wizard.getByLabel('Device timeout (s)').fill('600');
    await wizard.getByRole('button', { name: 'Start rollout' }).click();
    await page.locator('#waves').waitFor();
    await page.locator('h1 .badge-completed').waitFor({ timeout: 240_000 });
    const committedAt = Date.now();
    assert.match((await page.locator('#waves').textContent()) ?? '', /1 \/ 1/);
    await screenshot(page, 'rollout-done');

    // the device's history: the rollout with its state there, the snapshot command with its result
    await page.goto(`${cp.httpUrl}/#/devices/box-1`);
    await page
      .locator('#device-rollouts tr', { hasText: 'campus-road v1' })
      .locator('.badge-committed')
      .waitFor();
    await page.locator('#commands tr', { hasText: 'snapshot' }).locator('.badge-ok').first().waitFor();
    await page.locator('#commands').scrollIntoViewIfNeeded();
    await screenshot(page, 'device-history');

    // the registry: the published scene, its version, signer and expiry
    await page.goto(`${cp.httpUrl}/#/artifacts`);
    await page.locator('#artifacts').getByRole('button', { name: 'campus-road' }).click();
    await page.getByRole('region', { name: 'scene campus-road v1' }).getByText('Signed by').waitFor();
    await screenshot(page, 'artifacts');
    assert.deepEqual(errors, []);

    // the camera's live view, opened from its card on the device page
    await page.goto(`${cp.httpUrl}/#/devices/box-1`);
    await page
      .getByRole('article', { name: 'camera cam-1' })
      .getByRole('link', { name: 'Live view' })
      .click();
    await page.waitForFunction('(window.argusLive?.stats().framesDecoded ?? 0) > 5', undefined, {
      timeout: 30_000,
    });
    assert.equal(await page.locator('[role=status]').textContent(), 'H.264 · live');
    await screenshot(page, 'live-view');
    await page.close();

    // the box's next crossings are on the new line, and only there
    const crossings = await eventually(
      async () => {
        const page = await getJson<StoredEvents>(`${cp.httpUrl}/api/v1/events?device=box-1&limit=200`);
        const later = page.events.filter(
          (e) => e.event.ruleType === 'line' && Date.parse(e.event.at) > committedAt,
        );
        return later.length > 0 ? later : undefined;
      },
      180_000,
      'a crossing event of box-1 after the rollout',
    );
    assert.deepEqual([...new Set(crossings.map((e) => e.event.rule))], ['line-1']);
    assert.deepEqual([...new Set(crossings.map((e) => e.event.line))], ['line-1']);
  });
});
