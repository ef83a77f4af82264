import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { connect as connectTcp } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { Header } from 'tar';
import { uploadLimits } from '../../control-plane/artifacts/registry.ts';
import type { ControlPlane } from '../../control-plane/index.ts';
import {
  DEFAULT_BUNDLE_LIMITS,
  digestStream,
  packEntries,
  unpackStream,
} from '../../models/bundle/container.ts';
import { generateSigningKey, loadSigningKey, type SigningKey } from '../../models/bundle/keys.ts';
import { BundleRejected } from '../../models/bundle/rejection.ts';
import { readByVerification, verifyBundleDigests, verifyBundleEntries } from '../../models/bundle/verify.ts';
import { eventually } from '../helpers/eventually.ts';
import { modelBundle, sceneBundle } from './artifact-bundles.ts';
import { apiFetch, startTestControlPlane, tokenFor } from './setup.ts';

const MiB = 1 << 20;
const run = promisify(execFile);

/** the outcome of a verification: the manifest's name and version, or the refusal's reason */
async function outcome(verify: () => Promise<{ manifest: { name: string; version: number } }>) {
  try {
    const v = await verify();
    return `verified ${v.manifest.name} v${v.manifest.version}`;
  } catch (err) {
    if (err instanceof BundleRejected) return `rejected ${err.reason}`;
    // a manifest that parses as JSON but not as a manifest is an ArgusError of parseManifest
    return `error ${(err as Error).name}`;
  }
}

/** POSTs the file at `path` as a stream (the client holds none of it); answers status and body */
function uploadFile(url: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolvePromise, reject) => {
    const req = request(`${url}/api/v1/artifacts`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokenFor(url)}`, 'content-type': 'application/octet-stream' },
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d: Buffer) => {
        body += d.toString();
      });
      res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    createReadStream(path).pipe(req);
  });
}

describe('registry uploads: streamed to a staging file, verified as a stream, moved content-addressed', () => {
  let dir: string;
  let key: SigningKey;
  let keyring: string;
  let cp: ControlPlane;
  let url: string;
  const staging = () => readdir(join(dir, 'artifacts', 'staging')).catch(() => [] as string[]);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-artifacts-upload-'));
    await generateSigningKey('factory', join(dir, 'keys'));
    key = await loadSigningKey('factory', join(dir, 'keys'));
    keyring = join(dir, 'keys', 'trusted');
    cp = await startTestControlPlane({
      dir,
      config: {
        artifacts: { keyring, maxUploadBytes: 64 * MiB, uploadsAtOnce: 1 },
        // checked every second: a request has its body within 2 s, an upload must not stall for 2 s
        limits: { http: { requestTimeoutMs: 2000, headersTimeoutMs: 1000 } },
      },
    });
    url = cp.httpUrl;
  });
  after(async () => {
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('the streaming verifier agrees with the in-memory one on any damage to a signed bundle (seed 1602)', async () => {
    const model = await readFile(
      await modelBundle(dir, {
        name: 'prop',
        version: 1,
        targets: [{ executionProvider: 'cpu', hardwareClass: 'any' }],
        key,
        modelBytes: 2048,
      }),
    );
    const scene = await readFile(await sceneBundle(dir, { name: 'prop', version: 1, key }));
    const options = { keyring, installedDir: join(dir, 'nothing-installed') };
    const damaged = (base: Buffer) =>
      fc
        .array(fc.tuple(fc.nat({ max: base.length - 1 }), fc.integer({ min: 0, max: 255 })), {
          minLength: 0,
          maxLength: 4,
        })
        .map((edits) => {
          const copy = Buffer.from(base);
          for (const [at, value] of edits) copy[at] = value;
          return copy;
        });
    const seen = new Set<string>();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(damaged(model), damaged(scene), damaged(gzipSync(model)), damaged(gzipSync(scene))),
        async (bytes) => {
          const inMemory = await outcome(async () =>
            verifyBundleEntries('b', await unpackStream(Readable.from([bytes]), 'b'), options),
          );
          const streamed = await outcome(async () =>
            verifyBundleDigests(
              'b',
              await digestStream(Readable.from([bytes]), 'b', DEFAULT_BUNDLE_LIMITS, {
                keep: readByVerification,
                maxKeptBytes: MiB,
              }),
              options,
            ),
          );
          seen.add(inMemory.split(' ').slice(0, 2).join(' '));
          assert.equal(streamed, inMemory);
        },
      ),
      { seed: 1602, numRuns: 300 },
    );
    // the runs met both verdicts and several reasons (the property is not vacuous)
    assert.ok(seen.has('verified prop'), [...seen].join(', '));
    assert.ok([...seen].filter((s) => s.startsWith('rejected')).length >= 2, [...seen].join(', '));
  });

  it('keeps only the manifest, signature and descriptor: a large model file is hashed, never held', async () => {
    const file = await modelBundle(dir, {
      name: 'held',
      version: 1,
      targets: [{ executionProvider: 'cpu', hardwareClass: 'any' }],
      key,
      modelBytes: 8 * MiB,
    });
    const digests = await digestStream(createReadStream(file), 'b', DEFAULT_BUNDLE_LIMITS, {
      keep: readByVerification,
      maxKeptBytes: MiB,
    });
    assert.deepEqual(
      [...digests]
        .filter(([, d]) => d.data !== undefined)
        .map(([name]) => name)
        .sort(),
      ['descriptor.json', 'manifest.json', 'manifest.sig'],
    );
    assert.equal(digests.get('model.onnx')?.bytes, 8 * MiB);
    assert.equal(digests.get('model.onnx')?.data, undefined);

    // a file read whole is bounded on its own: a 2 MiB "manifest" is refused, not read
    const hostile = packEntries([{ name: 'manifest.json', data: Buffer.alloc(2 * MiB, 0x20) }]);
    await assert.rejects(
      digestStream(Readable.from([hostile]), 'hostile', DEFAULT_BUNDLE_LIMITS, {
        keep: readByVerification,
        maxKeptBytes: MiB,
      }),
      (err: unknown) =>
        err instanceof BundleRejected &&
        err.reason === 'too-large' &&
        /manifest\.json is 2 MiB, more than the limit of 1 MiB for a file read whole/.test(err.message),
    );
  });

  it('publishes a 64 MiB bundle without holding it: peak memory grows by a fraction of it; the blob is the staged file', async () => {
    const file = await modelBundle(dir, {
      name: 'large',
      version: 1,
      targets: [{ executionProvider: 'cpu', hardwareClass: 'any' }],
      key,
      modelBytes: 64 * MiB,
    });
    const size = (await stat(file)).size;
    const child = join(dir, 'peak-rss');
    await mkdir(child);
    // its own process, so that its peak RSS is the upload's and nothing else's
    const { stdout } = await run(
      process.execPath,
      ['--import', 'tsx', join(import.meta.dirname, 'publish-peak-rss.ts'), file, child, keyring],
      { maxBuffer: 1 << 20 },
    );
    const { grewKiB, id } = JSON.parse(stdout.trim().split('\n').at(-1)!) as { grewKiB: number; id: string };
    // the verifier that read the whole model file held 64 MiB and more
    assert.ok(
      grewKiB < 24 * 1024,
      `peak RSS grew by ${(grewKiB / 1024).toFixed(1)} MiB for a ${size >> 20} MiB upload`,
    );
    const blob = join(child, 'artifacts', 'sha256', id.slice(0, 2), id);
    assert.equal((await stat(blob)).size, size);
    assert.deepEqual(await readdir(join(child, 'artifacts', 'staging')), [], 'the staged file was moved');
  });

  it("stops a compressed upload at the archive's absolute expansion limit; nothing is stored", async () => {
    const header = Buffer.alloc(512);
    new Header({ path: 'manifest.json', mode: 0o644, size: 17, mtime: new Date(0), type: 'File' }).encode(
      header,
      0,
    );
    // a tar that starts like a bundle, then 1 GiB of zeros in gzip members of 1 MiB: ~1 MiB on the wire
    const start = gzipSync(Buffer.concat([header, Buffer.alloc(512, 0x20)]));
    const zeros = gzipSync(Buffer.alloc(MiB), { level: 9 });
    const bomb = join(dir, 'bomb.argus-model');
    await writeFile(bomb, Buffer.concat([start, ...Array.from({ length: 1024 }, () => zeros)]));
    const answer = await uploadFile(url, bomb);
    assert.equal(answer.status, 413, answer.body);
    const body = JSON.parse(answer.body) as { reason: string; error: string };
    assert.equal(body.reason, 'too-large');
    const limit = uploadLimits(64 * MiB).maxExpandedBytes;
    assert.match(body.error, new RegExp(`expands to more than ${limit / MiB} MiB \\(the limit\\)`));
    assert.deepEqual(await staging(), []);
    const page = (await (await apiFetch(`${url}/api/v1/artifacts?kind=model&name=bomb`)).json()) as {
      artifacts: unknown[];
    };
    assert.deepEqual(page.artifacts, []);
  });

  it('bounds uploads at once: a second upload while one streams is refused busy with Retry-After; it then goes through', async () => {
    const scene = await readFile(await sceneBundle(dir, { name: 'busy', version: 1, key }));
    // the first upload sends half its bytes and waits
    const first = request(`${url}/api/v1/artifacts`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokenFor(url)}`, 'content-type': 'application/octet-stream' },
    });
    const firstAnswer = new Promise<number>((resolvePromise, reject) => {
      first.on('response', (res) => {
        res.resume();
        res.on('end', () => resolvePromise(res.statusCode ?? 0));
      });
      first.on('error', reject);
    });
    first.write(scene.subarray(0, scene.length >> 1));
    let staged: string[] = [];
    for (let i = 0; i < 200 && staged.length === 0; i++) {
      staged = await staging();
      if (staged.length === 0) await new Promise((r) => setTimeout(r, 25));
    }
    assert.equal(staged.length, 1, 'the first upload is streaming to its staging file');
    const second = await apiFetch(`${url}/api/v1/artifacts`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: scene,
    });
    assert.equal(second.status, 503, await second.clone().text());
    assert.equal(((await second.json()) as { reason: string }).reason, 'busy');
    assert.ok(Number(second.headers.get('retry-after')) > 0);
    first.end(scene.subarray(scene.length >> 1));
    assert.equal(await firstAnswer, 201);
    const again = await apiFetch(`${url}/api/v1/artifacts`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: scene,
    });
    assert.equal(again.status, 200, 'the same bundle again: already published');
    assert.deepEqual(await staging(), []);
  });

  it('takes an upload that keeps sending for longer than the request time-out; answers one that stalls 408 and stores nothing of it', async () => {
    const bundle = await readFile(
      await modelBundle(dir, {
        name: 'slow-link',
        version: 1,
        targets: [{ executionProvider: 'cpu', hardwareClass: 'x86_64-slow' }],
        key,
        modelBytes: 256 * 1024,
      }),
    );
    const id = createHash('sha256').update(bundle).digest('hex');
    /** the bundle over a raw connection, `pieces` of it `gapMs` apart; what the server answered */
    const send = async (pieces: number, gapMs: number) => {
      const { hostname, port } = new URL(url);
      const socket = connectTcp(Number(port), hostname);
      let answer = '';
      socket.on('data', (d: Buffer) => {
        answer += d.toString('latin1');
      });
      socket.on('error', () => {});
      const closed = new Promise<void>((r) => socket.once('close', () => r()));
      socket.write(
        `POST /api/v1/artifacts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tokenFor(url)}\r\n` +
          `Content-Type: application/octet-stream\r\nContent-Length: ${bundle.length}\r\nConnection: close\r\n\r\n`,
      );
      const step = Math.ceil(bundle.length / 10);
      for (let i = 0; i < pieces; i++) {
        if (socket.destroyed) break;
        socket.write(bundle.subarray(i * step, (i + 1) * step));
        await new Promise((r) => setTimeout(r, gapMs));
      }
      await Promise.race([closed, new Promise((r) => setTimeout(r, 6000))]);
      socket.destroy();
      return answer.split('\r\n')[0];
    };
    // a stall: 3 of its 10 pieces, then nothing
    assert.equal(await send(3, 100), 'HTTP/1.1 408 Request Timeout');
    assert.equal((await apiFetch(`${url}/api/v1/artifacts/${id}`)).status, 404, 'nothing stored');
    // the cut upload's staging file goes once the registry's read of it fails
    await eventually(
      async () => ((await staging()).length === 0 ? true : undefined),
      5000,
      'staging emptied',
    );
    // a slow link: 10 pieces over 4 s, twice the time-out, never 2 s without a byte
    assert.equal(await send(10, 400), 'HTTP/1.1 201 Created');
    assert.equal((await apiFetch(`${url}/api/v1/artifacts/${id}`)).status, 200);
  });
});
