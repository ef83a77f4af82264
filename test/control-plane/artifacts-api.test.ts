import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { sha256Hex } from '../../common/hash.ts';
import { httpPaths } from '../../contract/http.ts';
import type { ArtifactReferences, ControlPlane } from '../../control-plane/index.ts';
import { ApiTokens } from '../../control-plane/storage/api-tokens.ts';
import { packEntries, readBundleFile } from '../../models/bundle/container.ts';
import { generateSigningKey, loadSigningKey, type SigningKey } from '../../models/bundle/keys.ts';
import { MANIFEST_FILE } from '../../models/bundle/manifest.ts';
import { eventually } from '../helpers/eventually.ts';
import { modelBundle, sceneBundle } from './artifact-bundles.ts';
import { apiFetch, startTestControlPlane, tokenFor, tokenOf } from './setup.ts';

const run = promisify(execFile);
const ARGUS = resolve(import.meta.dirname, '..', '..', 'bin', 'argus.mjs');

/** which artifact is assigned to which device: the shape the rollouts' store gives the registry */
class Assignments implements ArtifactReferences {
  readonly pairs = new Set<string>();
  async assignedTo(device: string, id: string) {
    return this.pairs.has(`${device}/${id}`);
  }
  async referenced(ids: readonly string[]) {
    return new Set(ids.filter((id) => [...this.pairs].some((p) => p.endsWith(`/${id}`))));
  }
}

describe('artifact registry API', () => {
  let dir: string;
  let cp: ControlPlane;
  let key: SigningKey;
  let url: string;
  const assignments = new Assignments();
  /** a model bundle larger than the socket buffers (downloads in flight stay open) */
  let big: { file: string; bytes: Buffer; id: string };

  const upload = (body: Uint8Array | Buffer, token?: string) =>
    apiFetch(`${url}/api/v1/artifacts`, {
      method: 'POST',
      headers: {
        'content-type': 'application/octet-stream',
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      },
      body,
    });
  const download = (
    device: string,
    id: string,
    headers: Record<string, string> = {},
    token = tokenOf(device),
  ) =>
    fetch(`${url}${httpPaths.artifact(device, id)}`, {
      headers: { authorization: `Bearer ${token}`, ...headers },
    });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-artifacts-api-'));
    await generateSigningKey('factory', join(dir, 'keys'));
    key = await loadSigningKey('factory', join(dir, 'keys'));
    cp = await startTestControlPlane({
      dir,
      config: {
        artifacts: {
          keyring: join(dir, 'keys', 'trusted'),
          maxUploadBytes: 24 << 20,
          downloadsPerDevice: 2,
        },
      },
      parts: { artifactReferences: assignments },
    });
    url = cp.httpUrl;
    const file = await modelBundle(dir, {
      name: 'big',
      version: 1,
      targets: [{ executionProvider: 'cpu', hardwareClass: 'any' }],
      key,
      modelBytes: 16 << 20,
    });
    const bytes = await readFile(file);
    big = { file, bytes, id: sha256Hex(bytes) };
  });
  after(async () => {
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('publishes through the API (operator) and the CLI; list and show; viewers may read, not publish', async () => {
    const scene = await sceneBundle(dir, { version: 1, key });
    const bytes = await readFile(scene);
    const res = await upload(bytes);
    assert.equal(res.status, 201, await res.clone().text());
    const body = (await res.json()) as {
      artifact: { id: string; kind: string; name: string };
      created: boolean;
    };
    assert.equal(body.created, true);
    assert.equal(body.artifact.id, sha256Hex(bytes));
    const again = await upload(bytes);
    assert.equal(again.status, 200);
    assert.equal(((await again.json()) as { created: boolean }).created, false);

    const viewer = (await new ApiTokens(cp.repository.sql).create('watcher', 'viewer', 'tests')).secret;
    assert.equal((await upload(bytes, viewer)).status, 403);
    const anonymous = await fetch(`${url}/api/v1/artifacts`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: bytes,
    });
    assert.equal(anonymous.status, 401);
    const json = await apiFetch(`${url}/api/v1/artifacts`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ bundle: 'x' }),
    });
    assert.equal(json.status, 415, 'a bundle is uploaded as its file');
    const listed = await apiFetch(`${url}/api/v1/artifacts?kind=scene`, {
      headers: { authorization: `Bearer ${viewer}` },
    });
    assert.equal(listed.status, 200);
    const page = (await listed.json()) as { artifacts: { id: string }[]; nextCursor: string | null };
    assert.deepEqual(
      page.artifacts.map((a) => a.id),
      [body.artifact.id],
    );

    // the CLI streams the file to the API with the operator's token
    const env = { ...process.env, ARGUS_TOKEN: tokenFor(url), ARGUS_LOG_LEVEL: 'warn' };
    const published = await run(
      'node',
      [ARGUS, 'artifacts', 'publish', big.file, '--control-plane', url, '--json'],
      {
        env,
      },
    );
    const out = JSON.parse(published.stdout) as { artifact: { id: string; bytes: number }; created: boolean };
    assert.equal(out.artifact.id, big.id);
    assert.equal(out.artifact.bytes, big.bytes.length);
    assert.equal(out.created, true);
    const list = await run('node', [ARGUS, 'artifacts', 'list', '--control-plane', url, '--kind', 'model'], {
      env,
    });
    assert.match(list.stdout, new RegExp(`${big.id.slice(0, 12)}\\s+model\\s+big v1\\s+cpu:any`));
    const show = await run('node', [ARGUS, 'artifacts', 'show', big.id, '--control-plane', url], { env });
    assert.match(show.stdout, /model big v1 \(cpu:any\)/);
    assert.match(show.stdout, /targets: cpu:any/);
    assert.match(show.stdout, /lineage: original model/);
    const detail = (await (await apiFetch(`${url}/api/v1/artifacts/${big.id}`)).json()) as {
      manifest: { kind: string };
      lineage: { steps: unknown[] };
      metrics: Record<string, unknown>;
    };
    assert.equal(detail.manifest.kind, 'model');
    assert.deepEqual(detail.lineage, { steps: [] });
    assert.deepEqual(detail.metrics, {});
    // a refusal through the CLI says why and what to fix
    const bad = await run(
      'node',
      [
        ARGUS,
        'artifacts',
        'publish',
        join(dir, 'keys', 'trusted', `${key.keyId}.pub`),
        '--control-plane',
        url,
      ],
      {
        env,
      },
    ).then(
      () => assert.fail('a key file is not a bundle'),
      (err: { code: number; stderr: string }) => err,
    );
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /422 malformed/);

    // audited: who published what
    const audit = (await (await apiFetch(`${url}/api/v1/audit?limit=50`)).json()) as {
      entries: { action: string; status: number }[];
    };
    assert.ok(audit.entries.some((e) => e.action === 'POST /api/v1/artifacts' && e.status === 201));
  });

  it('refuses tampered bundles with the reason: signature, a file, an unknown key, expiry', async () => {
    const good = await sceneBundle(dir, { name: 'tamper', version: 1, key });
    const entries = await readBundleFile(good);
    const repack = (change: (name: string, data: Uint8Array) => Uint8Array) =>
      packEntries([...entries].map(([name, data]) => ({ name, data: change(name, data) })));
    const flip = (data: Uint8Array, at: number) => {
      const copy = Buffer.from(data);
      copy[at] = copy[at]! ^ 0x20;
      return copy;
    };
    const manifestEdited = repack((name, data) =>
      name === MANIFEST_FILE
        ? Buffer.from(Buffer.from(data).toString().replace('"version": 1', '"version": 9'))
        : data,
    );
    const fileEdited = repack((name, data) => (name === 'scene.yaml' ? flip(data, 10) : data));
    await generateSigningKey('stranger', join(dir, 'stranger'));
    const foreign = await readFile(
      await sceneBundle(dir, {
        name: 'tamper',
        version: 2,
        key: await loadSigningKey('stranger', join(dir, 'stranger')),
      }),
    );
    const expired = await readFile(
      await sceneBundle(dir, {
        name: 'tamper',
        version: 3,
        key,
        expiresInDays: 1,
        now: new Date(Date.now() - 3 * 86_400_000),
      }),
    );
    const cases: [Buffer, string, RegExp][] = [
      [manifestEdited, 'tampered-manifest', /does not match its signature/],
      [fileEdited, 'tampered-file', /scene\.yaml does not match the manifest/],
      [foreign, 'unknown-key', /not in the keyring/],
      [expired, 'expired', /expired on/],
      [Buffer.from('not a bundle at all'), 'malformed', /not a bundle/],
    ];
    for (const [bytes, reason, pattern] of cases) {
      const res = await upload(bytes);
      const body = (await res.json()) as { error: string; hint: string; reason: string };
      assert.equal(res.status, 422, `${reason}: ${JSON.stringify(body)}`);
      assert.equal(body.reason, reason);
      assert.match(body.error, pattern);
      assert.ok(body.hint.length > 0, 'says what to do');
    }
    const page = (await (await apiFetch(`${url}/api/v1/artifacts?name=tamper`)).json()) as {
      artifacts: unknown[];
    };
    assert.deepEqual(page.artifacts, [], 'nothing refused was stored');
  });

  it('refuses an oversized upload as it streams, without reading it all or holding it', async () => {
    // declared: refused before any of the body is read
    const declared = await fetch(`${url}/api/v1/artifacts`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${tokenFor(url)}`,
        'content-type': 'application/octet-stream',
        'content-length': String(30 << 20),
      },
      body: Buffer.alloc(10),
    }).catch((err: Error) => err);
    // undici refuses a mismatching content-length itself: then only the streamed case below applies
    if (!(declared instanceof Error)) assert.equal(declared.status, 413);

    // streamed without a length: 1 GiB offered, cut after the limit (24 MiB here)
    const offered = 1 << 30;
    const chunk = Buffer.alloc(64 * 1024, 7);
    let written = 0;
    const rssBefore = process.memoryUsage().rss;
    const answer = await new Promise<{ status: number; body: string }>((resolvePromise, reject) => {
      const req = request(`${url}/api/v1/artifacts`, {
        method: 'POST',
        headers: { authorization: `Bearer ${tokenFor(url)}`, 'content-type': 'application/octet-stream' },
      });
      let answered = false;
      req.on('response', (res) => {
        answered = true;
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d.toString();
        });
        res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', (err) => {
        if (!answered) reject(err);
      });
      const pump = () => {
        while (written < offered && !answered) {
          written += chunk.length;
          if (!req.write(chunk)) {
            req.once('drain', pump);
            return;
          }
        }
        if (!answered) req.end();
      };
      pump();
    });
    assert.equal(answer.status, 413, answer.body);
    assert.equal((JSON.parse(answer.body) as { reason: string }).reason, 'too-large');
    assert.ok(
      written < 64 << 20,
      `the server stopped reading after the limit (the client wrote ${written} bytes)`,
    );
    // the control plane runs in this process: the upload was not buffered whole
    assert.ok(process.memoryUsage().rss - rssBefore < 200 << 20);
    const limited = await (await apiFetch(`${url}/metrics`)).text();
    assert.match(limited, /argus_http_limited_total\{limit="body_size"\} [1-9]/);

    // an upload cut off half way leaves nothing behind: no artifact, no staging file
    const half = big.bytes.subarray(0, big.bytes.length >> 1);
    await new Promise<void>((resolvePromise) => {
      const req = request(`${url}/api/v1/artifacts`, {
        method: 'POST',
        headers: { authorization: `Bearer ${tokenFor(url)}`, 'content-type': 'application/octet-stream' },
      });
      req.on('error', () => resolvePromise());
      req.write(half, () => setTimeout(() => req.destroy(), 200));
      req.on('close', () => resolvePromise());
    });
    const staging = join(dir, 'artifacts', 'staging');
    await eventually(
      async () => ((await readdir(staging)).length === 0 ? true : undefined),
      10_000,
      'the staging directory to be empty',
    );
    const cutPage = (await (await apiFetch(`${url}/api/v1/artifacts?name=big`)).json()) as {
      artifacts: { id: string }[];
    };
    assert.ok(cutPage.artifacts.every((a) => a.id === big.id));
  });

  it('serves a device exactly the bytes it asks for: Range resume from any cut point, 416 past the end', async () => {
    assignments.pairs.add(`box-1/${big.id}`);
    const size = big.bytes.length;
    const full = await download('box-1', big.id);
    assert.equal(full.status, 200);
    assert.equal(full.headers.get('etag'), `"${big.id}"`);
    assert.equal(full.headers.get('accept-ranges'), 'bytes');
    assert.equal(full.headers.get('content-length'), String(size));
    assert.ok(Buffer.from(await full.arrayBuffer()).equals(big.bytes));

    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: size - 1 }), async (cut) => {
        // a download cut after `cut` bytes, resumed from there
        const res = await download('box-1', big.id, { range: `bytes=${cut}-`, 'if-range': `"${big.id}"` });
        assert.equal(res.status, 206);
        assert.equal(res.headers.get('content-range'), `bytes ${cut}-${size - 1}/${size}`);
        const rest = Buffer.from(await res.arrayBuffer());
        assert.equal(rest.length, size - cut);
        assert.ok(Buffer.concat([big.bytes.subarray(0, cut), rest]).equals(big.bytes));
      }),
      { numRuns: 15 },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: size - 1 }),
        fc.integer({ min: 0, max: 100_000 }),
        async (start, n) => {
          const end = start + n;
          const res = await download('box-1', big.id, { range: `bytes=${start}-${end}` });
          assert.equal(res.status, 206);
          const got = Buffer.from(await res.arrayBuffer());
          assert.ok(got.equals(big.bytes.subarray(start, Math.min(end, size - 1) + 1)));
        },
      ),
      { numRuns: 15 },
    );
    const suffix = await download('box-1', big.id, { range: 'bytes=-100' });
    assert.equal(suffix.status, 206);
    assert.ok(Buffer.from(await suffix.arrayBuffer()).equals(big.bytes.subarray(size - 100)));
    const past = await download('box-1', big.id, { range: `bytes=${size}-` });
    assert.equal(past.status, 416);
    assert.equal(past.headers.get('content-range'), `bytes */${size}`);
    const head = await fetch(`${url}${httpPaths.artifact('box-1', big.id)}`, {
      method: 'HEAD',
      headers: { authorization: `Bearer ${tokenOf('box-1')}` },
    });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(size));
    assert.equal(head.headers.get('etag'), `"${big.id}"`);
    const stale = await download('box-1', big.id, { range: 'bytes=5-', 'if-range': '"something-else"' });
    assert.equal(stale.status, 200, 'a Range for another representation is ignored');
    await stale.body?.cancel();
  });

  it('a device downloads only as itself and only what is assigned to it; concurrency per device is bounded', async () => {
    const other = await sceneBundle(dir, { name: 'other', version: 1, key });
    const otherId = ((await (await upload(await readFile(other))).json()) as { artifact: { id: string } })
      .artifact.id;
    assignments.pairs.add(`box-2/${otherId}`);
    // box-2's token on box-1's path
    assert.equal((await download('box-1', big.id, {}, tokenOf('box-2'))).status, 401);
    // box-2 as itself, an artifact assigned to box-1 only
    const notMine = await download('box-2', big.id);
    assert.equal(notMine.status, 404);
    assert.match(((await notMine.json()) as { error: string }).error, /not assigned|no artifact/);
    // box-1, an artifact assigned to box-2 only; an unknown id
    assert.equal((await download('box-1', otherId)).status, 404);
    assert.equal((await download('box-1', 'f'.repeat(64))).status, 404);
    assert.equal((await download('box-2', otherId)).status, 200);
    // an operator's token is not a device's
    assert.equal((await download('box-1', big.id, {}, tokenFor(url))).status, 401);

    // two downloads held open (not read) by box-1: the third waits its turn; box-3 is not slowed
    assignments.pairs.add(`box-3/${big.id}`);
    const held = await Promise.all([download('box-1', big.id), download('box-1', big.id)]);
    assert.deepEqual(
      held.map((r) => r.status),
      [200, 200],
    );
    const third = await download('box-1', big.id);
    assert.equal(third.status, 429);
    assert.equal(third.headers.get('retry-after'), '5');
    await third.body?.cancel();
    const box3 = await download('box-3', big.id, { range: 'bytes=0-9' });
    assert.equal(box3.status, 206);
    await box3.arrayBuffer();
    await held[0]!.body?.cancel();
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      const res = await download('box-1', big.id, { range: 'bytes=0-0' });
      status = res.status === 206 ? 200 : res.status;
      await res.body?.cancel();
      if (status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(status, 200, 'a slot is free again once a download ends');
    await held[1]!.body?.cancel();
  });

  it('deletes (admin), refused while a rollout references it; the routes are documented', async () => {
    const scene = await sceneBundle(dir, { name: 'doomed', version: 1, key });
    const id = ((await (await upload(await readFile(scene))).json()) as { artifact: { id: string } }).artifact
      .id;
    const operator = (await new ApiTokens(cp.repository.sql).create('op', 'operator', 'tests')).secret;
    const asOperator = await apiFetch(`${url}/api/v1/artifacts/${id}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${operator}` },
    });
    assert.equal(asOperator.status, 403);
    assignments.pairs.add(`box-4/${id}`);
    assert.equal((await apiFetch(`${url}/api/v1/artifacts/${id}`, { method: 'DELETE' })).status, 409);
    assignments.pairs.delete(`box-4/${id}`);
    assert.equal((await apiFetch(`${url}/api/v1/artifacts/${id}`, { method: 'DELETE' })).status, 204);
    assert.equal((await apiFetch(`${url}/api/v1/artifacts/${id}`)).status, 404);
    assert.equal((await apiFetch(`${url}/api/v1/artifacts/${id}`, { method: 'DELETE' })).status, 404);

    const spec = (await (await apiFetch(`${url}/docs/json`)).json()) as {
      paths: Record<string, Record<string, { security?: unknown[] }>>;
    };
    for (const path of [
      '/api/v1/artifacts',
      '/api/v1/artifacts/{id}',
      '/api/v1/devices/{device}/artifacts/{id}',
    ])
      assert.ok(spec.paths[path], `${path} is documented`);
    assert.deepEqual(spec.paths['/api/v1/devices/{device}/artifacts/{id}']!.get!.security, [
      { deviceToken: [] },
    ]);
    // the registry's own routes (the scene editor's read of a scene artifact is the scenes API's)
    const routes = cp.routes.filter((r) =>
      /^\/api\/v1\/(artifacts|devices\/:device\/artifacts)\b/.test(r.url),
    );
    assert.deepEqual(
      Object.fromEntries(
        routes.filter((r) => r.method !== 'HEAD').map((r) => [`${r.method} ${r.url}`, r.access]),
      ),
      {
        'POST /api/v1/artifacts': 'operator',
        'GET /api/v1/artifacts': 'viewer',
        'GET /api/v1/artifacts/:id': 'viewer',
        'DELETE /api/v1/artifacts/:id': 'admin',
        'GET /api/v1/devices/:device/artifacts/:id': 'device',
      },
    );
  });
});
