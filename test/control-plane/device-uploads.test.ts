import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { timeOrderedId } from '../../common/ids.ts';
import { createLogger } from '../../common/logger.ts';
import { httpPaths } from '../../contract/index.ts';
import type { ControlPlane } from '../../control-plane/index.ts';
import { SnapshotUploader } from '../../device/snapshots.ts';
import { Spool } from '../../device/spool.ts';
import { eventually } from '../helpers/eventually.ts';
import { metric, startTestControlPlane, tokenOf } from './setup.ts';

const PER_MINUTE = 3;
const LIMITED = 'argus_http_limited_total{limit="device_uploads"}';
const QUERY = new URLSearchParams({
  camera: 'cam-1',
  capturedAt: '2026-12-03T10:00:00.000Z',
  reasons: 'uncertain',
  model: 'nanodet',
  modelVersion: '3',
}).toString();

describe('the rate of device uploads (limits.http.deviceUploadsPerMinute)', () => {
  let dir: string;
  let cp: ControlPlane;
  let jpeg: Buffer;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-device-uploads-'));
    cp = await startTestControlPlane({
      dir,
      config: { limits: { http: { deviceUploadsPerMinute: PER_MINUTE } } },
    });
    jpeg = await sharp(Buffer.alloc(32 * 24 * 3, 90), { raw: { width: 32, height: 24, channels: 3 } })
      .jpeg()
      .toBuffer();
  });
  after(async () => {
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const put = (kind: 'snapshot' | 'harvest', device: string, token = tokenOf(device)) =>
    fetch(
      `${cp.httpUrl}${
        kind === 'snapshot'
          ? httpPaths.uploadSnapshot(device, timeOrderedId())
          : `${httpPaths.uploadHarvest(device, timeOrderedId())}?${QUERY}`
      }`,
      {
        method: 'PUT',
        headers: { 'content-type': 'image/jpeg', authorization: `Bearer ${token}` },
        body: new Uint8Array(jpeg),
      },
    );

  it('counts only uploads with the device’s credential, per device and kind; past the rate 429 with Retry-After', async () => {
    const limitedBefore = await metric(cp.httpUrl, LIMITED);
    // an anonymous flood on box-1's path is refused by the credential and takes nothing from its rate
    for (let i = 0; i < 3 * PER_MINUTE; i++)
      assert.equal((await put('harvest', 'box-1', 'wrong')).status, 401);
    for (let i = 0; i < PER_MINUTE; i++) assert.equal((await put('harvest', 'box-1')).status, 201);
    const over = await put('harvest', 'box-1');
    assert.equal(over.status, 429);
    const wait = Number(over.headers.get('retry-after'));
    assert.ok(wait > 0 && wait <= 60, `Retry-After ${over.headers.get('retry-after')}`);
    const { error } = (await over.json()) as { error: string };
    assert.match(error, /box-1.*more than 3 harvest uploads in a minute.*deviceUploadsPerMinute/);
    // box-1's snapshots have their own rate, box-2 its own
    assert.equal((await put('snapshot', 'box-1')).status, 201);
    assert.equal((await put('harvest', 'box-2')).status, 201);
    assert.equal(await metric(cp.httpUrl, LIMITED), limitedBefore + 1);
  });

  it('a box told 429 keeps its frames queued and waits what Retry-After asks, up to its own cap, instead of its backoff', async () => {
    const spool = Spool.open(
      join(dir, 'spool.db'),
      {
        maxMessages: 100,
        maxBytes: 1024 * 1024,
        maxSnapshots: 10,
        maxSnapshotBytes: 1024 * 1024,
        maxHarvestFrames: 10,
        maxHarvestBytes: 1024 * 1024,
        sync: 'normal',
      },
      createLogger('test-device-uploads'),
    );
    const busyMaxMs = 2_500;
    const uploader = new SnapshotUploader(
      'box-3',
      cp.httpUrl,
      tokenOf('box-3'),
      spool,
      createLogger('test-device-uploads'),
      undefined,
      // a backoff that alone would try again ~8 times in 2.5 s
      { backoffStartMs: 10, unreachableMaxMs: 100, busyMaxMs },
      'harvest',
    );
    for (let i = 0; i < PER_MINUTE + 2; i++)
      spool.addHarvested({ id: timeOrderedId(), jpeg, upload: QUERY }, Date.now());
    const limitedBefore = await metric(cp.httpUrl, LIMITED);
    uploader.start();
    try {
      await eventually(
        async () => ((await metric(cp.httpUrl, LIMITED)) > limitedBefore ? true : undefined),
        10_000,
        'the first 429',
      );
      assert.equal(spool.stats().harvest.pending, 2, 'the frames over the rate stay queued');
      assert.equal(uploader.uploadState.failing, 'busy');
      await new Promise((r) => setTimeout(r, busyMaxMs - 500));
      assert.equal(
        (await metric(cp.httpUrl, LIMITED)) - limitedBefore,
        1,
        'no second attempt before Retry-After (capped) has passed',
      );
      await eventually(
        async () => ((await metric(cp.httpUrl, LIMITED)) > limitedBefore + 1 ? true : undefined),
        5_000,
        'the second attempt, once the capped wait is over',
      );
      assert.equal(spool.stats().harvest.pending, 2);
      assert.equal((await cp.harvest.store.listSite('', 10)).frames.length >= PER_MINUTE, true);
    } finally {
      await uploader.stop();
      spool.close();
    }
  });
});
