import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { httpPaths } from '../../contract/index.ts';
import { HarvestedFrames } from '../../control-plane/harvest/frames.ts';
import type { ControlPlane } from '../../control-plane/index.ts';
import { PostgresServer } from '../helpers/postgres.ts';
import { apiFetch, startTestControlPlane, tokenOf } from './setup.ts';

/** a real JPEG of `width`×`height`, its grey level `shade` */
function jpeg(shade: number, width = 64, height = 48): Promise<Buffer> {
  return sharp(Buffer.alloc(width * height * 3, shade), { raw: { width, height, channels: 3 } })
    .jpeg({ quality: 80 })
    .toBuffer();
}

const META = {
  camera: 'cam-1',
  capturedAt: '2026-12-02T10:00:00.000Z',
  reasons: 'uncertain,flicker',
  model: 'nanodet',
  modelVersion: '3',
};

let pg: PostgresServer;
let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'argus-harvest-'));
  pg = await PostgresServer.start({ fsync: false });
});
after(async () => {
  await pg?.stop();
  await rm(dir, { recursive: true, force: true });
});

function suite(name: 'sqlite' | 'postgres'): void {
  describe(`harvested frames (${name})`, () => {
    let cp: ControlPlane;
    const upload = (
      device: string,
      id: string,
      body: Buffer,
      o: { as?: string; meta?: Record<string, string>; type?: string } = {},
    ) =>
      fetch(`${cp.httpUrl}${httpPaths.uploadHarvest(device, id)}?${new URLSearchParams(o.meta ?? META)}`, {
        method: 'PUT',
        headers: {
          'content-type': o.type ?? 'image/jpeg',
          ...(o.as === '' ? {} : { authorization: `Bearer ${tokenOf(o.as ?? device)}` }),
        },
        body: new Uint8Array(body),
      });

    /** the device's `site` label (written as `argus devices label` does, without the device having connected) */
    const label = async (device: string, site: string) => {
      const { p } = cp.repository.sql;
      await cp.repository.sql.write([
        { sql: `DELETE FROM device_labels WHERE device = ${p(1)}`, params: [device] },
        {
          sql: `INSERT INTO device_labels (device, name, value) VALUES (${p(1)}, 'site', ${p(2)})`,
          params: [device, site],
        },
      ]);
    };

    before(async () => {
      cp = await startTestControlPlane({
        dir: join(dir, name),
        ...(name === 'postgres' ? { postgresUrl: await pg.createDatabase('argus_harvest') } : {}),
      });
      await label('box-1', 'north');
      await label('box-2', 'north');
    });
    after(() => cp?.close());

    it('stores a JPEG the device uploads for itself under its site at that moment; the same again 200, other bytes 409', async () => {
      const a = await jpeg(40);
      const res = await upload('box-1', 'frame-0001', a);
      assert.equal(res.status, 201, await res.clone().text());
      const { frame } = (await res.json()) as { frame: Record<string, unknown> };
      assert.deepEqual(
        { ...frame, sha256: undefined, receivedAt: undefined },
        {
          device: 'box-1',
          id: 'frame-0001',
          site: 'north',
          camera: 'cam-1',
          capturedAt: META.capturedAt,
          receivedAt: undefined,
          reasons: ['uncertain', 'flicker'],
          model: 'nanodet',
          modelVersion: 3,
          sha256: undefined,
          bytes: a.length,
          width: 64,
          height: 48,
        },
      );
      assert.equal((await upload('box-1', 'frame-0001', a)).status, 200);
      assert.equal((await upload('box-1', 'frame-0001', await jpeg(200))).status, 409);
      const got = await apiFetch(`${cp.httpUrl}/api/v1/harvest/box-1/frame-0001`);
      assert.equal(got.status, 200);
      assert.equal(got.headers.get('content-type'), 'image/jpeg');
      assert.deepEqual(Buffer.from(await got.arrayBuffer()), a);
    });

    it('refuses a device uploading as another, no credential, a body that is not a JPEG, and metadata out of bounds', async () => {
      const a = await jpeg(60);
      assert.equal((await upload('box-1', 'frame-0002', a, { as: 'box-2' })).status, 401);
      assert.equal((await upload('box-1', 'frame-0002', a, { as: '' })).status, 401);
      const png = await sharp(Buffer.alloc(64 * 48 * 3), { raw: { width: 64, height: 48, channels: 3 } })
        .png()
        .toBuffer();
      assert.equal((await upload('box-1', 'frame-0002', png)).status, 400);
      const fake = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(100, 7)]);
      const refused = await upload('box-1', 'frame-0002', fake);
      assert.equal(refused.status, 400);
      assert.match(((await refused.json()) as { error: string }).error, /not a JPEG/);
      for (const meta of [
        { ...META, reasons: 'curious' },
        { ...META, modelVersion: '99999999999' },
        { ...META, camera: '../etc' },
        { ...META, capturedAt: 'yesterday' },
      ])
        assert.equal((await upload('box-1', 'frame-0002', a, { meta })).status, 400, JSON.stringify(meta));
      const big = Buffer.concat([a, Buffer.alloc(4 * 1024 * 1024)]);
      assert.equal((await upload('box-1', 'frame-0002', big)).status, 413);
      assert.equal((await apiFetch(`${cp.httpUrl}/api/v1/harvest/box-1/frame-0002`)).status, 404);
    });

    it("lists a site's frames newest first in pages, and the loop reads them oldest first with their bytes", async () => {
      await upload('box-2', 'frame-0001', await jpeg(80));
      await label('box-2', 'south');
      await upload('box-2', 'frame-0002', await jpeg(120));
      const first = (await (await apiFetch(`${cp.httpUrl}/api/v1/harvest?site=north&limit=1`)).json()) as {
        frames: { device: string; id: string }[];
        nextCursor: string | null;
      };
      assert.deepEqual(
        first.frames.map((f) => `${f.device}/${f.id}`),
        ['box-2/frame-0001'],
      );
      assert.ok(first.nextCursor);
      const second = (await (
        await apiFetch(`${cp.httpUrl}/api/v1/harvest?site=north&limit=1&cursor=${first.nextCursor}`)
      ).json()) as typeof first;
      assert.deepEqual(
        second.frames.map((f) => `${f.device}/${f.id}`),
        ['box-1/frame-0001'],
      );
      assert.equal(second.nextCursor, null);
      const south = (await (
        await apiFetch(`${cp.httpUrl}/api/v1/harvest?site=south`)
      ).json()) as typeof first;
      assert.deepEqual(
        south.frames.map((f) => `${f.device}/${f.id}`),
        ['box-2/frame-0002'],
      );

      const read: string[] = [];
      for await (const f of cp.harvest.source('north').frames()) {
        assert.equal((await sharp(f.jpeg).metadata()).format, 'jpeg');
        read.push(f.id);
      }
      assert.deepEqual(read, ['box-1.frame-0001', 'box-2.frame-0001']);
    });

    it('lets viewers list and fetch, and no one without a credential; documented in OpenAPI', async () => {
      const spec = (await (await apiFetch(`${cp.httpUrl}/docs/json`)).json()) as {
        paths: Record<string, Record<string, { security?: unknown[] }>>;
      };
      assert.deepEqual(spec.paths['/api/v1/devices/{device}/harvest/{id}']!.put!.security, [
        { deviceToken: [] },
      ]);
      assert.ok(spec.paths['/api/v1/harvest']!.get);
      assert.ok(spec.paths['/api/v1/harvest/{device}/{id}']!.get);
      assert.equal((await fetch(`${cp.httpUrl}/api/v1/harvest?site=north`)).status, 401);
      assert.equal(
        (
          await fetch(`${cp.httpUrl}/api/v1/harvest/box-1/frame-0001`, {
            headers: { authorization: `Bearer ${tokenOf('box-1')}` },
          })
        ).status,
        401,
      );
    });

    it('retention deletes frames past their age, then the oldest past the size, rows and bytes', async () => {
      const later = new HarvestedFrames(
        cp.repository.sql,
        cp.harvest.blobs,
        () => Date.now() + 40 * 86_400_000,
      );
      const south = (await cp.harvest.store.listSite('south', 10)).frames[0]!;
      const bySize = await later.retain({ maxAgeDays: 365, maxMiB: 0 }, () => undefined);
      assert.equal(bySize.deletedBySize, 3);
      assert.equal(bySize.storedBytes, 0);
      assert.equal(await cp.harvest.blobs.stat(south.sha256), undefined);
      await upload('box-1', 'frame-0009', await jpeg(10));
      const byAge = await later.retain({ maxAgeDays: 30, maxMiB: 1024 }, () => undefined);
      assert.equal(byAge.deletedByAge, 1);
      assert.deepEqual((await cp.harvest.store.listSite('north', 10)).frames, []);
    });
  });
}

suite('sqlite');
suite('postgres');
