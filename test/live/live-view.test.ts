import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { httpPaths } from '../../contract/index.ts';
import { getJson, tokenOf } from '../control-plane/setup.ts';
import {
  CHROMIUM,
  type LiveViewSetup,
  liveChildren,
  openLive,
  playerStats,
  startLiveViewSetup,
  viewerContext,
} from '../helpers/live-view.ts';

interface ChannelView {
  device: string;
  camera: string;
  format: string;
  state: string;
  viewers: number;
  boxConnected: boolean;
}

/** what a WebSocket to `url` is answered: the HTTP refusal, or the close code and reason */
async function wsOutcome(url: string, headers: Record<string, string>): Promise<string> {
  const ws = new WebSocket(url, { headers });
  return new Promise((resolve) => {
    ws.on('unexpected-response', (_req, res) => {
      resolve(`http ${res.statusCode}`);
      ws.terminate();
    });
    ws.on('error', () => undefined);
    ws.on('close', (code, reason) => resolve(`close ${code} ${reason.toString()}`));
  });
}

/** retries `check` (assertions) every `everyMs` until it passes; its last failure after `timeoutMs` */
async function until(check: () => unknown, timeoutMs: number, everyMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

describe('live view in Chromium: a real control plane, a real agent, a live RTSP camera', {
  skip: !existsSync(CHROMIUM) && 'needs Debian chromium: apt-get install chromium',
}, () => {
  let s: LiveViewSetup;
  before(async () => {
    s = await startLiveViewSetup('argus-live-');
  });
  after(async () => {
    await s?.close();
  });

  it('plays the camera through MSE, shares one box stream between viewers, and stops it after the last one leaves', async (t) => {
    const context = await viewerContext(s);
    const first = await openLive(context, s, 'fmp4');
    const stats = await playerStats(first.page);
    assert.equal(stats?.format, 'fmp4');
    t.diagnostic(
      `fmp4 picture ${Math.round(first.pictureMs)} ms after the navigation, ${stats?.firstFrameMs} ms after the player mounted`,
    );
    const t0 = (await playerStats(first.page))!.currentTime;
    await until(async () => {
      const now = await playerStats(first.page);
      assert.ok(now!.currentTime > t0 + 0.5, `currentTime ${now!.currentTime} advances from ${t0}`);
      assert.ok(now!.framesDecoded > 5);
    }, 10_000);
    const quality = await first.page.evaluate(
      "document.querySelector('video').getVideoPlaybackQuality().totalVideoFrames",
    );
    assert.ok((quality as number) > 0, 'getVideoPlaybackQuality counts decoded frames');

    const second = await openLive(context, s, 'fmp4');
    t.diagnostic(
      `second viewer's picture ${Math.round(second.pictureMs)} ms after the navigation, ${(await playerStats(second.page))?.firstFrameMs} ms after the player mounted (init and key frame cached)`,
    );
    const channels = await getJson<ChannelView[]>(`${s.cp.httpUrl}/api/v1/live`);
    assert.deepEqual(
      channels.map((c) => [c.device, c.camera, c.format, c.viewers, c.state]),
      [['box-1', 'cam-1', 'fmp4', 2, 'live']],
    );
    assert.deepEqual(
      liveChildren(s.agent.child.pid!).map((c) => c.comm),
      ['gst-launch-1.0'],
      'one stream from the box for both viewers',
    );

    await first.page.close();
    await second.page.close();
    const left = performance.now();
    await until(() => assert.deepEqual(liveChildren(s.agent.child.pid!), []), 10_000, 100);
    t.diagnostic(
      `the box stopped streaming ${Math.round(performance.now() - left)} ms after the last viewer left`,
    );
    await until(async () => assert.deepEqual(await getJson(`${s.cp.httpUrl}/api/v1/live`), []), 2_000);
    await context.close();
  });

  it('plays the MPEG-1 fallback through JSMpeg', async (t) => {
    const context = await viewerContext(s);
    const { page, pictureMs } = await openLive(context, s, 'mpeg1');
    t.diagnostic(
      `mpeg1 picture ${Math.round(pictureMs)} ms after the navigation, ${(await playerStats(page))?.firstFrameMs} ms after the player mounted`,
    );
    const before = (await playerStats(page))!;
    assert.equal(before.format, 'mpeg1');
    await until(async () => {
      const now = (await playerStats(page))!;
      assert.ok(now.framesDecoded > before.framesDecoded + 5, `frames ${now.framesDecoded}`);
    }, 10_000);
    assert.deepEqual(
      liveChildren(s.agent.child.pid!).map((c) => c.comm),
      ['ffmpeg'],
    );
    await context.close();
    await until(() => assert.deepEqual(liveChildren(s.agent.child.pid!), []), 10_000, 100);
  });

  it('shows the camera offline while its RTSP server is down, and live again after', async () => {
    const context = await viewerContext(s);
    const { page } = await openLive(context, s, 'fmp4');
    await s.rtsp.kill();
    await page.waitForFunction(
      "document.querySelector('[role=status]')?.dataset.state === 'offline'",
      undefined,
      { timeout: 15_000 },
    );
    const status = await page.locator('[role=status]').textContent();
    assert.match(status ?? '', /offline: /);
    await s.rtsp.start();
    const frames = (await playerStats(page))!.framesDecoded;
    await page.waitForFunction(
      `window.argusLive.stats().framesDecoded > ${frames} && window.argusLive.stats().state === 'live'`,
      undefined,
      { timeout: 20_000, polling: 100 },
    );
    assert.equal((await playerStats(page))!.state, 'live');
    await context.close();
  });

  it('refuses a browser that is not logged in, and a device other than the one asked', async () => {
    const context = await s.browser.newContext();
    const page = await context.newPage();
    await page.goto(`${s.cp.httpUrl}/live/box-1/cam-1?format=fmp4`);
    await page.waitForFunction("document.querySelector('[role=status]')?.dataset.state === 'refused'");
    assert.match((await page.locator('[role=status]').textContent()) ?? '', /not logged in/);
    await context.close();

    const ws = s.cp.httpUrl.replace(/^http/, 'ws');
    assert.equal(
      await wsOutcome(`${ws}${httpPaths.liveView('box-1', 'cam-1')}`, {}),
      'http 401',
      'no viewer socket without a login',
    );
    assert.equal(
      await wsOutcome(`${ws}${httpPaths.liveView('box-1', 'cam-1')}`, {
        authorization: `Bearer ${tokenOf('box-1')}`,
      }),
      'http 401',
      "a device's credential is not a viewer's",
    );
    assert.equal(
      await wsOutcome(`${ws}${httpPaths.liveUpload('box-1', 'stream-of-box-1')}`, {
        authorization: `Bearer ${tokenOf('box-2')}`,
      }),
      'http 401',
      "box-2 cannot open box-1's stream",
    );
    assert.equal(
      await wsOutcome(`${ws}${httpPaths.liveUpload('box-2', 'never-requested')}`, {
        authorization: `Bearer ${tokenOf('box-2')}`,
      }),
      'close 4403 no live stream never-requested was requested from device box-2',
    );
    const viewer = await viewerContext(s);
    const cookie = (await viewer.cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
    assert.equal(
      await wsOutcome(`${ws}${httpPaths.liveView('box-1', 'cam-1')}`, {
        cookie,
        origin: 'https://evil.example',
      }),
      'http 403',
      'a page of another origin cannot use the viewer session',
    );
    await viewer.close();
    // a viewer socket that is allowed opens
    const ok = new WebSocket(`${ws}${httpPaths.liveView('box-1', 'cam-1')}`, { headers: { cookie } });
    const [first] = (await once(ok, 'message')) as [Buffer];
    assert.match(first.toString(), /"type":"status"/);
    ok.close();
  });
});
